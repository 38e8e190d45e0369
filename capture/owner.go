package capture

import "context"

// Owner starts goroutines that it owns: it counts them, ends them through
// their context and waits for them before it returns itself. The engine's
// goroutine groups are Owners, and their counts are the goroutine numbers in
// status.
type Owner interface {
	Go(f func(ctx context.Context))
}

type ownerKey struct{}

// WithOwner returns ctx carrying o, for the code that runs under o.
func WithOwner(ctx context.Context, o Owner) context.Context {
	return context.WithValue(ctx, ownerKey{}, o)
}

// Go starts f as a goroutine of the Owner that ctx carries: a sink that
// needs a helper goroutine starts it this way from its Run, so that the
// pipeline counts it, ends it and waits for it. f's context ends with the
// Owner and carries it too, so f may start more the same way. Go reports
// false (and starts nothing) when ctx carries no Owner.
func Go(ctx context.Context, f func(ctx context.Context)) bool {
	o, ok := ctx.Value(ownerKey{}).(Owner)
	if !ok {
		return false
	}
	o.Go(func(c context.Context) { f(WithOwner(c, o)) })
	return true
}
