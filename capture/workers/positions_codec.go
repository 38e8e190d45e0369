package workers

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/log-capturer/log-capturer/capture/crifile"
)

// positionsHeader is the first line of the stored positions, format v1. A
// new format gets a new header; readers keep decoding the old ones, so an
// upgraded operator resumes from what the previous version stored.
const positionsHeader = "log-capturer positions v1"

// positionsHeaderV2 starts positions that hold file positions (v1's fields
// and six more); positions without any are still written as v1, so that an
// operator reading through the API writes what earlier versions read.
const positionsHeaderV2 = "log-capturer positions v2"

// Fields of one stored position in each format.
const (
	fieldsV1 = 11
	fieldsV2 = fieldsV1 + 6
)

// Bounds of what decodePositions accepts, so that a positions object a
// tenant rewrote (it lives in the tenant's namespace) cannot be a
// decompression bomb: 10,000 containers take about 1 MiB of text.
const (
	maxPositionsBytes   = 8 << 20
	maxPositionsEntries = 50000
	maxPositionsField   = 253 // a pod name; UIDs and container names are shorter
)

// storedPosition is one container's entry in the stored positions.
type storedPosition struct {
	Key       containerKey
	Pod       string
	Committed Position
	Sent      Position
	GoneSince time.Time
}

// encodePositions writes the positions as gzip-compressed text, one
// container per line:
//
//	<pod uid> <container> <pod> <since> <count> <first-ns> <last-ns> <last-run> <sent-since> <sent-count> <gone-since>
//
// Times are Unix seconds (0 for none); first-ns and last-ns are the first
// counted and the last delivered line's offsets from since in nanoseconds
// (last-ns may be negative), last-run how many lines up to the last one
// share its timestamp; "=" for the sent pair means "as committed".
func encodePositions(entries []storedPosition) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, fmt.Errorf("compressing positions: %w", err)
	}
	return encodePositionsTo(&buf, zw, entries)
}

// fastWriters are the gzip writers of staged positions, written before
// batches are sent: the fastest level, reused.
var fastWriters = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	return zw
}}

// encodePositionsFast encodes like encodePositions at gzip's fastest level.
func encodePositionsFast(entries []storedPosition) ([]byte, error) {
	var buf bytes.Buffer
	zw, _ := fastWriters.Get().(*gzip.Writer)
	defer fastWriters.Put(zw)
	zw.Reset(&buf)
	return encodePositionsTo(&buf, zw, entries)
}

func encodePositionsTo(buf *bytes.Buffer, zw *gzip.Writer, entries []storedPosition) ([]byte, error) {
	w := bufio.NewWriter(zw)
	v2 := slices.ContainsFunc(entries, func(e storedPosition) bool { return e.Committed.Log != "" })
	if v2 {
		_, _ = w.WriteString(positionsHeaderV2 + "\n")
	} else {
		_, _ = w.WriteString(positionsHeader + "\n")
	}
	var line []byte
	for _, e := range entries {
		line = line[:0]
		line = append(line, e.Key.uid...)
		line = append(line, ' ')
		line = append(line, e.Key.name...)
		line = append(line, ' ')
		line = append(line, e.Pod...)
		line = append(line, ' ')
		line = appendUnix(line, e.Committed.Since)
		line = append(line, ' ')
		line = strconv.AppendInt(line, e.Committed.Count, 10)
		line = append(line, ' ')
		line = strconv.AppendInt(line, firstOffset(e.Committed), 10)
		line = append(line, ' ')
		line = strconv.AppendInt(line, lastOffset(e.Committed), 10)
		line = append(line, ' ')
		line = strconv.AppendInt(line, e.Committed.LastRun, 10)
		if e.Sent.Since.Equal(e.Committed.Since) && e.Sent.Count == e.Committed.Count {
			line = append(line, " = ="...)
		} else {
			line = append(line, ' ')
			line = appendUnix(line, e.Sent.Since)
			line = append(line, ' ')
			line = strconv.AppendInt(line, e.Sent.Count, 10)
		}
		line = append(line, ' ')
		line = appendUnix(line, e.GoneSince)
		if v2 {
			line = appendFilePosition(line, e.Committed)
		}
		line = append(line, '\n')
		_, _ = w.Write(line)
	}
	if err := w.Flush(); err != nil {
		return nil, fmt.Errorf("compressing positions: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compressing positions: %w", err)
	}
	return buf.Bytes(), nil
}

// appendFilePosition appends v2's fields: " <log> <dev> <ino> <head> <offset> <size>",
// the head in unpadded base64, "-" for an empty log or head.
func appendFilePosition(line []byte, p Position) []byte {
	line = append(line, ' ')
	line = appendDash(line, p.Log)
	line = append(line, ' ')
	line = strconv.AppendUint(line, p.File.File.Dev, 10)
	line = append(line, ' ')
	line = strconv.AppendUint(line, p.File.File.Ino, 10)
	line = append(line, ' ')
	if p.File.File.Head == "" {
		line = append(line, '-')
	} else {
		line = base64.RawStdEncoding.AppendEncode(line, []byte(p.File.File.Head))
	}
	line = append(line, ' ')
	line = strconv.AppendInt(line, p.File.Offset, 10)
	line = append(line, ' ')
	return strconv.AppendInt(line, p.File.Size, 10)
}

func appendDash(b []byte, s string) []byte {
	if s == "" {
		return append(b, '-')
	}
	return append(b, s...)
}

// decodeFilePosition reads v2's six fields into p.
func decodeFilePosition(f []string, p *Position) error {
	if f[0] != "-" {
		if _, ok := crifile.ParseLogBase(f[0]); !ok {
			return fmt.Errorf("bad log %.20q", f[0])
		}
		p.Log = f[0]
	}
	var err, e2, e3, e4 error
	p.File.File.Dev, err = strconv.ParseUint(f[1], 10, 64)
	p.File.File.Ino, e2 = strconv.ParseUint(f[2], 10, 64)
	p.File.Offset, e3 = strconv.ParseInt(f[4], 10, 64)
	p.File.Size, e4 = strconv.ParseInt(f[5], 10, 64)
	if err = errors.Join(err, e2, e3, e4); err != nil {
		return fmt.Errorf("bad file position: %w", err)
	}
	if p.File.Offset < 0 || p.File.Size < 0 {
		return errors.New("negative file offset or size")
	}
	if f[3] != "-" {
		if base64.RawStdEncoding.DecodedLen(len(f[3])) > crifile.HeadSize {
			return fmt.Errorf("a file head longer than %d bytes", crifile.HeadSize)
		}
		head, err := base64.RawStdEncoding.DecodeString(f[3])
		if err != nil {
			return fmt.Errorf("bad file head: %w", err)
		}
		p.File.File.Head = string(head)
	}
	if p.Log == "" && !p.File.IsZero() {
		return errors.New("a file position without its log")
	}
	return nil
}

func lastOffset(p Position) int64 {
	if p.LastRun == 0 || p.Last.IsZero() || p.Since.IsZero() {
		return 0
	}
	return int64(p.Last.Sub(p.Since))
}

func appendUnix(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, '0')
	}
	return strconv.AppendInt(b, t.Unix(), 10)
}

func parseUnix(s string) (time.Time, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, fmt.Errorf("bad time %q", s)
	}
	if n == 0 {
		return time.Time{}, nil
	}
	return time.Unix(n, 0).UTC(), nil
}

func firstOffset(p Position) int64 {
	if p.Count == 0 || p.First.IsZero() {
		return 0
	}
	return int64(p.First.Sub(p.Since))
}

// decodePositions reads what encodePositions wrote. Any damage is an error:
// a half-read position could skip lines.
func decodePositions(data []byte) ([]storedPosition, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("not gzip-compressed positions: %w", err)
	}
	defer zr.Close()
	text, err := io.ReadAll(io.LimitReader(zr, maxPositionsBytes+1))
	if err != nil {
		return nil, fmt.Errorf("decompressing positions: %w", err)
	}
	if len(text) > maxPositionsBytes {
		return nil, fmt.Errorf("positions larger than %d bytes", maxPositionsBytes)
	}
	if len(text) == 0 {
		return nil, errors.New("empty positions")
	}
	if text[len(text)-1] != '\n' {
		return nil, errors.New("positions end in the middle of a line")
	}
	lines := bytes.Count(text, []byte{'\n'})
	if lines-1 > maxPositionsEntries {
		return nil, fmt.Errorf("more than %d positions (%d)", maxPositionsEntries, lines-1)
	}
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	sc.Scan()
	fields := 0
	switch h := sc.Text(); h {
	case positionsHeader:
		fields = fieldsV1
	case positionsHeaderV2:
		fields = fieldsV2
	default:
		return nil, fmt.Errorf("unknown positions format %.60q (this version reads %q and %q)", h, positionsHeader, positionsHeaderV2)
	}
	out := make([]storedPosition, 0, lines-1)
	for n := 2; sc.Scan(); n++ {
		e, err := decodePosition(sc.Text(), fields)
		if err != nil {
			return nil, fmt.Errorf("positions line %d: %w", n, err)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading positions: %w", err)
	}
	return out, nil
}

func decodePosition(line string, fields int) (storedPosition, error) {
	if n := strings.Count(line, " ") + 1; n != fields {
		return storedPosition{}, fmt.Errorf("%d fields, want %d", n, fields)
	}
	var f [fieldsV2]string // split without allocating: a bomb has millions of lines
	for i := range fields - 1 {
		f[i], line, _ = strings.Cut(line, " ")
	}
	f[fields-1] = line
	var (
		e        storedPosition
		err      error
		firstErr error // the first failure; no allocation per field
	)
	keep := func(err error) {
		if firstErr == nil {
			firstErr = err
		}
	}
	if f[0] == "" || f[1] == "" || f[2] == "" {
		return e, errors.New("empty pod uid, container or pod")
	}
	if len(f[0]) > maxPositionsField || len(f[1]) > maxPositionsField || len(f[2]) > maxPositionsField {
		return e, fmt.Errorf("a pod uid, container or pod name longer than %d bytes", maxPositionsField)
	}
	e.Key = containerKey{uid: types.UID(f[0]), name: f[1]}
	e.Pod = f[2]
	e.Committed.Since, err = parseUnix(f[3])
	keep(err)
	e.Committed.Count, err = strconv.ParseInt(f[4], 10, 64)
	keep(err)
	first, err := strconv.ParseInt(f[5], 10, 64)
	keep(err)
	if first < 0 || first >= int64(time.Second) || e.Committed.Count < 0 {
		keep(fmt.Errorf("bad count %q or first offset %q", f[4], f[5]))
	}
	last, err := strconv.ParseInt(f[6], 10, 64)
	keep(err)
	e.Committed.LastRun, err = strconv.ParseInt(f[7], 10, 64)
	keep(err)
	if e.Committed.LastRun < 0 {
		keep(fmt.Errorf("bad last run %q", f[7]))
	}
	if e.Committed.Count > 0 {
		e.Committed.First = e.Committed.Since.Add(time.Duration(first))
	}
	e.Committed.Last = e.Committed.Since
	if e.Committed.LastRun > 0 {
		e.Committed.Last = e.Committed.Since.Add(time.Duration(last))
	}
	if f[8] == "=" && f[9] == "=" {
		e.Sent = e.Committed
	} else {
		e.Sent.Since, err = parseUnix(f[8])
		keep(err)
		e.Sent.Count, err = strconv.ParseInt(f[9], 10, 64)
		keep(err)
	}
	e.GoneSince, err = parseUnix(f[10])
	keep(err)
	if fields == fieldsV2 {
		keep(decodeFilePosition(f[fieldsV1:], &e.Committed))
		e.Sent.Log, e.Sent.File = e.Committed.Log, e.Committed.File
	}
	if firstErr != nil {
		return storedPosition{}, firstErr
	}
	return e, nil
}
