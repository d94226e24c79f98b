// Package sqlite (at internal/sqlitetest) has an error type shaped and
// named as modernc.org/sqlite's, *sqlite.Error, for the SDK's tests of
// SQLState on native errors, without the driver as a dependency.
package sqlite

import "fmt"

// Error is an SQLite error with its extended result code.
type Error struct{ code int }

// New returns an error with the extended result code code.
func New(code int) *Error { return &Error{code} }

func (e *Error) Error() string { return fmt.Sprintf("sqlite error (%d)", e.code) }

// Code is the extended result code, as modernc.org/sqlite's.
func (e *Error) Code() int { return e.code }
