// Package crifile reads the kubelet's CRI container log files on a node:
// it parses their lines, merges partial lines byte-exactly, and follows a
// container's log across the kubelet's rotation (rename, gzip, deletion) by
// file identity, so that every byte is read once or counted as lost.
//
// The format is one line per chunk the runtime wrote:
//
//	<RFC3339Nano time> <stdout|stderr> <P|F>[:tags] <message>
//
// A message longer than the runtime's buffer (16 KiB in containerd) comes
// as P (partial) chunks and a closing F chunk of the same stream; the
// record is their concatenation, byte for byte.
package crifile

import (
	"bytes"
	"errors"
	"time"
	"unicode/utf8"

	"github.com/log-capturer/log-capturer/capture"
)

// Stream is the output a record was written to.
type Stream uint8

// The two streams of a container.
const (
	Stdout Stream = iota
	Stderr
)

func (s Stream) String() string {
	if s == Stderr {
		return "stderr"
	}
	return "stdout"
}

// Entry is one whole record. Line is valid until the next call of the
// Merger that returned it, and, for a record in one line, until the line's
// bytes change (the Follower's next read).
type Entry struct {
	// Time is the time of the record's first chunk.
	Time   time.Time
	Stream Stream
	// Line is the merged message, without the trailing newline, cut to the
	// maximum size and marked when longer.
	Line []byte
	// Truncated is the number of message bytes cut away.
	Truncated int
}

// ErrMalformed is returned for a line that is not in the CRI format.
var ErrMalformed = errors.New("not a CRI log line")

// partial is the state of one stream's record being merged.
type partial struct {
	open bool
	time time.Time
	buf  []byte
	over int
}

// Merger turns CRI lines into records, merging each stream's P chunks with
// its F chunk (the runtime may interleave the two streams' chunks). It keeps
// at most max bytes of a record, however long the record is.
type Merger struct {
	max     int
	streams [2]partial
	out     []byte
}

// NewMerger returns a Merger keeping at most maxBytes of each record
// (1 MiB when not positive).
func NewMerger(maxBytes int) *Merger {
	if maxBytes <= 0 {
		maxBytes = 1 << 20
	}
	return &Merger{max: maxBytes}
}

// Open reports whether a partial record is being merged, so that a
// position taken now would fall inside it.
func (m *Merger) Open() bool { return m.streams[0].open || m.streams[1].open }

// Reset forgets partial records (after a position was restored at a record
// boundary).
func (m *Merger) Reset() {
	for i := range m.streams {
		m.streams[i] = partial{buf: m.streams[i].buf[:0]}
	}
}

// Add takes one line without its trailing newline. It returns the record
// an F chunk completes, with ok true; a P chunk returns ok false and only
// e.Stream set. A line not in the format is an error and changes nothing.
func (m *Merger) Add(line []byte) (e Entry, ok bool, err error) {
	ts, stream, full, msg, err := parseLine(line)
	if err != nil {
		return Entry{}, false, err
	}
	p := &m.streams[stream]
	if !p.open && full && len(msg) <= m.max {
		// A record in one line, the most common case: its message as it
		// is in the line, not copied.
		return Entry{Time: ts, Stream: stream, Line: msg}, true, nil
	}
	if !p.open {
		p.open, p.time, p.buf, p.over = true, ts, p.buf[:0], 0
	}
	room := max(0, m.max-len(p.buf))
	if len(msg) <= room {
		p.buf = append(p.buf, msg...)
	} else {
		p.buf = append(p.buf, msg[:room]...)
		p.over += len(msg) - room
	}
	if !full {
		return Entry{Stream: stream}, false, nil
	}
	e = Entry{Time: p.time, Stream: stream, Truncated: p.over}
	if p.over > 0 {
		m.out = append(cutAtRune(m.out[:0], p.buf), capture.TruncatedMarker...)
		e.Line = m.out
	} else {
		e.Line = p.buf
	}
	p.open = false
	return e, true, nil
}

// cutAtRune appends b to dst, less an incomplete UTF-8 character at its
// end (b was cut in the middle of one); invalid bytes stay as they are.
func cutAtRune(dst, b []byte) []byte {
	end := len(b)
	for i := 1; i < utf8.UTFMax && i <= len(b); i++ {
		if utf8.RuneStart(b[len(b)-i]) {
			if !utf8.FullRune(b[len(b)-i:]) {
				end = len(b) - i
			}
			break
		}
	}
	return append(dst, b[:end]...)
}

var (
	stdoutWord = []byte("stdout")
	stderrWord = []byte("stderr")
)

// parseLine splits a CRI line without a regular expression or an
// allocation. full is true for an F chunk.
func parseLine(line []byte) (ts time.Time, s Stream, full bool, msg []byte, err error) {
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return ts, 0, false, nil, ErrMalformed
	}
	ts, ok := parseTime(line[:sp])
	if !ok {
		return ts, 0, false, nil, ErrMalformed
	}
	rest := line[sp+1:]
	switch {
	case len(rest) > 6 && bytes.Equal(rest[:6], stdoutWord) && rest[6] == ' ':
		s = Stdout
	case len(rest) > 6 && bytes.Equal(rest[:6], stderrWord) && rest[6] == ' ':
		s = Stderr
	default:
		return ts, 0, false, nil, ErrMalformed
	}
	rest = rest[7:]
	// The tag: P or F, maybe followed by ":other-tags".
	end := bytes.IndexByte(rest, ' ')
	tag := rest
	if end >= 0 {
		tag, msg = rest[:end], rest[end+1:]
	}
	if i := bytes.IndexByte(tag, ':'); i >= 0 {
		tag = tag[:i]
	}
	switch {
	case len(tag) == 1 && tag[0] == 'F':
		full = true
	case len(tag) == 1 && tag[0] == 'P':
	default:
		return ts, 0, false, nil, ErrMalformed
	}
	return ts, s, full, msg, nil
}

// parseTime parses an RFC 3339 time with up to nine fractional digits and
// a Z or ±hh:mm offset, as the runtime writes it, without allocating; the
// result is in UTC.
func parseTime(b []byte) (time.Time, bool) {
	// 2006-01-02T15:04:05 is 19 bytes; then .fraction, then Z or ±hh:mm.
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || (b[10] != 'T' && b[10] != 't') || b[13] != ':' || b[16] != ':' {
		return time.Time{}, false
	}
	num := func(s []byte) (int, bool) {
		n := 0
		for _, c := range s {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	year, ok1 := num(b[0:4])
	month, ok2 := num(b[5:7])
	day, ok3 := num(b[8:10])
	hour, ok4 := num(b[11:13])
	minute, ok5 := num(b[14:16])
	sec, ok6 := num(b[17:19])
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 || month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || sec > 60 {
		return time.Time{}, false
	}
	rest := b[19:]
	nsec := 0
	if len(rest) > 0 && rest[0] == '.' {
		i := 1
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		digits := rest[1:i]
		if len(digits) == 0 || len(digits) > 9 {
			return time.Time{}, false
		}
		n, _ := num(digits)
		for range 9 - len(digits) {
			n *= 10
		}
		nsec, rest = n, rest[i:]
	}
	off := 0
	switch {
	case len(rest) == 1 && (rest[0] == 'Z' || rest[0] == 'z'):
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		oh, okh := num(rest[1:3])
		om, okm := num(rest[4:6])
		if !okh || !okm || oh > 23 || om > 59 {
			return time.Time{}, false
		}
		off = oh*3600 + om*60
		if rest[0] == '-' {
			off = -off
		}
	default:
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	if t.Day() != day {
		return time.Time{}, false // February 30th and the like
	}
	// The same instant, in UTC (a zone per offset would allocate).
	t = t.Add(-time.Duration(off) * time.Second)
	return t, true
}
