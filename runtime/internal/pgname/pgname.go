// Package pgname names a plugin's PostgreSQL role and schema. It is apart
// from runtime/database so that config validation, which that package
// imports, can refuse two plugin ids that would share a role or a schema.
package pgname

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// maxIdent is PostgreSQL's limit on a name, in bytes (NAMEDATALEN - 1).
const maxIdent = 63

// Role is the login role of plugin id in database dbname. Roles are
// global to a PostgreSQL cluster, so the name carries a hash of the
// database's: two greenroom databases on one cluster never share a role.
func Role(dbname, id string) string {
	p := RolePrefix(dbname)
	return p + identPart(id, maxIdent-len(p))
}

// RolePrefix is the prefix of every plugin role of database dbname. Its
// length is the same for every database, so whether two ids share a role
// does not depend on the database.
func RolePrefix(dbname string) string {
	h := sha256.Sum256([]byte(dbname))
	return "gr_" + hex.EncodeToString(h[:4]) + "_"
}

// Schema is the schema of plugin id.
func Schema(id string) string {
	return "plugin_" + identPart(id, maxIdent-len("plugin_"))
}

// identPart turns a plugin id into an identifier part of at most n bytes
// of [a-z0-9_]. '-' becomes '_' (ids never contain '_', so this alone is
// one-to-one). An id that does not fit is cut to n-9 bytes followed by '_'
// and 8 hex digits of its sha256; so is an id of exactly n bytes that
// ends in '-' and 8 hex digits, which, kept as it is, would spell the cut
// form of a longer id (and did before: "a...-85869fbc" shared the role of
// the longer id its suffix was the hash of). Every other id keeps the name
// it always had. Two ids then share a part only when both are cut, agree
// on their first n-9 bytes and on 32 bits of their hashes: config
// validation refuses such a pair.
func identPart(id string, n int) string {
	s := strings.ReplaceAll(id, "-", "_")
	if len(s) < n || len(s) == n && !hashTail(s) {
		return s
	}
	h := sha256.Sum256([]byte(id))
	return s[:n-9] + "_" + hex.EncodeToString(h[:4])
}

// hashTail reports whether s ends like a cut name: '_' and 8 lowercase
// hex digits.
func hashTail(s string) bool {
	if len(s) < 9 || s[len(s)-9] != '_' {
		return false
	}
	for _, c := range []byte(s[len(s)-8:]) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
