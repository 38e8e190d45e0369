package envtestutil

import (
	"context"
	"errors"
	"fmt"
	"io"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// DecodeObjects reads the objects of a multi-document YAML (or JSON)
// stream, skipping empty documents.
func DecodeObjects(r io.Reader) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(r, 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("decoding the objects: %w", err)
		}
		if len(m) > 0 {
			out = append(out, &unstructured.Unstructured{Object: m})
		}
	}
}

// DryRunApply applies every object server-side as a dry run, as owner, and
// counts them by kind. The Namespaces among them are created first, for
// real: namespaced objects can only be dry-run into an existing namespace.
func DryRunApply(ctx context.Context, c client.Client, owner string, objs []*unstructured.Unstructured) (map[string]int, error) {
	for _, u := range objs {
		if u.GetKind() == "Namespace" {
			if err := client.IgnoreAlreadyExists(c.Create(ctx, u.DeepCopy())); err != nil {
				return nil, fmt.Errorf("creating Namespace %s: %w", u.GetName(), err)
			}
		}
	}
	kinds := map[string]int{}
	for _, u := range objs {
		kinds[u.GetKind()]++
		u = u.DeepCopy()
		u.SetManagedFields(nil)
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(owner), client.ForceOwnership, client.DryRunAll); err != nil {
			return nil, fmt.Errorf("%s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
	}
	return kinds, nil
}
