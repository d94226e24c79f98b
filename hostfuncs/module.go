package hostfuncs

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// Function describes one host function of the "greenroom" module.
type Function struct {
	Name string
	// Capability is the grant the function belongs to ("database",
	// "scheduler", "urlreader"), or "" for the core functions every plugin
	// may import.
	Capability string
	Params     []string
	Results    []string

	fn api.GoModuleFunction
}

var i32 = api.ValueTypeI32

// functions lists every host function, in one place, in ABI order.
var functions = []Function{
	{Name: "request_read", Params: []string{"buf_ptr", "buf_len"}, Results: []string{"n"}, fn: api.GoModuleFunc(requestRead)},
	{Name: "response_write", Params: []string{"buf_ptr", "buf_len"}, Results: []string{"errno"}, fn: api.GoModuleFunc(responseWrite)},
	{Name: "result_read", Params: []string{"buf_ptr", "buf_len"}, Results: []string{"n"}, fn: api.GoModuleFunc(resultRead)},
	{Name: "config_get", Params: []string{"key_ptr", "key_len"}, Results: []string{"len_or_errno"}, fn: api.GoModuleFunc(configGet)},
	{Name: "public_route", Params: []string{"path_ptr", "path_len"}, Results: []string{"errno"}, fn: api.GoModuleFunc(publicRoute)},

	{Name: "db_exec", Capability: CapabilityDatabase, Params: []string{"req_ptr", "req_len"}, Results: []string{"len_or_errno"}, fn: api.GoModuleFunc(dbExec)},
	{Name: "db_query", Capability: CapabilityDatabase, Params: []string{"req_ptr", "req_len"}, Results: []string{"len_or_errno"}, fn: api.GoModuleFunc(dbQuery)},
	{Name: "db_begin", Capability: CapabilityDatabase, Params: []string{"flags"}, Results: []string{"tx_or_errno"}, fn: api.GoModuleFunc(dbBegin)},
	{Name: "db_commit", Capability: CapabilityDatabase, Params: []string{"tx"}, Results: []string{"errno"}, fn: api.GoModuleFunc(dbCommit)},
	{Name: "db_rollback", Capability: CapabilityDatabase, Params: []string{"tx"}, Results: []string{"errno"}, fn: api.GoModuleFunc(dbRollback)},
	{Name: "db_migrations", Capability: CapabilityDatabase, Params: []string{"buf_ptr", "buf_len"}, Results: []string{"errno"}, fn: api.GoModuleFunc(dbMigrations)},
	{Name: "db_max_conns", Capability: CapabilityDatabase, Results: []string{"n_or_errno"}, fn: api.GoModuleFunc(dbMaxConns)},
	{Name: "db_statement_timeout", Capability: CapabilityDatabase, Results: []string{"ms_or_errno"}, fn: api.GoModuleFunc(dbStatementTimeout)},

	{Name: "task_register", Capability: CapabilityScheduler, Params: []string{"buf_ptr", "buf_len"}, Results: []string{"errno"}, fn: api.GoModuleFunc(taskRegister)},
	// Logging: every plugin may log; the runtime bounds it (level floor,
	// rate limit, record size).
	{Name: "log_enabled", Params: []string{"level"}, Results: []string{"enabled"}, fn: api.GoModuleFunc(logEnabled)},
	{Name: "log_write", Params: []string{"rec_ptr", "rec_len"}, Results: []string{"result_or_errno"}, fn: api.GoModuleFunc(logWrite)},
	// Garbage-collector tuning for Go guests: every plugin may ask.
	{Name: "gc_memory_limit", Results: []string{"kib"}, fn: api.GoModuleFunc(gcMemoryLimit)},
	{Name: "gc_percent", Results: []string{"percent"}, fn: api.GoModuleFunc(gcPercent)},
	// URL reader: outbound reads where the operator's allow list and the
	// plugin's grant both match.
	{Name: "urlreader_call", Capability: CapabilityURLReader, Params: []string{"req_ptr", "req_len"}, Results: []string{"len_or_errno"}, fn: api.GoModuleFunc(urlreaderCall)},
	// Cooperative cancellation: whether the host asked the call in
	// progress to stop (a task run at shutdown); every plugin may ask.
	{Name: "cancel_requested", Results: []string{"requested"}, fn: api.GoModuleFunc(cancelRequested)},
}

// Functions returns the host functions of the "greenroom" module.
func Functions() []Function {
	return append([]Function(nil), functions...)
}

// Lookup returns the host function called name.
func Lookup(name string) (Function, bool) {
	for _, f := range functions {
		if f.Name == name {
			return f, true
		}
	}
	return Function{}, false
}

// Instantiate defines the "greenroom" host module in r. Every function
// takes and returns i32 values only.
func Instantiate(ctx context.Context, r wazero.Runtime) error {
	b := r.NewHostModuleBuilder(ModuleName)
	for i, f := range functions {
		params := make([]api.ValueType, len(f.Params))
		for i := range params {
			params[i] = i32
		}
		results := make([]api.ValueType, len(f.Results))
		for i := range results {
			results[i] = i32
		}
		b.NewFunctionBuilder().
			WithGoModuleFunction(counted(i, len(f.Results) > 0 && f.Capability != "", f.fn), params, results).
			WithParameterNames(f.Params...).
			WithResultNames(f.Results...).
			Export(f.Name)
	}
	if _, err := b.Instantiate(ctx); err != nil {
		return fmt.Errorf("instantiate host module %q: %w", ModuleName, err)
	}
	return nil
}

// Counters count one plugin's host-function calls and the calls refused
// with ErrDenied, per function (in the order of Functions). The runtime
// keeps one per plugin across its versions and exports them as metrics.
type Counters struct {
	calls  []atomic.Int64
	denied []atomic.Int64
}

// NewCounters returns zeroed counters for every host function.
func NewCounters() *Counters {
	return &Counters{calls: make([]atomic.Int64, len(functions)), denied: make([]atomic.Int64, len(functions))}
}

// Calls returns the number of calls of the function at index i of
// Functions, and how many were denied.
func (c *Counters) Calls(i int) (calls, denied int64) {
	if c == nil || i < 0 || i >= len(c.calls) {
		return 0, 0
	}
	return c.calls[i].Load(), c.denied[i].Load()
}

// counted wraps the i-th host function so that it traps (ErrFenced) for a
// call past its fence (CancelRequest.SetFence), and so that calls (and, with
// countDenials, the calls it refuses with ErrDenied) are counted on the
// calling instance's Counters. Only a capability's functions count
// denials: a core function is never missing a grant (public_route's
// ErrDenied after initialization is a call at the wrong time).
func counted(i int, countDenials bool, f api.GoModuleFunction) api.GoModuleFunction {
	return api.GoModuleFunc(func(ctx context.Context, mod api.Module, stack []uint64) {
		in := instanceOf(ctx)
		if in != nil && in.Cancel.Fenced() {
			panic(ErrFenced)
		}
		if in == nil || in.Counters == nil {
			f.Call(ctx, mod, stack)
			return
		}
		in.Counters.calls[i].Add(1)
		f.Call(ctx, mod, stack)
		if countDenials && api.DecodeI32(stack[0]) == ErrDenied {
			in.Counters.denied[i].Add(1)
		}
	})
}
