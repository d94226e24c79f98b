package hostfuncs

import (
	"context"

	"github.com/tetratelabs/wazero/api"
)

// request_read(buf_ptr, buf_len i32) -> i32
//
// Copies the request envelope of the call in progress into guest memory at
// buf_ptr. buf_len must be the length passed to greenroom_handle; the result
// is the number of bytes copied. A shorter buffer gets ErrTooLarge and
// nothing is copied. Traps if the buffer is outside guest memory.
func requestRead(ctx context.Context, mod api.Module, stack []uint64) {
	const fn = "request_read"
	in := instanceFrom(ctx, fn)
	// The whole buffer the guest names must be its own, not only the
	// part the envelope fills.
	buf := guestBytes(mod, fn, api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
	if len(buf) < len(in.Request) {
		stack[0] = api.EncodeI32(in.Fail(ErrTooLarge, "request envelope is %d bytes, buffer %d", len(in.Request), len(buf)))
		return
	}
	copy(buf, in.Request)
	stack[0] = api.EncodeI32(int32(len(in.Request)))
}

// response_write(buf_ptr, buf_len i32) -> i32
//
// Appends buf_len bytes at buf_ptr to the response envelope of the call in
// progress. The guest may write the envelope in several pieces. Returns 0,
// or ErrTooLarge once the response passes the plugin's limit (the call then
// fails with 502). Traps if the buffer is outside guest memory.
func responseWrite(ctx context.Context, mod api.Module, stack []uint64) {
	const fn = "response_write"
	in := instanceFrom(ctx, fn)
	b := guestBytes(mod, fn, api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
	if in.MaxResponse > 0 && len(in.Response)+len(b) > in.MaxResponse {
		in.ResponseOverflow = true
		if in.MaxResponseSecret {
			stack[0] = api.EncodeI32(in.Fail(ErrTooLarge, "response exceeds limits.max_response (%s)", redacted))
		} else {
			stack[0] = api.EncodeI32(in.Fail(ErrTooLarge, "response exceeds %d bytes", in.MaxResponse))
		}
		return
	}
	in.Response = append(in.Response, b...)
	stack[0] = 0
}

// result_read(buf_ptr, buf_len i32) -> i32
//
// Copies the result slot, filled by the previous host call that returned a
// length (or an error code), to guest memory. Copies min(buf_len, slot
// length) bytes and returns that count. Traps if any of the buffer is
// outside guest memory, however short the slot.
func resultRead(ctx context.Context, mod api.Module, stack []uint64) {
	const fn = "result_read"
	in := instanceFrom(ctx, fn)
	buf := guestBytes(mod, fn, api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
	stack[0] = api.EncodeI32(int32(copy(buf, in.result)))
}

// MaxConfigKey is the longest key config_get looks up.
const MaxConfigKey = 1024

// config_get(key_ptr, key_len i32) -> i32
//
// Looks up key in the plugin's own config table. Returns the value's length
// with the value in the result slot, or ErrNotFound. Traps if the key is
// outside guest memory.
func configGet(ctx context.Context, mod api.Module, stack []uint64) {
	const fn = "config_get"
	in := instanceFrom(ctx, fn)
	key := guestBytes(mod, fn, api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
	// A key longer than any config key is not copied, let alone quoted.
	if len(key) > MaxConfigKey {
		stack[0] = api.EncodeI32(in.Fail(ErrNotFound, "config key of %d bytes is longer than any key (at most %d)", len(key), MaxConfigKey))
		return
	}
	v, ok := in.Host.Config(string(key))
	if !ok {
		stack[0] = api.EncodeI32(in.Fail(ErrNotFound, "config key %q is not set", key))
		return
	}
	stack[0] = api.EncodeI32(in.SetResult([]byte(v)))
}

// MaxPublicRoute is the longest route public_route considers (the
// runtime's config.MaxRouteLength, which is checked to be the same).
const MaxPublicRoute = 1024

// public_route(path_ptr, path_len i32) -> i32
//
// Asks that the route at path (UTF-8, relative to the plugin's mount, e.g.
// "/ping") be served without a credential. Accepted only while the guest
// initializes. Returns 0 when the request is recorded — the route is
// public only if the operator also lists it in public_routes — ErrInvalid
// for a malformed path, or ErrDenied outside initialization. Traps if the
// path is outside guest memory.
func publicRoute(ctx context.Context, mod api.Module, stack []uint64) {
	const fn = "public_route"
	in := instanceFrom(ctx, fn)
	path := guestBytes(mod, fn, api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
	if !in.Initializing {
		stack[0] = api.EncodeI32(in.Fail(ErrDenied, "public_route is accepted only while the plugin initializes (call greenroom.Public from init)"))
		return
	}
	// A path longer than any route is not copied out of the guest's
	// memory: a path of the whole memory (4 GiB at most) was copied onto
	// the host's heap at every call, for the host to refuse it.
	if len(path) > MaxPublicRoute {
		stack[0] = api.EncodeI32(in.Fail(ErrInvalid, "route of %d bytes is longer than %d", len(path), MaxPublicRoute))
		return
	}
	if err := in.Host.PublicRoute(string(path)); err != nil {
		stack[0] = api.EncodeI32(in.Fail(ErrInvalid, "%v", err))
		return
	}
	stack[0] = 0
}
