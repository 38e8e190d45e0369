package crifile

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// LogBase is the file base of a container instance's log: the kubelet
// names it after the container's restart count.
func LogBase(restart int) string { return strconv.Itoa(restart) + ".log" }

// ParseLogBase returns the restart count of a log base ("3.log"), false
// for anything else.
func ParseLogBase(base string) (int, bool) {
	num, ok := strings.CutSuffix(base, ".log")
	if !ok || num == "" || len(num) > 9 {
		return 0, false
	}
	n := 0
	for i := range len(num) {
		if num[i] < '0' || num[i] > '9' {
			return 0, false
		}
		n = 10*n + int(num[i]-'0')
	}
	return n, true
}

// Instances lists the restart counts that have a log in dir (a live
// "<n>.log" or a rotated one), in increasing order. A directory that does
// not exist has none.
func Instances(dir string) ([]int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("listing %s: %w", dir, err)
	}
	var out []int
	for _, e := range ents {
		name := e.Name()
		if i := strings.Index(name, ".log"); i > 0 {
			name = name[:i+len(".log")]
		}
		if n, ok := ParseLogBase(name); ok && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

// OpenSince starts reading the log base in dir at the file that holds the
// records from since on: the newest file whose first record is not after
// since, or the oldest file when every file starts later. The records of
// that file before since are the caller's to skip.
func OpenSince(dir, base string, since time.Time, o Options) (*Follower, error) {
	if since.IsZero() {
		f, _, err := Open(dir, base, Position{}, o)
		return f, err
	}
	var err error
	for range 5 {
		var f *Follower
		if f, err = openSince(dir, base, since, o); err == nil || !os.IsNotExist(err) {
			return f, err
		}
	}
	return nil, err
}

func openSince(dir, base string, since time.Time, o Options) (*Follower, error) {
	cands, err := candidates(dir, base)
	if err != nil {
		return nil, err
	}
	if len(cands) == 0 {
		return nil, fmt.Errorf("%s in %s: %w", base, dir, ErrNoLog)
	}
	f := newFollower(dir, base, o)
	ids, _, err := f.identifyAll(cands)
	if err != nil {
		return nil, err
	}
	pick := -1
	for i, id := range ids {
		if len(id.Head) == 0 && id.Ino == 0 {
			continue // went meanwhile
		}
		if t := headTime(id.Head); pick < 0 || !t.IsZero() && !t.After(since) {
			pick = i
		}
	}
	if pick < 0 {
		return nil, fmt.Errorf("%s in %s: %w", base, dir, ErrNoLog)
	}
	want := ids[pick]
	if f.cur, err = openAs(cands[pick], 0, want); err != nil {
		return nil, err
	}
	return f, nil
}
