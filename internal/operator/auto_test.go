package operator

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/log-capturer/log-capturer/capture"
)

func TestOwnPositions(t *testing.T) {
	pos := []capture.ContainerPosition{{UID: "on-a", Container: "main", Count: 3}, {UID: "on-b", Container: "main", Count: 9}, {UID: "on-a", Container: "side"}}
	got := ownPositions(pos, map[string]bool{"on-a": true})
	want := []capture.ContainerPosition{{UID: "on-a", Container: "main", Count: 3}, {UID: "on-a", Container: "side"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("an agent's report spoke for another node's container (-want +got):\n%s", d)
	}
	if got := ownPositions(pos, nil); len(got) != 0 {
		t.Errorf("with no pod on the node, %d positions were kept", len(got))
	}
}
