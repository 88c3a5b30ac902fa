package ipc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// GapError is a follow that received an event out of sequence: the event
// after Last should be Last+1 but is Got (the journal was compacted past the
// point the follow resumed from, or the daemon's journal is not the one
// the follow started on).
type GapError struct{ Last, Got uint64 }

func (e *GapError) Error() string {
	if e.Got <= e.Last {
		return fmt.Sprintf("ipc: journal follow: after event %d the daemon sent event %d again (a duplicate; is this the same journal?)", e.Last, e.Got)
	}
	return fmt.Sprintf("ipc: journal follow: gap after event %d: the next event the daemon has is %d (events %d..%d are not in its journal: compacted, or another journal)",
		e.Last, e.Got, e.Last+1, e.Got-1)
}

// ErrFollowStopped wraps the error of Follow's fn.
var ErrFollowStopped = errors.New("ipc: journal follow stopped")

// FollowOptions tune Follow.
type FollowOptions struct {
	// Backoff is the first wait before reconnecting (default 100 ms); it
	// doubles up to MaxBackoff (default 2 s) and starts again once an
	// event has been delivered.
	Backoff, MaxBackoff time.Duration
	// OnReconnect, when set, is told each failed connection and the wait
	// before the next attempt.
	OnReconnect func(err error, wait time.Duration)
	Log         *slog.Logger
}

// Follow calls fn with every committed event after after, in order, each
// exactly once, until ctx ends or fn returns an error. It dials with dial
// and sends journal_follow; when the connection is lost (the daemon
// restarts) it dials again, with back-off, and resumes after the last event
// it delivered. Each event must be the one after the last (a *GapError
// otherwise). It returns ctx's error, fn's error wrapped in
// ErrFollowStopped, a *GapError, or the daemon's refusal of journal_follow
// (a *RemoteError, e.g. after_seq past the journal's head).
func Follow(ctx context.Context, dial func(context.Context) (*Client, error), after uint64, fn func(JournalEvent) error) error {
	return FollowWith(ctx, dial, after, fn, FollowOptions{})
}

// FollowWith is Follow with options.
func FollowWith(ctx context.Context, dial func(context.Context) (*Client, error), after uint64, fn func(JournalEvent) error, opt FollowOptions) error {
	if opt.Backoff <= 0 {
		opt.Backoff = 100 * time.Millisecond
	}
	if opt.MaxBackoff <= 0 {
		opt.MaxBackoff = 2 * time.Second
	}
	last := after
	wait := opt.Backoff
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var err error
		before := last
		c, err := dial(ctx)
		if err == nil {
			err = followOnce(ctx, c, &last, fn)
			c.Close()
			var re *RemoteError
			var ge *GapError
			switch {
			case errors.Is(err, ErrFollowStopped), errors.As(err, &ge), errors.As(err, &re):
				return err
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if last != before {
			wait = opt.Backoff
		}
		if opt.OnReconnect != nil {
			opt.OnReconnect(err, wait)
		}
		if opt.Log != nil {
			opt.Log.Debug("journal follow: connection lost; reconnecting", "after_seq", last, "wait", wait, "err", err)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		wait = min(2*wait, opt.MaxBackoff)
	}
}

// followOnce follows on one connection until it is lost; *last is the
// last event delivered.
func followOnce(ctx context.Context, c *Client, last *uint64, fn func(JournalEvent) error) error {
	sink := make(chan JournalFollowEvent, 256)
	c.follow.Store(&sink)
	answered := make(chan error, 1)
	go func() {
		_, err := c.Call(ctx, JournalFollow{AfterSeq: *last})
		answered <- err
	}()
	for {
		select {
		case ev := <-sink:
			e := ev.Entry
			if e.Seq != *last+1 {
				return &GapError{Last: *last, Got: e.Seq}
			}
			if err := fn(e); err != nil {
				return fmt.Errorf("%w: %w", ErrFollowStopped, err)
			}
			*last = e.Seq
		case err := <-answered:
			if err != nil {
				return err
			}
			answered = nil
		case <-c.Done():
			// What is in the sink was received before the connection
			// ended: deliver it, the next connection resumes after it.
			for {
				select {
				case ev := <-sink:
					e := ev.Entry
					if e.Seq != *last+1 {
						return &GapError{Last: *last, Got: e.Seq}
					}
					if err := fn(e); err != nil {
						return fmt.Errorf("%w: %w", ErrFollowStopped, err)
					}
					*last = e.Seq
				default:
					return c.Err()
				}
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
