//go:build !unix

package database

import "context"

// lockFile is a no-op where flock does not exist: several SQLite replicas
// sharing one directory are not supported there.
func lockFile(context.Context, string) (func(), error) { return func() {}, nil }
