package operator

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

func TestAgentTLS(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientBuilder().Build()
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	tl := &agentTLS{reader: c, writer: c, namespace: "log-capturer-system", caNamespace: "log-capturer-agents",
		hosts: []string{"log-capturer-agents.log-capturer-system.svc", "127.0.0.1"}, now: func() time.Time { return now }}

	stored := func() (*corev1.Secret, string) {
		t.Helper()
		sec, cm := &corev1.Secret{}, &corev1.ConfigMap{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: "log-capturer-system", Name: AgentTLSSecret}, sec); err != nil {
			t.Fatal(err)
		}
		if err := c.Get(ctx, client.ObjectKey{Namespace: "log-capturer-agents", Name: AgentCAConfigMap}, cm); err != nil {
			t.Fatal(err)
		}
		return sec, cm.Data["ca.crt"]
	}
	// verify checks the served certificate against the published authority
	// for every host, at the current time.
	verify := func(step string) {
		t.Helper()
		cert, err := tl.ensure(ctx)
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		_, caPEM := stored()
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(caPEM)) {
			t.Fatalf("%s: the ConfigMap holds no authority", step)
		}
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range tl.hosts {
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: h, CurrentTime: now}); err != nil {
				t.Fatalf("%s: the certificate does not verify for %s: %v", step, h, err)
			}
		}
	}
	caOf := func() string { s, _ := stored(); return string(s.Data["ca.crt"]) }
	leafOf := func() string { s, _ := stored(); return string(s.Data[corev1.TLSCertKey]) }

	verify("first start: issued and published")
	ca, leaf := caOf(), leafOf()
	sec, _ := stored()
	rv := sec.ResourceVersion

	verify("a new leader: reused")
	if sec, _ := stored(); sec.ResourceVersion != rv || caOf() != ca || leafOf() != leaf {
		t.Fatal("a valid stored certificate was replaced")
	}

	now = now.Add(340 * 24 * time.Hour)
	verify("within 30 days of the serving certificate's end: renewed, same authority")
	if caOf() != ca || leafOf() == leaf {
		t.Fatal("the serving certificate was not renewed under the same authority")
	}

	leaf = leafOf()
	tl.hosts = append(tl.hosts, "agents.example.org")
	verify("a new host: reissued, same authority")
	if caOf() != ca || leafOf() == leaf {
		t.Fatal("a host added did not reissue the serving certificate")
	}

	sec, _ = stored()
	sec.Data["ca.key"] = []byte("damaged")
	if err := c.Update(ctx, sec); err != nil {
		t.Fatal(err)
	}
	verify("a damaged authority key: a new authority, published")
	if caOf() == ca {
		t.Fatal("a damaged authority was kept")
	}
	if _, published := stored(); published != caOf() {
		t.Fatal("the new authority was not published")
	}

	ca = caOf()
	now = now.Add(9*365*24*time.Hour + 200*24*time.Hour)
	verify("the authority within a serving lifetime of its end: replaced")
	if caOf() == ca {
		t.Fatal("an authority about to expire was kept")
	}
	b, _ := pem.Decode([]byte(caOf()))
	if cert, _ := x509.ParseCertificate(b.Bytes); !cert.IsCA {
		t.Fatal("the authority is not a CA")
	}
}
