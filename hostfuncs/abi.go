// Package hostfuncs is the host side of greenroom's guest ABI (docs/abi.md):
// the names, error codes and envelopes, and the wire code of the host module
// "greenroom" that decodes guest pointers, calls the runtime's providers and
// encodes their results. It knows wazero, not the services behind a host
// function.
package hostfuncs

// ModuleName is the import module name of every greenroom host function.
const ModuleName = "greenroom"

// ABIVersion is the guest ABI this runtime implements. A guest declares the
// version it speaks by exporting a function named ExportABIPrefix+version,
// e.g. "greenroom_abi_v1".
const ABIVersion = 1

// Guest exports (docs/abi.md, "Exports").
const (
	ExportABIPrefix  = "greenroom_abi_v"
	ExportHandle     = "greenroom_handle"
	ExportTaskRun    = "greenroom_task_run"
	ExportMemory     = "memory"
	ExportInitialize = "_initialize"
	// ExportStart is a WASI command's entry point: a module that exports
	// it is refused (docs/abi.md, "Exports").
	ExportStart = "_start"
)

// Return codes of the greenroom_handle export.
const (
	HandleOK       = 0
	HandlePanicked = 1
	HandleBadInput = 2
	// HandleError: the call ended cleanly with an application error whose
	// message is the output (used by exports other than greenroom_handle).
	HandleError = 3
)

// Error codes returned by host functions (always negative). For every error
// code the host leaves a UTF-8 message in the result slot.
const (
	ErrNotFound    int32 = -1 // the key, row or resource does not exist
	ErrDenied      int32 = -2 // the plugin was not granted the capability, or a rule refused
	ErrInvalid     int32 = -3 // an argument was malformed
	ErrFailed      int32 = -4 // the provider failed (database error, network error, ...)
	ErrTimeout     int32 = -5 // a deadline passed
	ErrTooLarge    int32 = -6 // a result or argument is over its limit
	ErrNotModified int32 = -7 // a conditional read found the resource unchanged
)

// ErrorName returns the symbolic name of an error code, for messages.
func ErrorName(code int32) string {
	switch code {
	case ErrNotFound:
		return "not_found"
	case ErrDenied:
		return "denied"
	case ErrInvalid:
		return "invalid"
	case ErrFailed:
		return "failed"
	case ErrTimeout:
		return "timeout"
	case ErrTooLarge:
		return "too_large"
	case ErrNotModified:
		return "not_modified"
	}
	return "unknown"
}
