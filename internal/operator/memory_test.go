package operator

import (
	"flag"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
)

func TestMemorySettings(t *testing.T) {
	const mi = 1 << 20
	tests := []struct {
		name                 string
		budget, limit        int64
		env                  string
		wantBudget, wantSoft int64
	}{
		{"derived from a 512Mi limit", 0, 512 * mi, "", 512 * mi * 2 / 5, 512 * mi / 10 * 9},
		{"GOMEMLIMIT in the environment wins", 0, 512 * mi, "300MiB", 512 * mi * 2 / 5, 0},
		{"no limit", 0, 0, "", DefaultMemoryBudgetWithoutLimit, 0},
		{"explicit budget", 64 * mi, 512 * mi, "", 64 * mi, 512 * mi / 10 * 9},
		{"unlimited", -1, 512 * mi, "", 0, 512 * mi / 10 * 9},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, s := memorySettings(tc.budget, tc.limit, tc.env)
			if b != tc.wantBudget || s != tc.wantSoft {
				t.Fatalf("budget %d soft limit %d, want %d and %d", b, s, tc.wantBudget, tc.wantSoft)
			}
		})
	}
}

func TestMemoryBudgetFlag(t *testing.T) {
	tests := []struct {
		arg     string
		want    int64
		wantErr bool
	}{
		{"256Mi", 256 << 20, false},
		{"1G", 1e9, false},
		{"auto", 0, false},
		{"unlimited", -1, false},
		{"0", 0, true},
		{"-5Mi", 0, true},
		{"lots", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.arg, func(t *testing.T) {
			var o Options
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(new(discard))
			o.BindFlags(fs)
			err := fs.Parse([]string{"--memory-budget=" + tc.arg})
			if (err != nil) != tc.wantErr || (err == nil && o.MemoryBudget != tc.want) {
				t.Fatalf("got %d, %v; want %d, error %v", o.MemoryBudget, err, tc.want, tc.wantErr)
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func TestSecretMetadataKeepsNoPlaintext(t *testing.T) {
	m := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "shop",
		Labels: map[string]string{"app": "db"},
		Annotations: map[string]string{
			"kubectl.kubernetes.io/last-applied-configuration": `{"data":{"password":"cGxhaW50ZXh0"}}`,
			logsv1alpha1.AnnotationSinkTargets:                 "loki",
		},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}}}
	out, err := stripSecretMetadata(m)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*metav1.PartialObjectMetadata)
	if len(got.Annotations) != 1 || got.Annotations[logsv1alpha1.AnnotationSinkTargets] != "loki" || got.ManagedFields != nil {
		t.Fatalf("annotations %v, managedFields %v: only the consent annotation may stay", got.Annotations, got.ManagedFields)
	}
	if got.Labels["app"] != "db" || got.Name != "db" {
		t.Fatalf("names and labels must stay: %+v", got.ObjectMeta)
	}
}
