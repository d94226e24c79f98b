package hostfuncs

import (
	"context"
	"fmt"

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

	{Name: "task_register", Capability: CapabilityScheduler, Params: []string{"buf_ptr", "buf_len"}, Results: []string{"errno"}, fn: api.GoModuleFunc(taskRegister)},
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
	for _, f := range functions {
		params := make([]api.ValueType, len(f.Params))
		for i := range params {
			params[i] = i32
		}
		results := make([]api.ValueType, len(f.Results))
		for i := range results {
			results[i] = i32
		}
		b.NewFunctionBuilder().
			WithGoModuleFunction(f.fn, params, results).
			WithParameterNames(f.Params...).
			WithResultNames(f.Results...).
			Export(f.Name)
	}
	if _, err := b.Instantiate(ctx); err != nil {
		return fmt.Errorf("instantiate host module %q: %w", ModuleName, err)
	}
	return nil
}
