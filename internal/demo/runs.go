package demo

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// keptRuns is how many runs' output newRunDir keeps, this one included.
const keptRuns = 5

// newRunDir creates the directory of a new run under root
// (root/run-<YYYYMMDD-hhmmss>), so that a run checks only what it wrote, and
// removes the oldest runs beyond keptRuns. Only directories named like runs
// are ever removed.
func newRunDir(root string) (string, error) {
	if err := os.MkdirAll(root, 0o750); err != nil {
		return "", fmt.Errorf("creating %s: %w", root, err)
	}
	base := filepath.Join(root, "run-"+time.Now().Format("20060102-150405"))
	dir := base
	for i := 2; ; i++ {
		err := os.Mkdir(dir, 0o750)
		if err == nil {
			break
		}
		if !os.IsExist(err) {
			return "", fmt.Errorf("creating %s: %w", dir, err)
		}
		dir = fmt.Sprintf("%s-%d", base, i)
	}
	runs, err := filepath.Glob(filepath.Join(root, "run-*"))
	if err != nil {
		return "", fmt.Errorf("listing earlier runs: %w", err)
	}
	sort.Strings(runs) // oldest first: the names sort by time
	for len(runs) > keptRuns {
		if runs[0] != dir {
			if err := os.RemoveAll(runs[0]); err != nil {
				return "", fmt.Errorf("removing the old run %s: %w", runs[0], err)
			}
		}
		runs = runs[1:]
	}
	return dir, nil
}
