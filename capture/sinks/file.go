package sinks

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/log-capturer/log-capturer/capture"
)

// fileRegistry hands out one writer per file, however many pipelines write
// to it, and closes it when the last of them is done.
type fileRegistry struct {
	root string
	// perNamespace and total bound the bytes File sinks may keep on disk
	// (each file's maxSize × (maxFiles + 1)), per namespace and over all;
	// zero is unlimited.
	perNamespace, total int64

	mu      sync.Mutex
	writers map[string]*fileWriter
}

func newFileRegistry(root string, perNamespace, total int64) *fileRegistry {
	return &fileRegistry{root: root, perNamespace: perNamespace, total: total, writers: map[string]*fileWriter{}}
}

// ErrFileQuota is returned for a File sink whose files would exceed the
// operator's disk quota.
var ErrFileQuota = errors.New("over the operator's file sink quota")

// keeps is what a File sink may keep on disk: its file and the rotated ones.
func keeps(c *capture.FileConfig) int64 { return c.MaxSize * int64(c.MaxFiles+1) }

// checkQuotaLocked refuses a file of namespace ns that would keep need
// bytes (replacing what w, when set, kept) beyond a quota.
func (r *fileRegistry) checkQuotaLocked(ns string, c *capture.FileConfig, w *fileWriter) error {
	need := keeps(c)
	var inNS, all int64
	for _, o := range r.writers {
		if o == w {
			continue
		}
		all += o.keeps
		if o.namespace == ns {
			inNS += o.keeps
		}
	}
	limit, from := r.perNamespace, "the operator's quota of %s per namespace (--file-quota-per-namespace)"
	if c.NamespaceQuota > 0 {
		limit, from = c.NamespaceQuota, "the quota of %s per namespace of CapturePolicy "+strconv.Quote(c.QuotaPolicy)+" (limits.fileQuota)"
	}
	if limit > 0 && inNS+need > limit {
		return fmt.Errorf("the File sinks of namespace %s would keep up to %s on disk (maxSize × (maxFiles + 1) of each file; this one %s), over "+from+": %w",
			ns, quantity(inNS+need), quantity(need), quantity(limit), ErrFileQuota)
	}
	if r.total > 0 && all+need > r.total {
		return fmt.Errorf("the File sinks of all namespaces would keep up to %s on disk (this one %s), over the operator's total quota of %s (--file-quota-total): %w",
			quantity(all+need), quantity(need), quantity(r.total), ErrFileQuota)
	}
	return nil
}

func quantity(n int64) string { return resource.NewQuantity(n, resource.BinarySI).String() }

// ErrOutsideRoot is returned for a file sink path that leaves the file sink root.
var ErrOutsideRoot = errors.New("path leaves the file sink root")

// resolve returns the absolute path of a File sink of namespace ns: under
// <root>/<ns>/, refusing any path that leaves that directory, also through
// a symbolic link, so that no namespace reaches another's files.
func (r *fileRegistry) resolve(ns, rel string) (string, error) {
	if r.root == "" {
		return "", errors.New("the operator has no --file-sink-root")
	}
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return "", fmt.Errorf("the File sink's namespace %q: %s", ns, strings.Join(errs, "; "))
	}
	segments := strings.Split(filepath.ToSlash(rel), "/")
	if rel == "" || filepath.IsAbs(rel) || slices.Contains(segments, "..") || slices.Contains(segments, ".") || slices.Contains(segments, "") {
		return "", fmt.Errorf("%q: %w", rel, ErrOutsideRoot)
	}
	root, err := filepath.Abs(r.root)
	if err != nil {
		return "", fmt.Errorf("resolving the file sink root: %w", err)
	}
	if err := os.MkdirAll(root, 0o750); err != nil {
		return "", fmt.Errorf("creating the file sink root: %w", err)
	}
	if root, err = filepath.EvalSymlinks(root); err != nil {
		return "", fmt.Errorf("resolving the file sink root: %w", err)
	}
	base := filepath.Join(root, ns)
	full := filepath.Join(base, rel)
	dir := filepath.Dir(full)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", fmt.Errorf("creating %s: %w", dir, err)
	}
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", fmt.Errorf("resolving %s: %w", dir, err)
	}
	if realDir != base && !strings.HasPrefix(realDir, base+string(filepath.Separator)) {
		return "", fmt.Errorf("%q resolves to %s: %w", rel, realDir, ErrOutsideRoot)
	}
	return filepath.Join(realDir, filepath.Base(full)), nil
}

func (r *fileRegistry) open(ns string, c *capture.FileConfig) (*fileDeliverer, error) {
	path, err := r.resolve(ns, c.Path)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	w, ok := r.writers[path] // under <root>/<ns>/: only ns's pipelines share it
	if err := r.checkQuotaLocked(ns, c, w); err != nil {
		return nil, err
	}
	if !ok {
		w = &fileWriter{path: path, namespace: ns}
		if err := w.openFile(); err != nil {
			return nil, err
		}
		r.writers[path] = w
	}
	w.refs++
	w.keeps = keeps(c)
	w.configure(c)
	return &fileDeliverer{reg: r, w: w, raw: c.Raw}, nil
}

func (r *fileRegistry) release(w *fileWriter) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	w.refs--
	if w.refs > 0 {
		return nil
	}
	delete(r.writers, w.path)
	return w.close()
}

// fileWriter appends to one file, rotating it by size.
type fileWriter struct {
	path string
	// namespace owns it (its directory); keeps is what it may keep on disk,
	// counted against that namespace's quota. Both are guarded by the
	// registry's lock.
	namespace string
	keeps     int64
	refs      int

	// mu guards the settings (the last pipeline to open the file sets them)
	// and the file.
	mu       sync.Mutex
	maxSize  int64
	maxFiles int
	compress bool
	f        *os.File
	size     int64
}

// configure takes the settings of the sink that opened the file last.
func (w *fileWriter) configure(c *capture.FileConfig) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.maxSize, w.maxFiles, w.compress = c.MaxSize, c.MaxFiles, c.Compress
}

// openFile opens the file for appending, so that a restart continues it.
// The last component is never followed as a symbolic link, and only a
// regular file is written.
func (w *fileWriter) openFile() error {
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0o640)
	if err != nil {
		return fmt.Errorf("opening %s: %w", w.path, err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("reading %s: %w", w.path, err)
	}
	if !st.Mode().IsRegular() {
		_ = f.Close()
		return fmt.Errorf("%s is not a regular file (%s)", w.path, st.Mode().Type())
	}
	w.f, w.size = f, st.Size()
	return nil
}

// write appends b, rotating first when b would take the file past maxSize.
func (w *fileWriter) write(b []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		if err := w.openFile(); err != nil {
			return err
		}
	}
	if w.size > 0 && w.maxSize > 0 && w.size+int64(len(b)) > w.maxSize {
		if err := w.rotate(); err != nil {
			return err
		}
	}
	n, err := w.f.Write(b)
	w.size += int64(n)
	if err != nil {
		return fmt.Errorf("writing %s: %w", w.path, err)
	}
	return nil
}

// rotate syncs and renames the current file, compresses it when asked, opens
// a new one and deletes the oldest rotated files beyond maxFiles.
func (w *fileWriter) rotate() error {
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", w.path, err)
	}
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", w.path, err)
	}
	w.f = nil
	rotated := w.path + "." + time.Now().UTC().Format("20060102T150405.000000000Z")
	if err := os.Rename(w.path, rotated); err != nil {
		return fmt.Errorf("rotating %s: %w", w.path, err)
	}
	if err := w.openFile(); err != nil {
		return err
	}
	if w.compress {
		if err := gzipFile(rotated); err != nil {
			return err
		}
	}
	return w.prune()
}

func gzipFile(path string) error {
	in, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("compressing %s: %w", path, err)
	}
	defer in.Close()
	out, err := os.OpenFile(path+".gz", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("compressing %s: %w", path, err)
	}
	zw := gzip.NewWriter(out)
	_, err = io.Copy(zw, in)
	if cerr := zw.Close(); err == nil {
		err = cerr
	}
	if serr := out.Sync(); err == nil {
		err = serr
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("compressing %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("removing %s after compressing it: %w", path, err)
	}
	return nil
}

// rotatedSuffix matches exactly what rotate appends to a file's name.
var rotatedSuffix = regexp.MustCompile(`^\.[0-9]{8}T[0-9]{6}\.[0-9]{9}Z(\.gz)?$`)

// prune deletes the oldest rotated files beyond maxFiles. Only names rotate
// made are considered (never a glob of the path, which could hold pattern
// characters), and they sort by time.
func (w *fileWriter) prune() error {
	dir, base := filepath.Split(w.path)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("listing rotated files of %s: %w", w.path, err)
	}
	var rotated []string
	for _, e := range entries {
		if name := e.Name(); e.Type().IsRegular() && strings.HasPrefix(name, base) && rotatedSuffix.MatchString(name[len(base):]) {
			rotated = append(rotated, filepath.Join(dir, name))
		}
	}
	slices.Sort(rotated)
	for len(rotated) > w.maxFiles {
		if err := os.Remove(rotated[0]); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("removing %s: %w", rotated[0], err)
		}
		rotated = rotated[1:]
	}
	return nil
}

func (w *fileWriter) close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Sync()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	w.f = nil
	if err != nil {
		return fmt.Errorf("closing %s: %w", w.path, err)
	}
	return nil
}

// fileDeliverer formats batches for one pipeline and writes them through the
// shared writer of its file.
type fileDeliverer struct {
	reg *fileRegistry
	w   *fileWriter
	raw bool
	buf []byte
}

func (d *fileDeliverer) deliver(_ context.Context, batch []*capture.Record) error {
	d.buf = appendBatch(d.buf[:0], batch, d.raw)
	return d.w.write(d.buf)
}

func (d *fileDeliverer) close(context.Context) error { return d.reg.release(d.w) }
