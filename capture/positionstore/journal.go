//go:build unix

package positionstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/log-capturer/log-capturer/capture"
)

// ErrDamagedJournal means a pipeline's journal file exists but cannot be
// trusted: truncated, of another format or format version, of a wrong
// length or checksum, larger than JournalOptions.MaxBytes, or not a regular
// file. The engine reports PositionsReset and stores positions anew; the
// next Save replaces the file.
var ErrDamagedJournal = errors.New("the positions journal file is damaged")

// ErrJournalLocked means another Journal holds the directory's lock; the
// error that wraps it names the holder.
var ErrJournalLocked = errors.New("the positions journal is locked by another writer")

// ErrInvalidRef means a PipelineRef cannot name a journal file: its
// namespace or name is not a Kubernetes name (empty, too long, with '/',
// NUL, "..", or another character a name may not have), or its UID is too
// long or has NUL.
var ErrInvalidRef = errors.New("invalid pipeline reference")

// JournalVersion is the format version the journal writes and reads.
const JournalVersion = 1

// DefaultJournalMaxBytes is the largest journal file OpenJournal accepts
// unless JournalOptions.MaxBytes says otherwise: the engine's 8 MiB of
// encoded positions and the largest header.
const DefaultJournalMaxBytes = 8<<20 + maxHeaderSize

// LockFileName is the file in a journal's directory whose lock makes one
// Journal the directory's only writer; it holds the holder's identity.
const LockFileName = "LOCK"

const (
	journalMagic   = "LCPJ"
	journalSuffix  = ".pos"
	tempPrefix     = ".tmp-"
	fixedHeader    = 24 // magic, version, three lengths, containers, payload length and CRC
	maxNamespace   = 63
	maxPipeline    = 253
	maxUID         = 128
	maxHeaderSize  = fixedHeader + maxNamespace + maxPipeline + maxUID + 4
	maxFileName    = 255 // NAME_MAX of Linux file systems
	maxHolder      = 256
	maxLockContent = 1024
	lockRetry      = 100 * time.Millisecond
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// JournalOptions configure OpenJournal.
type JournalOptions struct {
	// Holder names the opener in the LOCK file beside its pid, host name
	// and start time, e.g. the agent's pod; at most 256 bytes are kept,
	// without control characters.
	Holder string
	// MaxBytes is the largest journal file, header included, that Load
	// reads and Save writes; DefaultJournalMaxBytes when 0 or less.
	MaxBytes int64
}

// Journal is a capture.PositionStore in a local directory, for a node
// agent whose hostPath directory outlives its pod: one file per pipeline,
// each written whole (temporary file, fsync, rename, fsync of the
// directory), so that a crash leaves either the previous or the new
// positions, never a mix.
//
// A Journal holds an exclusive flock(2) on the directory's LOCK file from
// OpenJournal to Close: one writer per directory. The lock is advisory and
// bound to the open file, so the kernel drops it when the process dies,
// even by SIGKILL. After Close every method returns an error wrapping
// os.ErrClosed: nothing is written once the next agent may hold the lock.
//
// The format of a pipeline's file "<namespace>.<name>.pos" (the name
// shortened with a hash when the whole would be longer than 254 bytes),
// integers big-endian:
//
//	offset  size  field
//	0       4     magic "LCPJ"
//	4       2     format version, 1
//	6       2     namespace length n (1-63)
//	8       2     name length m (1-253)
//	10      2     UID length u (0-128)
//	12      4     containers in the positions (for diagnosis)
//	16      4     payload length p
//	20      4     CRC-32C (Castagnoli) of the payload
//	24      n+m+u namespace, name, UID
//	24+n+m+u 4    CRC-32C of the header's bytes before it
//	28+n+m+u p    payload: the positions as the engine encoded them
//
// The methods may be called from several goroutines.
type Journal struct {
	dir      string
	maxBytes int64

	mu     sync.RWMutex
	closed bool
	lock   *os.File // dir/LOCK, flocked
	dirf   *os.File // dir, for fsync after a rename or removal
}

var _ capture.PositionStore = (*Journal)(nil)

// OpenJournal opens the journal in dir, creating dir (mode 0700) when it
// does not exist. It waits until it holds the lock of dir/LOCK, trying
// every 100 ms, while ctx lasts: during a rolling update a new agent waits
// for the old one to let go. When ctx ends first it returns an error
// wrapping ErrJournalLocked and ctx's error, naming the holder as the LOCK
// file last named it. Holding the lock, it writes its own identity there
// and removes the temporary files a crashed writer left.
func OpenJournal(ctx context.Context, dir string, o JournalOptions) (*Journal, error) {
	if dir == "" {
		return nil, errors.New("opening a positions journal: no directory given")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the positions journal directory: %w", err)
	}
	dirf, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("opening the positions journal directory: %w", err)
	}
	lockPath := filepath.Join(dir, LockFileName)
	lock, err := lockFile(ctx, lockPath)
	if err != nil {
		_ = dirf.Close()
		return nil, err
	}
	fail := func(err error) (*Journal, error) {
		_ = lock.Close() // drops the lock
		_ = dirf.Close()
		return nil, err
	}
	if err := writeHolder(lock, o.Holder); err != nil {
		return fail(fmt.Errorf("writing the holder into %s: %w", lockPath, err))
	}
	if err := removeTemps(dir); err != nil {
		return fail(err)
	}
	if err := dirf.Sync(); err != nil {
		return fail(fmt.Errorf("syncing the positions journal directory %s: %w", dir, err))
	}
	maxBytes := o.MaxBytes
	if maxBytes <= 0 {
		maxBytes = DefaultJournalMaxBytes
	}
	return &Journal{dir: dir, maxBytes: maxBytes, lock: lock, dirf: dirf}, nil
}

// lockFile opens path and waits for its exclusive flock. A holder that
// removes the file while another opener waits (an agent removing its
// journal as it is uninstalled) leaves that opener with the lock of a file
// no one else can open: the lock counts only while path is still the
// locked file, so lockFile opens it again until it is.
func lockFile(ctx context.Context, path string) (*os.File, error) {
	for {
		lock, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			return nil, fmt.Errorf("opening the positions journal's lock file: %w", err)
		}
		if err := waitForLock(ctx, lock); err != nil {
			_ = lock.Close()
			return nil, err
		}
		var held, named unix.Stat_t
		if err := unix.Fstat(int(lock.Fd()), &held); err != nil {
			_ = lock.Close()
			return nil, fmt.Errorf("checking the lock file %s: %w", path, err)
		}
		err = unix.Lstat(path, &named)
		if err == nil && held.Dev == named.Dev && held.Ino == named.Ino {
			return lock, nil
		}
		_ = lock.Close()
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("checking the lock file %s: %w", path, err)
		}
	}
}

// waitForLock takes the exclusive flock of lock, trying again every
// lockRetry until ctx ends.
func waitForLock(ctx context.Context, lock *os.File) error {
	t := time.NewTicker(lockRetry)
	defer t.Stop()
	for {
		err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EWOULDBLOCK), errors.Is(err, unix.EINTR):
		default:
			return fmt.Errorf("locking %s: %w", lock.Name(), err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the lock of %s, held by %s: %w (%w)", lock.Name(), readHolder(lock), ErrJournalLocked, ctx.Err())
		case <-t.C:
		}
	}
}

// writeHolder replaces the LOCK file's content with who holds it.
func writeHolder(lock *os.File, holder string) error {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	line := fmt.Sprintf("pid=%d host=%s since=%s", os.Getpid(), printable(host, maxHolder),
		time.Now().UTC().Format(time.RFC3339))
	if h := printable(holder, maxHolder); h != "" {
		line += " holder=" + strconv.Quote(h)
	}
	if err := lock.Truncate(0); err != nil {
		return fmt.Errorf("truncating: %w", err)
	}
	if _, err := lock.WriteAt([]byte(line+"\n"), 0); err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	if err := lock.Sync(); err != nil {
		return fmt.Errorf("syncing: %w", err)
	}
	return nil
}

// readHolder returns who the LOCK file says holds it, for an error message.
func readHolder(lock *os.File) string {
	buf := make([]byte, maxLockContent)
	n, err := lock.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Sprintf("a writer the lock file does not name (reading it: %v)", err)
	}
	if h := printable(string(buf[:n]), maxLockContent); h != "" {
		return h
	}
	return "a writer the lock file does not name"
}

// printable returns s with spaces for control characters, without invalid
// UTF-8, trimmed and cut to at most limit bytes.
func printable(s string, limit int) string {
	s = strings.TrimSpace(strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "")))
	if len(s) > limit {
		s = strings.ToValidUTF8(s[:limit], "")
	}
	return s
}

// removeTemps removes the temporary files a writer that crashed during Save
// left; only the lock's holder may, since they may be another's in flight.
func removeTemps(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("listing the positions journal %s: %w", dir, err)
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), tempPrefix) || !e.Type().IsRegular() {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing a leftover temporary file: %w", err)
		}
	}
	return nil
}

// Close releases the lock. Later calls of any method return an error
// wrapping os.ErrClosed; Close itself may be called again and then returns
// nil.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil
	}
	j.closed = true
	var errs []error
	if err := unix.Flock(int(j.lock.Fd()), unix.LOCK_UN); err != nil {
		errs = append(errs, fmt.Errorf("unlocking: %w", err))
	}
	if err := j.lock.Close(); err != nil {
		errs = append(errs, fmt.Errorf("closing the lock file: %w", err))
	}
	if err := j.dirf.Close(); err != nil {
		errs = append(errs, fmt.Errorf("closing the directory: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("closing the positions journal %s: %w", j.dir, err)
	}
	return nil
}

// Dir is the journal's directory.
func (j *Journal) Dir() string { return j.dir }

// use takes the read lock of an open journal; the caller unlocks.
func (j *Journal) use(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("positions journal %s: %w", j.dir, err)
	}
	j.mu.RLock()
	if j.closed {
		j.mu.RUnlock()
		return fmt.Errorf("positions journal %s: %w", j.dir, os.ErrClosed)
	}
	return nil
}

// Load returns the pipeline's stored positions, or nil when none are
// stored. It returns nil too for the positions of a deleted pipeline of the
// same name (the file's UID is not ref's; a ref without UID matches any),
// as the ConfigMap store does: the pipeline starts anew and its next Save
// replaces the file. A file that holds another pipeline (only a hash
// collision of two long names, or a file copied by hand) yields an error
// wrapping capture.ErrForeignPositions; a damaged one an error wrapping
// ErrDamagedJournal. A file larger than MaxBytes is refused before it is
// read.
func (j *Journal) Load(ctx context.Context, ref capture.PipelineRef) ([]byte, error) {
	path, err := j.path(ref)
	if err != nil {
		return nil, err
	}
	if err := j.use(ctx); err != nil {
		return nil, err
	}
	defer j.mu.RUnlock()
	f, h, err := j.open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	if err := h.check(path, ref); err != nil {
		return nil, err
	}
	if ref.UID != "" && h.ref.UID != ref.UID {
		return nil, nil // left by a deleted pipeline of the same name
	}
	data := make([]byte, h.payloadLen)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, damaged(path, fmt.Sprintf("reading the payload: %v", err))
	}
	if crc32.Checksum(data, castagnoli) != h.payloadCRC {
		return nil, damaged(path, "the payload's CRC-32C does not match")
	}
	return data, nil
}

// Save writes the pipeline's positions: to a temporary file in the
// directory, synced, renamed over the pipeline's file, then the directory
// synced. The file is mode 0600. A file of another pipeline in its place is
// left alone (an error wrapping capture.ErrForeignPositions); a damaged one
// is replaced.
func (j *Journal) Save(ctx context.Context, ref capture.PipelineRef, data []byte, containers int) error {
	return j.write(ctx, ref, data, containers, true)
}

// Stage writes the pipeline's positions like Save but without fsync: the
// temporary file is written and renamed in place, so Load finds them after
// the process was killed (the kernel keeps what was written), while only
// what Save wrote is sure to survive a crash of the machine. The rename
// keeps a file whole either way.
func (j *Journal) Stage(ctx context.Context, ref capture.PipelineRef, data []byte, containers int) error {
	return j.write(ctx, ref, data, containers, false)
}

var _ capture.PositionStager = (*Journal)(nil)

func (j *Journal) write(ctx context.Context, ref capture.PipelineRef, data []byte, containers int, durable bool) error {
	path, err := j.path(ref)
	if err != nil {
		return err
	}
	hdr := encodeHeader(ref, data, containers)
	if size := int64(len(hdr)) + int64(len(data)); size > j.maxBytes || int64(len(data)) > math.MaxUint32 {
		return fmt.Errorf("positions of %s/%s: %d bytes with the header, more than the journal's limit of %d",
			ref.Namespace, ref.Name, size, j.maxBytes)
	}
	if err := j.use(ctx); err != nil {
		return err
	}
	defer j.mu.RUnlock()
	if f, h, err := j.open(path); err == nil {
		err = h.check(path, ref)
		_ = f.Close()
		if errors.Is(err, capture.ErrForeignPositions) {
			return err
		}
	}
	tmp, err := os.CreateTemp(j.dir, tempPrefix+"*")
	if err != nil {
		return fmt.Errorf("creating a temporary file for the positions of %s/%s: %w", ref.Namespace, ref.Name, err)
	}
	done := false
	defer func() {
		if !done {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(hdr); err != nil {
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if durable {
		if err := tmp.Sync(); err != nil {
			return fmt.Errorf("syncing %s: %w", tmp.Name(), err)
		}
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("renaming %s to %s: %w", tmp.Name(), path, err)
	}
	done = true
	if !durable {
		return nil
	}
	if err := j.dirf.Sync(); err != nil {
		return fmt.Errorf("syncing the positions journal directory %s: %w", j.dir, err)
	}
	return nil
}

// Delete removes the pipeline's positions and syncs the directory; none
// stored is no error. A file of another pipeline in its place is left alone
// and nil returned (this pipeline has nothing stored); a damaged one is
// removed.
func (j *Journal) Delete(ctx context.Context, ref capture.PipelineRef) error {
	path, err := j.path(ref)
	if err != nil {
		return err
	}
	if err := j.use(ctx); err != nil {
		return err
	}
	defer j.mu.RUnlock()
	f, h, err := j.open(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err == nil:
		err = h.check(path, ref)
		_ = f.Close()
		if errors.Is(err, capture.ErrForeignPositions) {
			return nil
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting the positions of %s/%s: %w", ref.Namespace, ref.Name, err)
	}
	if err := j.dirf.Sync(); err != nil {
		return fmt.Errorf("syncing the positions journal directory %s: %w", j.dir, err)
	}
	return nil
}

// Refs lists the pipelines whose positions the journal holds, sorted by
// file name, with the UID each was saved with. A file is listed only when
// it is whole: its header and payload check, and its name is the one its
// pipeline's positions are kept under. Damaged files are skipped, neither
// listed nor removed (a Load of their pipeline reports the damage and its
// next Save replaces them), as are temporary files, the LOCK file and any
// file whose name does not end in ".pos". Only reading the directory or
// opening a file for another reason than damage is an error.
func (j *Journal) Refs() ([]capture.PipelineRef, error) {
	if err := j.use(context.Background()); err != nil {
		return nil, err
	}
	defer j.mu.RUnlock()
	entries, err := os.ReadDir(j.dir)
	if err != nil {
		return nil, fmt.Errorf("listing the positions journal %s: %w", j.dir, err)
	}
	var refs []capture.PipelineRef
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), journalSuffix) || strings.HasPrefix(e.Name(), tempPrefix) {
			continue
		}
		path := filepath.Join(j.dir, e.Name())
		ref, err := j.verify(path)
		switch {
		case errors.Is(err, fs.ErrNotExist), errors.Is(err, ErrDamagedJournal):
			continue
		case err != nil:
			return nil, err
		}
		if name, err := fileName(ref); err != nil || name != e.Name() {
			continue // renamed or copied by hand: Load would never find it
		}
		refs = append(refs, ref)
	}
	return refs, nil
}

// verify reads a whole file, checking its header and payload CRC without
// holding the payload, and returns whose positions it holds.
func (j *Journal) verify(path string) (capture.PipelineRef, error) {
	f, h, err := j.open(path)
	if err != nil {
		return capture.PipelineRef{}, err
	}
	defer func() { _ = f.Close() }()
	sum := crc32.New(castagnoli)
	n, err := io.Copy(sum, f)
	if err != nil {
		return capture.PipelineRef{}, damaged(path, fmt.Sprintf("reading the payload: %v", err))
	}
	if n != int64(h.payloadLen) || sum.Sum32() != h.payloadCRC {
		return capture.PipelineRef{}, damaged(path, "the payload's length or CRC-32C does not match")
	}
	return h.ref, nil
}

// path validates ref and returns its file's path.
func (j *Journal) path(ref capture.PipelineRef) (string, error) {
	name, err := fileName(ref)
	if err != nil {
		return "", err
	}
	return filepath.Join(j.dir, name), nil
}

// open opens a journal file and reads its header, leaving the file at the
// payload, which the returned reader is limited to. An error wraps
// fs.ErrNotExist when there is no file, ErrDamagedJournal when it is
// damaged.
func (j *Journal) open(path string) (*limitedFile, header, error) {
	// O_NOFOLLOW: a symbolic link is not followed; O_NONBLOCK: a FIFO in
	// the file's place does not block the open.
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if errors.Is(err, unix.ELOOP) {
		return nil, header{}, damaged(path, "it is a symbolic link")
	}
	if err != nil {
		return nil, header{}, fmt.Errorf("opening %s: %w", path, err)
	}
	h, err := j.readHeader(f, path)
	if err != nil {
		_ = f.Close()
		return nil, header{}, err
	}
	return &limitedFile{Reader: io.LimitReader(f, int64(h.payloadLen)), f: f}, h, nil
}

// limitedFile reads an open journal file's payload, no further.
type limitedFile struct {
	io.Reader
	f *os.File
}

func (l *limitedFile) Close() error { return l.f.Close() }

// readHeader stats f, refusing what is not a regular file or is larger than
// maxBytes, and reads and checks its header.
func (j *Journal) readHeader(f *os.File, path string) (header, error) {
	st, err := f.Stat()
	if err != nil {
		return header{}, fmt.Errorf("reading %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return header{}, damaged(path, fmt.Sprintf("it is not a regular file (%s)", st.Mode().Type()))
	}
	if st.Size() > j.maxBytes {
		return header{}, damaged(path, fmt.Sprintf("%d bytes, more than the limit of %d", st.Size(), j.maxBytes))
	}
	h, err := decodeHeader(io.LimitReader(f, j.maxBytes), st.Size())
	if err != nil {
		return header{}, damaged(path, err.Error())
	}
	return h, nil
}

// header is a journal file's header.
type header struct {
	ref        capture.PipelineRef
	containers uint32
	payloadLen uint32
	payloadCRC uint32
}

// check tells whether the header is of ref's pipeline, whatever its UID.
func (h header) check(path string, ref capture.PipelineRef) error {
	if h.ref.Namespace != ref.Namespace || h.ref.Name != ref.Name {
		return fmt.Errorf("journal file %s holds the positions of %s/%s, not of %s/%s: %w", path,
			h.ref.Namespace, h.ref.Name, ref.Namespace, ref.Name, capture.ErrForeignPositions)
	}
	return nil
}

// encodeHeader returns the header of a file holding data for ref, which
// fileName has validated.
func encodeHeader(ref capture.PipelineRef, data []byte, containers int) []byte {
	b := make([]byte, fixedHeader, fixedHeader+len(ref.Namespace)+len(ref.Name)+len(ref.UID)+4)
	copy(b, journalMagic)
	binary.BigEndian.PutUint16(b[4:], JournalVersion)
	binary.BigEndian.PutUint16(b[6:], uint16(len(ref.Namespace)))
	binary.BigEndian.PutUint16(b[8:], uint16(len(ref.Name)))
	binary.BigEndian.PutUint16(b[10:], uint16(len(ref.UID)))
	binary.BigEndian.PutUint32(b[12:], uint32(min(max(int64(containers), 0), math.MaxUint32)))
	binary.BigEndian.PutUint32(b[16:], uint32(min(int64(len(data)), math.MaxUint32))) // Save refuses more
	binary.BigEndian.PutUint32(b[20:], crc32.Checksum(data, castagnoli))
	b = append(b, ref.Namespace...)
	b = append(b, ref.Name...)
	b = append(b, ref.UID...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// decodeHeader reads and checks the header of a file of size bytes; the
// error says what is wrong.
func decodeHeader(r io.Reader, size int64) (header, error) {
	var fixed [fixedHeader]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return header{}, fmt.Errorf("the header is truncated (%d bytes in the file)", size)
	}
	if !bytes.Equal(fixed[:4], []byte(journalMagic)) {
		return header{}, fmt.Errorf("no journal magic (%q)", fixed[:4])
	}
	if v := binary.BigEndian.Uint16(fixed[4:]); v != JournalVersion {
		return header{}, fmt.Errorf("format version %d, this build reads %d", v, JournalVersion)
	}
	n, m, u := int(binary.BigEndian.Uint16(fixed[6:])), int(binary.BigEndian.Uint16(fixed[8:])), int(binary.BigEndian.Uint16(fixed[10:]))
	if n < 1 || n > maxNamespace || m < 1 || m > maxPipeline || u > maxUID {
		return header{}, fmt.Errorf("impossible lengths of namespace (%d), name (%d) or UID (%d)", n, m, u)
	}
	h := header{
		containers: binary.BigEndian.Uint32(fixed[12:]),
		payloadLen: binary.BigEndian.Uint32(fixed[16:]),
		payloadCRC: binary.BigEndian.Uint32(fixed[20:]),
	}
	rest := make([]byte, n+m+u+4)
	if _, err := io.ReadFull(r, rest); err != nil {
		return header{}, fmt.Errorf("the header is truncated (%d bytes in the file)", size)
	}
	sum := crc32.Update(crc32.Checksum(fixed[:], castagnoli), castagnoli, rest[:n+m+u])
	if sum != binary.BigEndian.Uint32(rest[n+m+u:]) {
		return header{}, errors.New("the header's CRC-32C does not match")
	}
	h.ref = capture.PipelineRef{Namespace: string(rest[:n]), Name: string(rest[n : n+m]), UID: string(rest[n+m : n+m+u])}
	if err := validateRef(h.ref); err != nil {
		return header{}, fmt.Errorf("the header names no valid pipeline: %w", err)
	}
	if want := int64(fixedHeader+len(rest)) + int64(h.payloadLen); want != size {
		return header{}, fmt.Errorf("%d bytes, the header says %d (payload of %d)", size, want, h.payloadLen)
	}
	return h, nil
}

// fileName validates ref and returns the name of its file:
// "<namespace>.<name>.pos", or when that would be longer than 254 bytes, a
// prefix of the name, "-" and a hash of namespace and name, 255 bytes in
// all. Namespaces have no dots, so the first one separates; the two forms
// differ in length, so they never meet.
func fileName(ref capture.PipelineRef) (string, error) {
	if err := validateRef(ref); err != nil {
		return "", err
	}
	name := ref.Namespace + "." + ref.Name + journalSuffix
	if len(name) < maxFileName {
		return name, nil
	}
	sum := sha256.Sum256([]byte(ref.Namespace + "/" + ref.Name))
	hash := "-" + hex.EncodeToString(sum[:8])
	keep := maxFileName - len(ref.Namespace) - 1 - len(hash) - len(journalSuffix)
	return ref.Namespace + "." + ref.Name[:keep] + hash + journalSuffix, nil
}

// validateRef refuses a ref that is no Kubernetes object's: the namespace
// must be a DNS label, the name a DNS subdomain, the UID short and without
// NUL.
func validateRef(ref capture.PipelineRef) error {
	if why := invalidName(ref.Namespace, maxNamespace, false); why != "" {
		return fmt.Errorf("%w: namespace %q %s", ErrInvalidRef, ref.Namespace, why)
	}
	if why := invalidName(ref.Name, maxPipeline, true); why != "" {
		return fmt.Errorf("%w: name %q %s", ErrInvalidRef, ref.Name, why)
	}
	if len(ref.UID) > maxUID {
		return fmt.Errorf("%w: the UID is %d bytes, more than %d", ErrInvalidRef, len(ref.UID), maxUID)
	}
	if strings.IndexByte(ref.UID, 0) >= 0 {
		return fmt.Errorf("%w: the UID %q has NUL", ErrInvalidRef, ref.UID)
	}
	return nil
}

// invalidName says why s is not a Kubernetes name of at most limit bytes
// (with dots when dots), or returns "".
func invalidName(s string, limit int, dots bool) string {
	switch {
	case s == "":
		return "is empty"
	case len(s) > limit:
		return fmt.Sprintf("is %d bytes, more than %d", len(s), limit)
	case strings.IndexByte(s, '/') >= 0:
		return "has '/'"
	case strings.IndexByte(s, 0) >= 0:
		return "has NUL"
	case strings.Contains(s, ".."):
		return `has ".."`
	}
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
	for i := range len(s) {
		if c := s[i]; !alnum(c) && c != '-' && (c != '.' || !dots) {
			return fmt.Sprintf("has %q, which a Kubernetes name may not", c)
		}
	}
	if !alnum(s[0]) || !alnum(s[len(s)-1]) {
		return "does not begin and end with a lower-case letter or digit"
	}
	return ""
}

// damaged returns an error wrapping ErrDamagedJournal about path.
func damaged(path, why string) error {
	return fmt.Errorf("journal file %s: %s: %w", path, why, ErrDamagedJournal)
}
