package database

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/hostfuncs"
)

// callCtx stands for a call's context: it has a deadline, and ends only
// when the call is interrupted, which these tests never do (the runtime
// raises the interrupt flag first).
type callCtx struct {
	context.Context
	deadline time.Time
}

func (c callCtx) Deadline() (time.Time, bool) { return c.deadline, true }

// A statement's own deadline counts only when it is earlier than the
// call's: one equal to it (a handler passing its request's context) must
// not end the statement by a timer of its own, which could fire before the
// call's interrupts the instance and let the guest answer in time.
func TestStatementContextDeadlines(t *testing.T) {
	lim := Limits{StatementTimeout: time.Hour}
	past := time.Now().Add(-time.Millisecond)
	for _, c := range []struct {
		name       string
		call, stmt time.Time
		plugin     bool // the plugin's deadline ends the statement
	}{
		{"equal to the call's", past, past, false},
		{"later than the call's", past, past.Add(time.Second), false},
		{"earlier than the call's", past.Add(time.Hour), past, true},
		{"none", past, time.Time{}, false},
	} {
		ctx := callCtx{context.Background(), c.call}
		st := &hostfuncs.Statement{}
		if !c.stmt.IsZero() {
			st.Deadline = c.stmt.UnixNano()
		}
		sctx, cancel := statementContext(ctx, lim, st)
		if ended := sctx.Err() != nil; ended != c.plugin {
			t.Errorf("%s: statement ended %v, want %v", c.name, ended, c.plugin)
		}
		if _, ok := pluginDeadline(ctx, st); ok != c.plugin {
			t.Errorf("%s: counted as the plugin's deadline: %v, want %v", c.name, ok, c.plugin)
		}
		cancel()
	}
}

// A statement the server cancelled at its statement_timeout keeps the
// server's SQLSTATE at the end of the message, where the SDK's SQLState
// reads it (it was inside the message's parentheses, and SQLState gave "").
func TestServerTimeoutMessageEndsWithSQLState(t *testing.T) {
	err := errors.New("ERROR: canceling statement due to statement timeout (SQLSTATE 57014)")
	got := serverTimeoutMessage(time.Second.String(), err)
	want := "statement cancelled: it ran past limits.db_statement_timeout of 1s (ERROR: canceling statement due to statement timeout) (SQLSTATE 57014)"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if got := serverTimeoutMessage(time.Second.String(), errors.New("interrupted")); got != "statement cancelled: it ran past limits.db_statement_timeout of 1s (interrupted)" {
		t.Errorf("without a SQLSTATE: %q", got)
	}
}
