// Package identity tells which node a log-capturer agent runs on, from the
// agent's own credential: a projected ServiceAccount token bound to the
// agent's pod, which the API server signs with the pod's node in it. The
// operator checks each token with a TokenReview before it sends an agent
// any configuration or credentials, and sends only what that node needs;
// an agent cannot claim another node, because the node name is the API
// server's statement, not the agent's.
package identity

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Audience is the audience agents request their projected token for; a
// token for any other audience (the API server's own included) is refused,
// so that a token the agent sends elsewhere is of no use here and a token
// for the API server cannot be replayed to the operator.
const Audience = "logs.capturer.dev/agent"

// The extra fields the API server adds to a pod-bound ServiceAccount
// token's TokenReview (Kubernetes 1.32 and later).
const (
	extraNodeName = "authentication.kubernetes.io/node-name"
	extraNodeUID  = "authentication.kubernetes.io/node-uid"
	extraPodName  = "authentication.kubernetes.io/pod-name"
	extraPodUID   = "authentication.kubernetes.io/pod-uid"
)

// Agent is what a verified token says of the agent that presented it.
type Agent struct {
	// Node is the name of the node the agent's pod was scheduled to.
	Node string
	// NodeUID tells a node apart from an earlier one of the same name.
	NodeUID string
	// Pod and PodUID are the agent's pod.
	Pod, PodUID string
}

// ErrRefused is wrapped by every error of Verify that is about the token
// (not about reaching the API server): the agent gets no configuration.
var ErrRefused = errors.New("agent identity refused")

// Creator creates objects; TokenReviews are created and answered in one
// call. A controller-runtime client is one.
type Creator interface {
	Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error
}

// Verifier checks agents' tokens with TokenReviews. Verified tokens are
// remembered for TTL, so that agents reconnecting or reporting do not make
// one TokenReview each; a refused token is never remembered.
type Verifier struct {
	reviews Creator
	// serviceAccount is the agents' username,
	// system:serviceaccount:<namespace>:<name>.
	serviceAccount string
	ttl            time.Duration
	now            func() time.Time

	mu    sync.Mutex
	known map[[sha256.Size]byte]known
}

type known struct {
	agent   Agent
	expires time.Time
}

// maxKnown bounds the remembered tokens: a node's agent holds one token
// at a time (two across a rotation), so this is thousands of nodes.
const maxKnown = 8192

// NewVerifier returns a Verifier that accepts tokens of the ServiceAccount
// namespace/name only, bound to a pod; ttl bounds how long a verified token
// is taken without asking again (how long an agent pod deleted, or its
// token revoked, may still be served).
func NewVerifier(reviews Creator, namespace, name string, ttl time.Duration) *Verifier {
	return &Verifier{
		reviews:        reviews,
		serviceAccount: "system:serviceaccount:" + namespace + ":" + name,
		ttl:            ttl,
		now:            time.Now,
		known:          map[[sha256.Size]byte]known{},
	}
}

// Verify returns the agent the token belongs to. An error wrapping
// ErrRefused says why the token is not an agent's; any other error is
// the TokenReview's own failure, to be retried.
func (v *Verifier) Verify(ctx context.Context, token string) (Agent, error) {
	if token == "" {
		return Agent{}, fmt.Errorf("%w: no bearer token", ErrRefused)
	}
	sum := sha256.Sum256([]byte(token))
	now := v.now()
	v.mu.Lock()
	k, ok := v.known[sum]
	v.mu.Unlock()
	if ok && now.Before(k.expires) {
		return k.agent, nil
	}
	tr := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: []string{Audience}}}
	if err := v.reviews.Create(ctx, tr); err != nil {
		return Agent{}, fmt.Errorf("reviewing an agent's token: %w", err)
	}
	a, err := v.agentOf(&tr.Status)
	if err != nil {
		return Agent{}, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.known) >= maxKnown {
		for s, k := range v.known {
			if !now.Before(k.expires) {
				delete(v.known, s)
			}
		}
		if len(v.known) >= maxKnown {
			clear(v.known)
		}
	}
	v.known[sum] = known{agent: a, expires: now.Add(v.ttl)}
	return a, nil
}

// agentOf checks a TokenReview's answer and reads the agent from it.
func (v *Verifier) agentOf(s *authenticationv1.TokenReviewStatus) (Agent, error) {
	switch {
	case !s.Authenticated:
		why := s.Error
		if why == "" {
			why = "not authenticated"
		}
		return Agent{}, fmt.Errorf("%w: the API server did not authenticate the token: %s", ErrRefused, why)
	case !slices.Contains(s.Audiences, Audience):
		return Agent{}, fmt.Errorf("%w: the token is not for audience %s", ErrRefused, Audience)
	case s.User.Username != v.serviceAccount:
		return Agent{}, fmt.Errorf("%w: the token is %s's, not the agents' (%s)", ErrRefused, s.User.Username, v.serviceAccount)
	}
	one := func(key string) (string, error) {
		vals := s.User.Extra[key]
		if len(vals) != 1 || vals[0] == "" {
			return "", fmt.Errorf("%w: the token carries no %s: it must be a projected token of the agent's pod", ErrRefused, key)
		}
		return vals[0], nil
	}
	var a Agent
	var err error
	if a.Node, err = one(extraNodeName); err != nil {
		return Agent{}, err
	}
	if a.NodeUID, err = one(extraNodeUID); err != nil {
		return Agent{}, err
	}
	if a.Pod, err = one(extraPodName); err != nil {
		return Agent{}, err
	}
	if a.PodUID, err = one(extraPodUID); err != nil {
		return Agent{}, err
	}
	return a, nil
}

// Authorize refuses an agent asking for a node other than its own.
func Authorize(a Agent, node string) error {
	if a.Node != node {
		return fmt.Errorf("%w: the agent of node %q asked for node %q", ErrRefused, a.Node, node)
	}
	return nil
}
