package lists

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"sync"

	"github.com/mxgate/mxgate/internal/safefile"
)

// FileStore is the lists of a standalone node: in memory, written to a file
// in the data dir (atomically, fsynced) on every change, read at start.
type FileStore struct {
	path string

	mu      sync.Mutex
	entries map[string]Entry
	version uint64
}

// OpenFileStore reads the lists at path; a missing file is empty lists.
func OpenFileStore(path string) (*FileStore, error) {
	s := &FileStore{path: path, entries: map[string]Entry{}}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("lists: read %s: %w", path, err)
	}
	var all []Entry
	if err := json.Unmarshal(data, &all); err != nil {
		return nil, fmt.Errorf("lists: %s: %w", path, err)
	}
	for _, e := range all {
		s.entries[e.Key()] = e
	}
	s.version = 1
	return s, nil
}

// Put adds or replaces an entry.
func (s *FileStore) Put(_ context.Context, e Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.entries[e.Key()]; !ok && s.count(e.List) >= MaxEntries {
		return fmt.Errorf("%w: the %s list holds %d entries already", ErrInvalid, e.List, MaxEntries)
	}
	old, had := s.entries[e.Key()]
	s.entries[e.Key()] = e
	if err := s.save(); err != nil {
		if had {
			s.entries[e.Key()] = old
		} else {
			delete(s.entries, e.Key())
		}
		return err
	}
	s.version++
	return nil
}

// Delete removes the entry of list l with value (normalised as NewEntry
// does); it reports whether there was one.
func (s *FileStore) Delete(_ context.Context, l List, value string) (bool, error) {
	e, err := NewEntry(l, value, "", zeroTime)
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.entries[e.Key()]
	if !ok {
		return false, nil
	}
	delete(s.entries, e.Key())
	if err := s.save(); err != nil {
		s.entries[e.Key()] = old
		return false, err
	}
	s.version++
	return true, nil
}

// Entries returns every entry, sorted by list, kind and value.
func (s *FileStore) Entries(context.Context) ([]Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sorted(), nil
}

// Version changes with every change.
func (s *FileStore) Version(context.Context) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version, nil
}

func (s *FileStore) count(l List) int {
	n := 0
	for _, e := range s.entries {
		if e.List == l {
			n++
		}
	}
	return n
}

func (s *FileStore) sorted() []Entry {
	out := make([]Entry, 0, len(s.entries))
	for _, e := range s.entries {
		out = append(out, e)
	}
	SortEntries(out)
	return out
}

func (s *FileStore) save() error {
	data, err := json.MarshalIndent(s.sorted(), "", " ")
	if err != nil {
		return fmt.Errorf("lists: encode: %w", err)
	}
	if err := safefile.Write(s.path, data, 0o600); err != nil {
		return fmt.Errorf("lists: save %s: %w", s.path, err)
	}
	return nil
}

// SortEntries orders entries by list, kind and value.
func SortEntries(es []Entry) {
	sort.Slice(es, func(i, j int) bool {
		a, b := es[i], es[j]
		if a.List != b.List {
			return a.List < b.List
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.Value < b.Value
	})
}
