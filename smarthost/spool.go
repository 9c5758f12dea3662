package smarthost

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
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
		d.q.log.Error("remove aborted draft", "id", d.id, "error", err)
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
	if err := d.w.Flush(); err != nil {
		return fmt.Errorf("flush body: %w", err)
	}
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("fsync body: %w", err)
	}
	// The envelope is written while the body is still at its draft path, so
	// that a failure below leaves only files that Abort or recovery removes.
	envTmp := d.path + envSuffix
	if err := writeFileSync(envTmp, env); err != nil {
		return err
	}
	msgPath := filepath.Join(q.msgDir, d.id)
	envPath := filepath.Join(q.envDir, d.id)
	committed := false
	defer func() {
		if !committed {
			_ = os.Remove(envTmp)
			_ = os.Remove(envPath)
			_ = os.Remove(msgPath)
		}
	}()
	if err := os.Rename(d.path, msgPath); err != nil {
		return fmt.Errorf("move body into spool: %w", err)
	}
	// The envelope goes in last: it is the commit marker.
	if err := os.Rename(envTmp, envPath); err != nil {
		return fmt.Errorf("move envelope into spool: %w", err)
	}
	if err := q.msgSync.Sync(); err != nil {
		return err
	}
	if err := q.envSync.Sync(); err != nil {
		return err
	}
	committed = true
	d.state = draftCommitted
	d.path = msgPath
	d.release()
	return nil
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
// envelope first (so a crash in between leaves a body without envelope,
// which recovery deletes), then the body.
func (q *Queue) removeMessage(id string) error {
	if err := os.Remove(filepath.Join(q.envDir, id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove envelope %s: %w", id, err)
	}
	// Make the removal durable, or a power loss could bring the old
	// envelope back and deliver the message twice.
	if err := q.envSync.Sync(); err != nil {
		return fmt.Errorf("remove envelope %s: %w", id, err)
	}
	if err := os.Remove(filepath.Join(q.msgDir, id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove body %s: %w", id, err)
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

	envs, err := os.ReadDir(q.envDir)
	if err != nil {
		return nil, fmt.Errorf("read spool envelopes: %w", err)
	}
	loaded := make(map[string]bool, len(envs))
	var msgs []*message
	for _, e := range envs {
		id := e.Name()
		envPath := filepath.Join(q.envDir, id)
		if !validID(id) || !e.Type().IsRegular() {
			q.log.Warn("spool: removing unexpected file", "path", envPath)
			if err := os.RemoveAll(envPath); err != nil {
				return nil, fmt.Errorf("remove unexpected envelope file: %w", err)
			}
			continue
		}
		st, err := os.Stat(filepath.Join(q.msgDir, id))
		if err != nil {
			q.log.Error("spool: envelope without body, removing", "id", id, "error", err)
			if err := os.Remove(envPath); err != nil {
				return nil, fmt.Errorf("remove envelope without body: %w", err)
			}
			continue
		}
		data, err := os.ReadFile(envPath)
		if err != nil {
			return nil, fmt.Errorf("read envelope %s: %w", id, err)
		}
		var env Envelope
		err = json.Unmarshal(data, &env)
		if err == nil {
			err = env.normalize(q.now())
		}
		if err != nil {
			// Envelopes are fsynced before rename: a bad one was never
			// acknowledged (or the disk is corrupt, which logs say).
			q.log.Error("spool: unparsable envelope, removing", "id", id, "error", err)
			if err := os.Remove(envPath); err != nil {
				return nil, fmt.Errorf("remove unparsable envelope: %w", err)
			}
			continue
		}
		loaded[id] = true
		msgs = append(msgs, &message{id: id, env: env, size: st.Size()})
	}

	bodies, err := os.ReadDir(q.msgDir)
	if err != nil {
		return nil, fmt.Errorf("read spool bodies: %w", err)
	}
	for _, e := range bodies {
		if loaded[e.Name()] {
			continue
		}
		if err := os.RemoveAll(filepath.Join(q.msgDir, e.Name())); err != nil {
			return nil, fmt.Errorf("remove body without envelope: %w", err)
		}
	}
	return msgs, nil
}
