package smarthost

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

const (
	tmpDirName = "tmp"
	msgDirName = "msg"
	envDirName = "env"

	// envSuffix marks envelope temp files in tmp.
	envSuffix = ".env"

	bodyBufferSize = 64 << 10
)

// bodyWriters recycles the 64 KiB buffers of drafts: at over a thousand
// messages a second, allocating one per message would dominate the garbage.
var bodyWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, bodyBufferSize) }}

// errSpoolClosed is returned once Close has been called.
var errSpoolClosed = errors.New("spool closed")

// dirSyncer group-commits fsyncs of one directory: callers that need their
// renames durable call Sync; while one fsync runs, later callers queue up and
// the next fsync covers all of them. No goroutine is needed: the first caller
// that finds no fsync running becomes the leader for everybody waiting.
type dirSyncer struct {
	f *os.File

	mu        sync.Mutex
	cond      sync.Cond
	requested uint64 // number of Sync calls so far
	synced    uint64 // every request numbered <= synced is durable
	running   bool
	err       error // sticky: see the package documentation
}

func openDirSyncer(path string) (*dirSyncer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open spool directory: %w", err)
	}
	s := &dirSyncer{f: f}
	s.cond.L = &s.mu
	return s, nil
}

// Sync returns once every directory change made before the call is durable.
func (s *dirSyncer) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requested++
	me := s.requested
	for {
		if s.err != nil {
			return s.err
		}
		if s.synced >= me {
			return nil
		}
		if s.running {
			s.cond.Wait()
			continue
		}
		s.running = true
		target := s.requested
		s.mu.Unlock()
		err := s.f.Sync()
		s.mu.Lock()
		s.running = false
		if err != nil {
			// An fsync error may mean the kernel dropped the dirty
			// metadata: never report this directory durable again.
			s.err = fmt.Errorf("fsync directory %s: %w", s.f.Name(), err)
		} else {
			s.synced = target
		}
		s.cond.Broadcast()
	}
}

// close releases the directory handle; later Syncs fail.
func (s *dirSyncer) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = errSpoolClosed
	}
	return s.f.Close()
}

// Draft is a message being received into the spool. A Draft is used by one
// goroutine (the SMTP session) and is not safe for concurrent use.
type Draft struct {
	q     *Queue
	id    string
	path  string
	f     *os.File
	w     *bufio.Writer
	size  int64
	err   error // sticky write error
	state draftState
}

type draftState int

const (
	draftOpen draftState = iota
	draftCommitted
	draftAborted
)

// NewDraft creates a new queue id and an empty body file in the spool's tmp
// area.
func (q *Queue) NewDraft() (*Draft, error) {
	for try := 0; ; try++ {
		id := newID(q.now())
		path := filepath.Join(q.tmpDir, id)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) && try < 3 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("create spool draft: %w", err)
		}
		w := bodyWriters.Get().(*bufio.Writer)
		w.Reset(f)
		return &Draft{q: q, id: id, path: path, f: f, w: w}, nil
	}
}

// ID returns the queue id, known before the body is written so that it can
// go into the Received header.
func (d *Draft) ID() string { return d.id }

// Write appends body bytes, which the caller has already normalised to CRLF
// line endings. Writes are buffered; Commit makes them durable.
func (d *Draft) Write(p []byte) (int, error) {
	if d.state != draftOpen {
		return 0, fmt.Errorf("write draft %s: draft is no longer open", d.id)
	}
	if d.err != nil {
		return 0, d.err
	}
	n, err := d.w.Write(p)
	d.size += int64(n)
	if err != nil {
		d.err = fmt.Errorf("write draft %s: %w", d.id, err)
		return n, d.err
	}
	return n, nil
}

// Flush writes buffered bytes to the body file so that another reader of
// Path sees the whole body.
func (d *Draft) Flush() error {
	if d.state != draftOpen {
		return nil
	}
	if d.err != nil {
		return d.err
	}
	if err := d.w.Flush(); err != nil {
		d.err = fmt.Errorf("flush draft %s: %w", d.id, err)
		return d.err
	}
	return nil
}

// Path returns the body file path, so that content filters can re-read the
// spooled body. Buffered bytes are flushed first; a flush error is reported
// by the next Write, Flush or Commit.
func (d *Draft) Path() string {
	_ = d.Flush()
	return d.path
}

// Size returns the number of body bytes written.
func (d *Draft) Size() int64 { return d.size }

// Abort removes the draft. It is a no-op after Commit and when repeated.
func (d *Draft) Abort() {
	if d.state != draftOpen {
		return
	}
	d.state = draftAborted
	d.release()
	if err := os.Remove(d.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		d.q.log.Error("remove aborted draft", "queue_id", d.id, "error", err)
	}
}

// release closes the file and returns the buffer to the pool.
func (d *Draft) release() {
	if d.w != nil {
		d.w.Reset(nil)
		bodyWriters.Put(d.w)
		d.w = nil
	}
	if d.f != nil {
		_ = d.f.Close()
		d.f = nil
	}
}

// Commit makes the draft a queued message: it flushes and fsyncs the body,
// writes and fsyncs the envelope, renames both into place, fsyncs both
// directories, and hands the message to the runner. It returns nil only when
// the message is durable (RFC 5321 §6.1); on error nothing was committed and
// the draft is gone, so the caller answers 451 4.3.0.
func (q *Queue) Commit(d *Draft, env Envelope) error {
	if d.state != draftOpen {
		return fmt.Errorf("commit %s: draft is no longer open", d.id)
	}
	start := time.Now()
	env = env.clone() // normalize must not write into the caller's slices
	err := q.commit(d, &env)
	if err != nil {
		d.Abort()
		return fmt.Errorf("commit %s: %w", d.id, err)
	}
	metricSpoolFsync.Observe(time.Since(start).Seconds())
	q.add(&message{id: d.id, env: env, size: d.size})
	return nil
}

func (q *Queue) commit(d *Draft, env *Envelope) error {
	if err := env.normalize(q.now()); err != nil {
		return err
	}
	if d.err != nil {
		return d.err
	}
	// The envelope travels in the same file as the body, as a trailer:
	// one file created, written, fsynced and renamed per message. Creating
	// and renaming files is what costs most under a constant fsync load.
	trailer, err := encodeTrailer(env)
	if err != nil {
		return err
	}
	if _, err := d.w.Write(trailer); err != nil {
		return fmt.Errorf("write envelope: %w", err)
	}
	if err := d.w.Flush(); err != nil {
		return fmt.Errorf("flush message: %w", err)
	}
	if err := fdatasync(d.f); err != nil {
		return fmt.Errorf("fsync message: %w", err)
	}
	msgPath := filepath.Join(q.msgDir, d.id)
	if err := os.Rename(d.path, msgPath); err != nil {
		return fmt.Errorf("move message into spool: %w", err)
	}
	// The rename is the commit; the directory fsync makes it durable.
	if err := q.msgSync.Sync(); err != nil {
		_ = os.Remove(msgPath)
		return err
	}
	d.state = draftCommitted
	d.path = msgPath
	d.release()
	return nil
}

// Trailer layout, after the body bytes:
//
//	envelope JSON | magic "MXGENV01" | uint32 BE JSON length | uint32 BE CRC-32C of the JSON
const (
	trailerMagic  = "MXGENV01"
	footerSize    = len(trailerMagic) + 8
	maxTrailerLen = 64 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func encodeTrailer(env *Envelope) ([]byte, error) {
	data, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("encode envelope: %w", err)
	}
	out := make([]byte, 0, len(data)+footerSize)
	out = append(out, data...)
	out = append(out, trailerMagic...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(data)))
	out = binary.BigEndian.AppendUint32(out, crc32.Checksum(data, crcTable))
	return out, nil
}

// readTrailer returns the envelope stored in a committed message file and
// the length of the body before it.
func readTrailer(f *os.File) (Envelope, int64, error) {
	var env Envelope
	st, err := f.Stat()
	if err != nil {
		return env, 0, err
	}
	size := st.Size()
	if size < int64(footerSize) {
		return env, 0, errors.New("message file too short for its envelope")
	}
	var footer [footerSize]byte
	if _, err := f.ReadAt(footer[:], size-int64(footerSize)); err != nil {
		return env, 0, fmt.Errorf("read envelope footer: %w", err)
	}
	if string(footer[:len(trailerMagic)]) != trailerMagic {
		return env, 0, errors.New("no envelope trailer")
	}
	n := int64(binary.BigEndian.Uint32(footer[len(trailerMagic):]))
	sum := binary.BigEndian.Uint32(footer[len(trailerMagic)+4:])
	if n > maxTrailerLen || n > size-int64(footerSize) {
		return env, 0, errors.New("envelope length out of range")
	}
	data := make([]byte, n)
	bodyLen := size - int64(footerSize) - n
	if _, err := f.ReadAt(data, bodyLen); err != nil {
		return env, 0, fmt.Errorf("read envelope: %w", err)
	}
	if crc32.Checksum(data, crcTable) != sum {
		return env, 0, errors.New("envelope checksum mismatch")
	}
	if err := json.Unmarshal(data, &env); err != nil {
		return env, 0, fmt.Errorf("decode envelope: %w", err)
	}
	return env, bodyLen, nil
}

// spooledBody is the body part of a committed message file.
type spooledBody struct {
	f *os.File
	r *io.SectionReader
}

func (b *spooledBody) Close() error { return b.f.Close() }

// openBody opens the body of a committed message, without its trailer.
func (q *Queue) openBody(id string) (*spooledBody, error) {
	f, err := os.Open(filepath.Join(q.msgDir, id))
	if err != nil {
		return nil, err
	}
	_, bodyLen, err := readTrailer(f)
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("message %s: %w", id, err)
	}
	return &spooledBody{f: f, r: io.NewSectionReader(f, 0, bodyLen)}, nil
}

// writeFileSync writes env as JSON to path (a new file) and fsyncs it.
func writeFileSync(path string, env *Envelope) error {
	data, err := json.Marshal(env)
	if err != nil {
		return fmt.Errorf("encode envelope: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("create envelope: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return fmt.Errorf("write envelope: %w", err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("fsync envelope: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close envelope: %w", err)
	}
	return nil
}

// saveEnvelope atomically replaces the stored envelope of id with env.
func (q *Queue) saveEnvelope(id string, env *Envelope) error {
	tmp := filepath.Join(q.tmpDir, id+envSuffix)
	if err := writeFileSync(tmp, env); err != nil {
		return fmt.Errorf("save envelope %s: %w", id, err)
	}
	if err := os.Rename(tmp, filepath.Join(q.envDir, id)); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("save envelope %s: %w", id, err)
	}
	if err := q.envSync.Sync(); err != nil {
		return fmt.Errorf("save envelope %s: %w", id, err)
	}
	return nil
}

// removeMessage deletes a message whose recipients are all final: the
// message file first (it is what recovery loads), made durable so that a
// power loss cannot bring it back and deliver it twice, then the delivery
// state file if there is one (a state file without its message is removed
// by recovery).
func (q *Queue) removeMessage(id string) error {
	if err := os.Remove(filepath.Join(q.msgDir, id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove message %s: %w", id, err)
	}
	if err := q.msgSync.Sync(); err != nil {
		return fmt.Errorf("remove message %s: %w", id, err)
	}
	if err := os.Remove(filepath.Join(q.envDir, id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove delivery state %s: %w", id, err)
	}
	return nil
}

// recover loads the committed messages and removes what was never
// acknowledged. See the package documentation for the rules.
func (q *Queue) recover() ([]*message, error) {
	tmp, err := os.ReadDir(q.tmpDir)
	if err != nil {
		return nil, fmt.Errorf("read spool tmp: %w", err)
	}
	for _, e := range tmp {
		if err := os.RemoveAll(filepath.Join(q.tmpDir, e.Name())); err != nil {
			return nil, fmt.Errorf("remove stale draft: %w", err)
		}
	}

	bodies, err := os.ReadDir(q.msgDir)
	if err != nil {
		return nil, fmt.Errorf("read spool messages: %w", err)
	}
	loaded := make(map[string]bool, len(bodies))
	var msgs []*message
	for _, e := range bodies {
		id := e.Name()
		path := filepath.Join(q.msgDir, id)
		if !validID(id) || !e.Type().IsRegular() {
			q.log.Warn("spool: removing unexpected file", "path", path)
			if err := os.RemoveAll(path); err != nil {
				return nil, fmt.Errorf("remove unexpected spool file: %w", err)
			}
			continue
		}
		env, bodyLen, err := q.loadMessage(id)
		if err != nil {
			// Message files are fsynced before the rename into msg/:
			// a bad one was never acknowledged (or the disk is
			// corrupt, which the log says).
			q.log.Error("spool: unreadable message, removing", "queue_id", id, "error", err)
			if err := os.Remove(path); err != nil {
				return nil, fmt.Errorf("remove unreadable message: %w", err)
			}
			continue
		}
		loaded[id] = true
		msgs = append(msgs, &message{id: id, env: env, size: bodyLen})
	}

	states, err := os.ReadDir(q.envDir)
	if err != nil {
		return nil, fmt.Errorf("read spool delivery state: %w", err)
	}
	for _, e := range states {
		if loaded[e.Name()] {
			continue
		}
		if err := os.RemoveAll(filepath.Join(q.envDir, e.Name())); err != nil {
			return nil, fmt.Errorf("remove delivery state without message: %w", err)
		}
	}
	return msgs, nil
}

// loadMessage reads a committed message's envelope: the delivery state in
// env/<id> when there is one (it is newer), else the trailer written at
// commit.
func (q *Queue) loadMessage(id string) (Envelope, int64, error) {
	f, err := os.Open(filepath.Join(q.msgDir, id))
	if err != nil {
		return Envelope{}, 0, err
	}
	defer f.Close()
	env, bodyLen, err := readTrailer(f)
	if err != nil {
		return env, 0, err
	}
	if data, err := os.ReadFile(filepath.Join(q.envDir, id)); err == nil {
		var state Envelope
		if jerr := json.Unmarshal(data, &state); jerr == nil {
			env = state
		} else {
			// State files are fsynced before rename; a bad one means
			// a corrupt disk. The trailer is an older but valid
			// state: recipients may be delivered twice, never lost.
			q.log.Error("spool: unparsable delivery state, using the original envelope", "queue_id", id, "error", jerr)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return env, 0, fmt.Errorf("read delivery state: %w", err)
	}
	if err := env.normalize(q.now()); err != nil {
		return env, 0, err
	}
	return env, bodyLen, nil
}

// fdatasync flushes the file's data and the metadata needed to read it
// back (its size), which is all a new spool file needs before its rename.
func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
