package runtime

// Crash stops every pipeline the way a killed process stops: at the next
// cancel the sinks are not drained and no last positions write happens.
func (m *Manager) Crash() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.pipelines {
		e.p.crashed.Store(true)
	}
}
