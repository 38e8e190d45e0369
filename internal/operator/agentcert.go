package operator

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"net"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Names of the agent endpoint's self-managed TLS (--capture=agent without
// --agent-cert-dir).
const (
	// DefaultAgentService is the Service the agents reach the operator at.
	DefaultAgentService = "log-capturer-agents"
	// AgentTLSSecret holds the authority and the serving certificate, in
	// the operator's namespace.
	AgentTLSSecret = "log-capturer-agent-tls"
	// AgentCAConfigMap publishes the authority's certificate (key ca.crt)
	// in the agents' namespace, for them to mount.
	AgentCAConfigMap = "log-capturer-agent-ca"
)

// Lifetimes of the self-managed certificates: the authority agents trust
// outlives many serving certificates, so renewing one changes nothing on
// the nodes.
const (
	agentCALifetime    = 10 * 365 * 24 * time.Hour
	agentCertLifetime  = 365 * 24 * time.Hour
	agentCertRenewal   = 30 * 24 * time.Hour
	agentCertCheckFreq = 12 * time.Hour
)

// agentTLS keeps the agent endpoint's certificate in a Secret of the
// operator's namespace, issued by an authority of its own, and publishes
// the authority in a ConfigMap of the agents' namespace. What is stored
// is reused while it is valid, so a new leader serves the same authority.
type agentTLS struct {
	// reader reads uncached (no ConfigMap or Secret informer is started
	// for this); writer writes.
	reader client.Reader
	writer client.Writer
	// namespace and caNamespace are the operator's and the agents'.
	namespace, caNamespace string
	// hosts are the serving certificate's DNS names and IP addresses.
	hosts []string
	now   func() time.Time
}

// ensure returns the serving certificate, issuing or renewing what the
// Secret holds when needed, and publishes the authority.
func (t *agentTLS) ensure(ctx context.Context) (*tls.Certificate, error) {
	now := t.now()
	sec := &corev1.Secret{}
	err := t.reader.Get(ctx, client.ObjectKey{Namespace: t.namespace, Name: AgentTLSSecret}, sec)
	found := err == nil
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("reading Secret %s/%s: %w", t.namespace, AgentTLSSecret, err)
	}
	caPEM, caKeyPEM := sec.Data["ca.crt"], sec.Data["ca.key"]
	ca, caKey, caErr := parsePair(caPEM, caKeyPEM)
	if caErr != nil || now.Add(agentCertLifetime).After(ca.NotAfter) {
		if ca, caKey, err = newAuthority(now); err != nil {
			return nil, err
		}
		caPEM, caKeyPEM = encodePair(ca, caKey)
	}
	certPEM, keyPEM := sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey]
	leaf, _, leafErr := parsePair(certPEM, keyPEM)
	if leafErr != nil || now.Add(agentCertRenewal).After(leaf.NotAfter) || !bytes.Equal(leaf.RawIssuer, ca.RawSubject) ||
		leaf.CheckSignatureFrom(ca) != nil || !covers(leaf, t.hosts) {
		l, k, err := newServingCert(now, ca, caKey, t.hosts)
		if err != nil {
			return nil, err
		}
		certPEM, keyPEM = encodePair(l, k)
	}
	data := map[string][]byte{"ca.crt": caPEM, "ca.key": caKeyPEM, corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM}
	if !found {
		sec = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: t.namespace, Name: AgentTLSSecret,
			Labels: map[string]string{"app.kubernetes.io/name": "log-capturer", "app.kubernetes.io/component": "agent-endpoint"}},
			Type: corev1.SecretTypeOpaque, Data: data}
		if err := t.writer.Create(ctx, sec); err != nil {
			return nil, fmt.Errorf("creating Secret %s/%s: %w", t.namespace, AgentTLSSecret, err)
		}
	} else if !maps.EqualFunc(sec.Data, data, bytes.Equal) {
		sec.Data = data
		if err := t.writer.Update(ctx, sec); err != nil {
			return nil, fmt.Errorf("updating Secret %s/%s: %w", t.namespace, AgentTLSSecret, err)
		}
	}
	if err := t.publish(ctx, caPEM); err != nil {
		return nil, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading the agent endpoint's certificate: %w", err)
	}
	return &pair, nil
}

// publish writes the authority into the agents' ConfigMap when it differs.
func (t *agentTLS) publish(ctx context.Context, caPEM []byte) error {
	cm := &corev1.ConfigMap{}
	err := t.reader.Get(ctx, client.ObjectKey{Namespace: t.caNamespace, Name: AgentCAConfigMap}, cm)
	switch {
	case apierrors.IsNotFound(err):
		cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: t.caNamespace, Name: AgentCAConfigMap,
			Labels: map[string]string{"app.kubernetes.io/name": "log-capturer", "app.kubernetes.io/component": "agent"}},
			Data: map[string]string{"ca.crt": string(caPEM)}}
		if err := t.writer.Create(ctx, cm); err != nil {
			return fmt.Errorf("creating ConfigMap %s/%s: %w", t.caNamespace, AgentCAConfigMap, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("reading ConfigMap %s/%s: %w", t.caNamespace, AgentCAConfigMap, err)
	case cm.Data["ca.crt"] == string(caPEM):
		return nil
	}
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data["ca.crt"] = string(caPEM)
	if err := t.writer.Update(ctx, cm); err != nil {
		return fmt.Errorf("updating ConfigMap %s/%s: %w", t.caNamespace, AgentCAConfigMap, err)
	}
	return nil
}

// covers tells whether the certificate names every host.
func covers(c *x509.Certificate, hosts []string) bool {
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(c.IPAddresses, ip.Equal) {
				return false
			}
		} else if !slices.Contains(c.DNSNames, h) {
			return false
		}
	}
	return true
}

func newAuthority(now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating the agent authority's key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "log-capturer agent endpoint CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(agentCALifetime),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("issuing the agent authority: %w", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing the agent authority: %w", err)
	}
	return c, key, nil
}

func newServingCert(now time.Time, ca *x509.Certificate, caKey *ecdsa.PrivateKey, hosts []string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating the agent endpoint's key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "log-capturer agent endpoint"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(agentCertLifetime),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("issuing the agent endpoint's certificate: %w", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing the agent endpoint's certificate: %w", err)
	}
	return c, key, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}

func encodePair(c *x509.Certificate, k *ecdsa.PrivateKey) (certPEM, keyPEM []byte) {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		// A P-256 key generated here always marshals.
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

// parsePair reads a certificate and its EC key; an error when either is
// missing, damaged or they do not match.
func parsePair(certPEM, keyPEM []byte) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, errors.New("no PEM certificate and key")
	}
	c, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing the certificate: %w", err)
	}
	k, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing the key: %w", err)
	}
	if pub, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&k.PublicKey) {
		return nil, nil, errors.New("the key is not the certificate's")
	}
	return c, k, nil
}
