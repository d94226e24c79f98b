// Command docs is greenroom's example URL reader plugin. It fetches one
// configured document with greenroom.ReadURL, keeps the latest copy with its
// ETag, and serves:
//
//	GET /latest   the latest copy; fetched on demand when there is none or
//	              it was last checked more than max_age ago (a conditional
//	              fetch with If-None-Match); ?refresh=1 checks now
//	GET /history  the fetch history, newest first (?limit=N, default 20)
//
// When a fetch fails and an older copy exists, /latest serves that copy
// with an X-Docs-Stale header saying why; with no copy it answers 502.
// The configured url is shown to clients (X-Docs-Source, /history, errors)
// without its user info and query (shownURL).
//
// Config ([plugins.docs.config]): url (required), max_age (a Go duration,
// default "5m"). The operator grants the read with [plugins.docs.capabilities]
// urlreader and allows the host in [reading] allow; see config.toml.
//
// Storage: the copy (body, ETag, Last-Modified) and the fetch history live
// in the plugin's own database (greenroom.DB, migrations in migrations/),
// so every instance and every restart sees the same copy. The operator
// grants database = true next to the urlreader grant; without it the
// plugin warns and keeps them in each instance's memory (memStore).
//
// Refresh: with scheduler = true granted, a global task named "refresh"
// fetches the document every max_age (conditionally, with its ETag; every
// 366 days at most, and no task for a max_age under 1s), so /latest is
// served from the database; without the grant, /latest fetches on demand
// as above.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	neturl "net/url"
	"strconv"
	"strings"
	"time"

	"github.com/greenroom-dev/greenroom/guest-sdk/greenroom"
)

func init() {
	var store Store
	switch err := greenroom.Migrations(migrations); {
	case errors.Is(err, greenroom.ErrDenied):
		// No database granted: the plugin still serves, from memory.
		greenroom.Logger().Warn("no database granted: keeping the copy and the history in each instance's memory (not shared, not kept across restarts); grant database = true under [plugins.docs.capabilities] to keep them in the database", "reason", err.Error())
		store = &memStore{}
	case err != nil:
		panic(err)
	default:
		store = newStore()
	}
	a := newApp(store, time.Now)
	greenroom.Handle(a.routes())
	// With the scheduler granted, a global task refreshes the copy every
	// max_age, so requests rarely wait for a fetch; without it, /latest
	// fetches on demand.
	// The scheduler takes periods from 1s to 366 days: a max_age under
	// 1s ("0s": every request fetches) gets no task, and one over 366
	// days a refresh every 366 days. Given as it was, the runtime refused
	// the task and the plugin's load failed with it.
	if _, maxAge, err := settings(); err == nil && maxAge < minRefresh {
		greenroom.Logger().Info("no scheduled refresh; fetching on demand", "reason", fmt.Sprintf("max_age %s is under %s, the shortest period of a task", maxAge, minRefresh))
	} else if err == nil {
		err := greenroom.Schedule(greenroom.Task{
			ID: "refresh", Every: min(maxAge, maxRefresh), Timeout: time.Minute, InitialDelay: 5 * time.Second,
			Scope: greenroom.Global, Run: a.refresh,
		})
		if err != nil {
			greenroom.Logger().Info("no scheduled refresh; fetching on demand", "reason", err.Error())
		}
	}
}

// minRefresh and maxRefresh bound a task's period (Task.Every).
const (
	minRefresh = time.Second
	maxRefresh = 366 * 24 * time.Hour
)

// refresh is the scheduled task: a conditional fetch of the document.
func (a *app) refresh(ctx context.Context) error {
	url, _, err := settings()
	if err != nil {
		return err
	}
	cur, err := a.store.Latest(ctx)
	if err != nil {
		return err
	}
	if cur != nil && cur.URL != url {
		cur = nil
	}
	_, err = a.fetch(ctx, url, cur)
	return err
}

func main() {}

type app struct {
	store Store
	now   func() time.Time
}

func newApp(s Store, now func() time.Time) *app { return &app{store: s, now: now} }

func (a *app) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /latest", a.latest)
	mux.HandleFunc("GET /history", a.history)
	return mux
}

// settings reads the plugin's config on every request: it is a map lookup
// in the host, and native tests can change it between requests.
func settings() (url string, maxAge time.Duration, err error) {
	url, ok := greenroom.Config("url")
	if !ok || url == "" {
		return "", 0, errors.New("config key url is not set: set [plugins.docs.config] url")
	}
	maxAge = 5 * time.Minute
	if s, ok := greenroom.Config("max_age"); ok {
		if maxAge, err = time.ParseDuration(s); err != nil {
			return "", 0, fmt.Errorf("config key max_age: %v", err)
		}
	}
	return url, maxAge, nil
}

func (a *app) latest(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	url, maxAge, err := settings()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	cur, err := a.store.Latest(ctx)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	if cur != nil && cur.URL != url {
		cur = nil // the operator pointed the plugin elsewhere
	}
	var stale error
	if cur == nil || r.URL.Query().Get("refresh") != "" || a.now().Sub(cur.CheckedAt) > maxAge {
		// The fetch gets part of what is left of the request's time, so
		// that a slow source still leaves time to answer with the copy
		// there is (limits.timeout is shorter than reading.timeout).
		fctx := ctx
		if dl, ok := ctx.Deadline(); ok {
			var cancel context.CancelFunc
			fctx, cancel = context.WithTimeout(ctx, time.Until(dl)*3/4)
			defer cancel()
		}
		next, err := a.fetch(fctx, url, cur)
		switch {
		case err != nil && cur == nil:
			writeError(w, http.StatusBadGateway, errors.New(scrubURL(err.Error(), url)))
			return
		case err != nil:
			stale = err
		default:
			cur = next
		}
	}
	h := w.Header()
	if cur.ContentType != "" {
		h.Set("Content-Type", cur.ContentType)
	}
	if cur.ETag != "" {
		h.Set("ETag", cur.ETag)
	}
	h.Set("X-Docs-Source", shownURL(cur.URL))
	h.Set("X-Docs-Fetched-At", cur.FetchedAt.UTC().Format(time.RFC3339))
	if stale != nil {
		h.Set("X-Docs-Stale", scrubURL(stale.Error(), url))
	}
	w.Write(cur.Body)
}

// fetch reads url, conditionally when cur has an ETag, and records the
// attempt. It returns the copy now current.
func (a *app) fetch(ctx context.Context, url string, cur *Copy) (*Copy, error) {
	log := greenroom.Logger()
	var opts []greenroom.ReadOption
	if cur != nil && cur.ETag != "" {
		opts = append(opts, greenroom.IfNoneMatch(cur.ETag))
	}
	start := a.now()
	resp, err := greenroom.ReadURL(ctx, url, opts...)
	f := Fetch{At: start, DurationMS: a.now().Sub(start).Milliseconds()}
	var next *Copy
	switch {
	case errors.Is(err, greenroom.ErrNotModified) && cur != nil:
		f.Outcome, f.Status, f.ETag = "not_modified", http.StatusNotModified, cur.ETag
		next = cur
		next.CheckedAt = start
		err = nil
	case err != nil:
		f.Outcome, f.Error = "error", scrubURL(err.Error(), url)
		var se *greenroom.StatusError
		if errors.As(err, &se) {
			f.Status = se.Response.Status
		}
	case len(resp.Body) > maxCopy:
		// Kept, it could not be read back (db_max_result, 8 MiB by
		// default): refused, and the copy there is stays.
		err = fmt.Errorf("the document is %d bytes, more than the %d this plugin keeps", len(resp.Body), maxCopy)
		f.Outcome, f.Status, f.Bytes, f.Error = "error", resp.Status, len(resp.Body), err.Error()
	default:
		f.Outcome, f.Status, f.ETag, f.Bytes = "fetched", resp.Status, resp.ETag, len(resp.Body)
		next = &Copy{
			URL: url, Body: resp.Body, ContentType: resp.Header.Get("Content-Type"),
			ETag: resp.ETag, LastModified: resp.LastModified, FetchedAt: start, CheckedAt: start,
		}
	}
	if serr := a.store.AddFetch(ctx, f); serr != nil {
		log.Error("could not record the fetch", "error", serr)
	}
	if err != nil {
		log.Warn("fetch failed", "url", url, "error", err)
		return nil, err
	}
	if err := a.store.SaveCopy(ctx, next); err != nil {
		return nil, err // says "save the copy"
	}
	log.Info("fetch", "url", url, "outcome", f.Outcome, "etag", f.ETag, "bytes", f.Bytes, "duration_ms", f.DurationMS)
	return next, nil
}

// maxCopy is the largest document kept: its row must come back whole
// under the plugin's db_max_result (8 MiB by default).
var maxCopy = 4 << 20

func (a *app) history(w http.ResponseWriter, r *http.Request) {
	limit := 20
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxHistory {
			writeError(w, http.StatusBadRequest, fmt.Errorf("limit must be 1-%d", maxHistory))
			return
		}
		limit = n
	}
	fetches, err := a.store.History(r.Context(), limit)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	url, _, _ := settings()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"url": shownURL(url), "fetches": fetches})
}

// shownURL is the configured url as clients see it (X-Docs-Source, the
// history, errors): without its user info, query and fragment, where an
// operator may have put a credential (a value from ${VAR} is a secret;
// the intended place for credentials is [[integrations]]). The runtime
// redacts secrets from the plugin's log lines, not from its answers.
func shownURL(raw string) string {
	u, err := neturl.Parse(raw)
	if err != nil {
		return "(the configured url, which does not parse)"
	}
	hidden := u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != ""
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	if hidden {
		return u.String() + "?…"
	}
	return u.String()
}

// scrubURL replaces the configured url raw, and its user info and query,
// in text (an error's) by what shownURL shows.
func scrubURL(text, raw string) string {
	text = strings.ReplaceAll(text, raw, shownURL(raw))
	if u, err := neturl.Parse(raw); err == nil {
		if u.RawQuery != "" {
			text = strings.ReplaceAll(text, u.RawQuery, "…")
		}
		if u.User != nil {
			// In any form: Go's errors show the password as ***.
			text = cutUserInfo(text, u.User.String())
			text = cutUserInfo(text, u.User.Username())
		}
	}
	return text
}

// cutUserInfo removes, from each "//" followed by user in text, what
// goes up to the next "@" before any "/": a URL's user info, whatever its
// password reads.
func cutUserInfo(text, user string) string {
	if user == "" {
		return text
	}
	var b strings.Builder
	for {
		i := strings.Index(text, "//"+user)
		if i < 0 {
			break
		}
		rest := text[i+2:]
		at := strings.IndexByte(rest, '@')
		if at < 0 || strings.ContainsAny(rest[:at], "/ \"") {
			b.WriteString(text[:i+2+len(user)])
			text = text[i+2+len(user):]
			continue
		}
		b.WriteString(text[:i+2])
		text = rest[at+1:]
	}
	b.WriteString(text)
	return b.String()
}

func writeError(w http.ResponseWriter, status int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}
