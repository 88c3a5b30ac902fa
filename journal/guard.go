package journal

import (
	"errors"
	"fmt"
	"regexp"
	"runtime/debug"
	"strconv"
)

// DamageError says that the journal file's own structure could not be
// read: a bbolt page that fails its checks, a page beyond the end of a
// truncated file, a memory fault while reading the mapped file. It wraps
// ErrDamaged.
type DamageError struct {
	Path string // the journal file
	Op   string // what was being done: "open", "read events", "commit", "page check"
	// Page is the bbolt page at fault, or -1 when unknown.
	Page int64
	Msg  string // what was found
	// Problems lists everything a page check found (Check), first first.
	Problems []string
}

func (e *DamageError) Error() string {
	where := ""
	if e.Page >= 0 {
		where = fmt.Sprintf(" (page %d)", e.Page)
	}
	return fmt.Sprintf("%v: %s: %s%s: %s (`overlayctl journal repair` salvages what can be read)",
		ErrDamaged, e.Path, e.Op, where, e.Msg)
}

func (e *DamageError) Unwrap() error { return ErrDamaged }

// IsDamage reports whether err says the file's structure is damaged.
func IsDamage(err error) bool { return errors.Is(err, ErrDamaged) }

var pageInMessage = regexp.MustCompile(`(?i)\bpage\b[^0-9]{0,20}?(\d+)`)

// pageOf finds a page number in a bbolt message ("page 12: ...",
// "Page expected to be: 512, ...").
func pageOf(msg string) int64 {
	m := pageInMessage.FindStringSubmatch(msg)
	if m == nil {
		return -1
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// faultAddr is implemented by the runtime's error for a memory fault
// (debug.SetPanicOnFault).
type faultAddr interface{ Addr() uintptr }

// guard runs fn with memory faults turned into panics for this goroutine
// (debug.SetPanicOnFault) and recovers any panic into a *DamageError for
// path. mapping, when set, returns the start of bbolt's mapping and its
// page size, so that a fault's address names its page.
//
// guard must wrap every call into bbolt: a damaged file makes bbolt panic
// (its page assertions) or fault (a page beyond the end of a truncated
// file), and neither may take the process down.
func guard(path, op string, mapping func() (uintptr, int), fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		r := recover()
		debug.SetPanicOnFault(old)
		if r == nil {
			return
		}
		if up, ok := r.(userPanic); ok {
			err = up // not damage: a caller's callback panicked; rethrown by rethrow
			return
		}
		d := &DamageError{Path: path, Op: op, Page: -1, Msg: fmt.Sprint(r)}
		if fa, ok := r.(faultAddr); ok && mapping != nil {
			d.Msg = fmt.Sprintf("memory fault at %#x reading the mapped file (%v)", fa.Addr(), r)
			if start, ps := safeMapping(mapping); start != 0 && ps > 0 && fa.Addr() >= start {
				d.Page = int64((fa.Addr() - start) / uintptr(ps))
				d.Msg = fmt.Sprintf("memory fault at byte %d of the mapped file: a page beyond the end of the file (truncated?)",
					fa.Addr()-start)
			}
		} else {
			d.Page = pageOf(d.Msg)
		}
		err = d
	}()
	return fn()
}

func safeMapping(mapping func() (uintptr, int)) (start uintptr, ps int) {
	defer func() {
		if recover() != nil {
			start, ps = 0, 0
		}
	}()
	return mapping()
}

// userPanic carries a panic raised by a caller's callback through guard,
// which returns it as an error so the transaction is closed first;
// rethrow then raises it again in the caller's goroutine.
type userPanic struct{ v any }

func (u userPanic) Error() string { return fmt.Sprintf("journal: callback panicked: %v", u.v) }

// rethrow re-raises a caller's panic that guard carried out of bbolt.
func rethrow(err error) error {
	var up userPanic
	if errors.As(err, &up) {
		panic(up.v)
	}
	return err
}

// callUser runs a caller's callback inside a guarded section, marking its
// panics as the caller's.
func callUser(fn func(*Envelope) error, e *Envelope) (err error) {
	defer func() {
		if r := recover(); r != nil {
			panic(userPanic{r})
		}
	}()
	return fn(e)
}
