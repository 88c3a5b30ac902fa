package effects

import (
	"sort"
	"sync"
	"time"
)

// Problem is something that could not be made true, kept until it is: a
// reconciler's failure for an object, a listener that cannot bind, the
// daemon's socket.
type Problem struct {
	// Key names what is affected: the change key of the object (e.g.
	// "global", "service/web", "attachment/linux_pid:42"), a reconciler's
	// name for a failure that belongs to no single object, or another
	// resource ("dns/listen/127.0.0.1:53", "socket").
	Key   string
	Err   error
	Since time.Time // when it started failing
}

// ProblemSet holds problems by key. A problem set again while it lasts
// keeps its Since. Safe for concurrent use; the zero value is empty.
type ProblemSet struct {
	mu sync.Mutex
	m  map[string]Problem
}

// Set records err for key, or clears key when err is nil.
func (s *ProblemSet) Set(key string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		delete(s.m, key)
		return
	}
	if s.m == nil {
		s.m = map[string]Problem{}
	}
	since := time.Now()
	if old, ok := s.m[key]; ok {
		since = old.Since
	}
	s.m[key] = Problem{Key: key, Err: err, Since: since}
}

// Get is key's error (nil: none).
func (s *ProblemSet) Get(key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[key].Err
}

// Retain clears every key keep refuses.
func (s *ProblemSet) Retain(keep func(key string) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.m {
		if !keep(k) {
			delete(s.m, k)
		}
	}
}

// List returns the problems sorted by key.
func (s *ProblemSet) List() []Problem {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Problem, 0, len(s.m))
	for _, p := range s.m {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}
