// Package greenroom is the guest SDK for greenroom plugins written in Go.
//
// A plugin is an ordinary net/http handler compiled to WebAssembly:
//
//	func init() {
//		mux := http.NewServeMux()
//		mux.HandleFunc("GET /ping", func(w http.ResponseWriter, r *http.Request) {
//			w.Write([]byte(`{"ok":true}`))
//		})
//		greenroom.Handle(mux)
//	}
//
//	func main() {}
//
// Build it with `greenroom plugin build DIR -o hello.wasm`, or with the
// standard Go toolchain, which gives the same bytes with the same flags:
//
//	GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 go build -buildmode=c-shared -trimpath -buildvcs=false -o hello.wasm .
//
// (without -trimpath and -buildvcs=false the module holds the build's
// paths and version control state, and a sha256 pin taken from one build
// does not match a rebuild elsewhere).
//
// Every request reaches the plugin after the runtime has verified the
// caller's credential; PrincipalFrom says who called. The plugin may ask
// for routes to be callable without a credential with Public; the operator
// decides.
//
// A plugin granted the database capability gets its own database as a
// *sql.DB from DB, and registers its migrations with Migrations (see
// docs/database.md).
//
// A plugin granted the scheduler capability runs background work with
// Schedule: a Task with a cron expression or a period, a timeout and a
// scope (Global: once per due time across all replicas; Local: on every
// replica). See docs/scheduler.md.
//
// Plugins log with Logger, a standard *slog.Logger whose records the runtime
// writes with their attributes as fields, tagged with the plugin and request,
// under the operator's level floor and rate limit, secrets redacted. They
// read URLs with ReadURL or HTTPClient where the operator allows it
// ([reading] allow and the plugin's capabilities.urlreader grant).
//
// Compiled to WebAssembly, before the plugin's own init functions run, the
// package sets the Go collector's soft memory limit to a little under the
// size at which the runtime retires an instance, and GOGC to the
// operator's limits.gc_percent (debug.SetMemoryLimit, debug.SetGCPercent;
// a guest has no environment to read GOMEMLIMIT and GOGC from). A plugin
// may change them again in its init. The native build leaves them alone.
//
// The package imports only the standard library, and so do its tests (go
// mod tidy in a plugin's module loads them). It compiles for the host
// platform too, so plugin packages pass `go vet ./...` and their handlers can
// be unit-tested natively: there, Config reads the values given to SetConfig,
// Handler returns what was passed to Handle, PrincipalFrom reports what
// WithPrincipal attached, PublicRoutes lists what Public was asked, DB
// returns the database given to SetDB, Logger writes text to stderr,
// ReadURL and HTTPClient read with net/http through the transport given to
// SetURLTransport, without the runtime's allow rules, grants and address
// rules but with its other rules (the URL's form, the request headers it
// refuses) and defaults, with its errors, and RunTask runs a task
// registered with Schedule.
//
// The wire protocol between this package and the greenroom runtime is ABI v1,
// documented in docs/abi.md of the greenroom repository.
package greenroom
