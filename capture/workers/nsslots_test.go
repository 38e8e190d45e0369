package workers

import "testing"

func TestNamespaceSlots(t *testing.T) {
	s := newNamespaceSlots(2)
	wa, wb := make(chan struct{}, 1), make(chan struct{}, 1)
	for i := range 2 {
		if !s.tryAcquire("a", wa) {
			t.Fatalf("a could not take slot %d of 2", i+1)
		}
	}
	if s.tryAcquire("a", wa) {
		t.Fatal("a took a third slot over the limit of 2")
	}
	if !s.tryAcquire("b", wb) {
		t.Fatal("b was limited by a's streams")
	}
	if used, limit := s.inUse("a"); used != 2 || limit != 2 {
		t.Fatalf("a uses %d of %d, want 2 of 2", used, limit)
	}
	select {
	case <-wa:
		t.Fatal("a was woken before a slot freed")
	default:
	}
	s.release("a")
	select {
	case <-wa:
	default:
		t.Fatal("a was not woken when its slot freed")
	}
	if !s.tryAcquire("a", wa) {
		t.Fatal("a could not take the freed slot")
	}
	s.tryAcquire("a", wa) // registers again
	s.unregister("a", wa)
	s.release("a")
	select {
	case <-wa:
		t.Fatal("an unregistered pipeline was woken")
	default:
	}
	s.release("a")
	s.release("b")
	if len(s.used) != 0 || len(s.waiters) != 0 {
		t.Fatalf("state left after every slot was released: %v %v", s.used, s.waiters)
	}
	unlimited := newNamespaceSlots(0)
	for range 5000 {
		if !unlimited.tryAcquire("a", wa) {
			t.Fatal("an unlimited namespace was limited")
		}
	}
}

// TestNamespaceSlotLimitsOfAPolicy: a namespace's own limit (its
// CapturePolicy's) replaces the operator's for it alone; raising it wakes
// the pipelines that wait, and zero gives the operator's back.
func TestNamespaceSlotLimitsOfAPolicy(t *testing.T) {
	s := newNamespaceSlots(2)
	w := make(chan struct{}, 1)
	s.setLimit("small", 1)
	if !s.tryAcquire("small", w) || s.tryAcquire("small", w) {
		t.Fatal("the policy's limit of 1 did not hold")
	}
	if used, limit := s.inUse("small"); used != 1 || limit != 1 {
		t.Fatalf("small uses %d of %d, want 1 of 1", used, limit)
	}
	if _, limit := s.inUse("other"); limit != 2 {
		t.Fatalf("another namespace's limit is %d, want the operator's 2", limit)
	}
	s.setLimit("small", 3)
	select {
	case <-w:
	default:
		t.Fatal("raising the limit woke nobody")
	}
	for i := range 2 {
		if !s.tryAcquire("small", w) {
			t.Fatalf("slot %d of the raised limit refused", i+2)
		}
	}
	if s.tryAcquire("small", w) {
		t.Fatal("a fourth slot over the raised limit of 3")
	}
	s.setLimit("small", 0)
	if _, limit := s.inUse("small"); limit != 2 {
		t.Fatalf("without a policy the limit is %d, want the operator's 2", limit)
	}
}
