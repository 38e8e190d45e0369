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
