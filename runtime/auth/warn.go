package auth

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

const (
	// warnEvery is the least time between two log lines of the same
	// warning about a JWKS URL.
	warnEvery = time.Minute
	// warnKeys bounds how many distinct warnings a warner remembers.
	warnKeys = 256
)

// warner logs the warnings about one JWKS URL (a failed fetch, a key of
// the set that is ignored), each at most once per warnEvery: the JWKS is
// fetched again for every unknown key id a caller sends, up to once a
// second, and each fetch would log its failure, or each key it ignores,
// again. A warning that comes again within warnEvery of its last line is
// counted instead, and its next line says how many times it came between
// ("repeated"). A warning is the same as another when its message and
// fields (a kid) are, whatever its error: a failed fetch's error may name
// a connection's local port, new each time; a line shows the latest.
//
// At most warnKeys distinct warnings are remembered: when that many were
// logged within warnEvery (a JWKS of thousands of bad keys), the others
// are counted together, and one line at most every warnEvery says how
// many there were.
type warner struct {
	log *logrus.Entry
	now func() time.Time

	mu   sync.Mutex
	seen map[string]*warnState
	// overflow counts the warnings not remembered for want of room.
	overflow warnState
}

type warnState struct {
	last    time.Time // when it was last logged
	repeats int       // how many times it came since, unlogged
}

func newWarner(log *logrus.Entry, now func() time.Time) *warner {
	if now == nil {
		now = time.Now
	}
	return &warner{log: log, now: now, seen: map[string]*warnState{}}
}

// warn logs msg, with err (when not nil) and fields, unless the same
// warning was logged less than warnEvery ago. A field's value is a string
// of the JWKS's (a kid): at most maxQuoted bytes of it are logged.
func (w *warner) warn(fields logrus.Fields, err error, msg string) {
	if w == nil {
		return
	}
	names := slices.Sorted(maps.Keys(fields))
	var key strings.Builder
	key.WriteString(msg)
	for _, k := range names {
		if s, ok := fields[k].(string); ok && len(s) > maxQuoted {
			fields[k] = cutAtRune(s, maxQuoted) + "..."
		}
		key.WriteString("\x00" + k + "=")
		if s, ok := fields[k].(string); ok {
			key.WriteString(s)
		}
	}
	now := w.now()
	w.mu.Lock()
	st := w.state(key.String(), now)
	if st == nil {
		// No room: counted with the others.
		st, msg, err, fields = &w.overflow, "further distinct warnings about the JWKS were not logged: more came within a minute than greenroom remembers", nil, nil
	}
	if !st.last.IsZero() && now.Sub(st.last) < warnEvery {
		st.repeats++
		w.mu.Unlock()
		return
	}
	repeats := st.repeats
	st.last, st.repeats = now, 0
	w.mu.Unlock()

	e := w.log.WithFields(fields)
	if err != nil {
		e = e.WithError(err)
	}
	if repeats > 0 {
		e = e.WithField("repeated", repeats)
	}
	e.Warn(msg)
}

// state returns key's state, made anew when it has none; nil when
// warnKeys are remembered, all logged within warnEvery. w.mu is held.
func (w *warner) state(key string, now time.Time) *warnState {
	if st, ok := w.seen[key]; ok {
		return st
	}
	if len(w.seen) >= warnKeys {
		// Those not logged for warnEvery are forgotten; what they
		// counted since their last line is lost.
		for k, st := range w.seen {
			if now.Sub(st.last) >= warnEvery {
				delete(w.seen, k)
			}
		}
		if len(w.seen) >= warnKeys {
			return nil
		}
	}
	st := &warnState{}
	w.seen[key] = st
	return st
}
