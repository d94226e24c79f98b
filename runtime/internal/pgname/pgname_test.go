package pgname

import (
	"slices"
	"strings"
	"testing"
)

// An id too long for a name is cut and ends in '_' and a hash; an id of
// exactly the room left that ends in '-' and 8 hex digits spelled the same
// name, and the two plugins shared a role (and, 5 bytes longer, a schema).
func TestCutNamesDoNotMeetShortIDs(t *testing.T) {
	long := "auddb-" + strings.Repeat("l", 57) // 63 bytes: cut in both
	// 51 bytes, the room in a role name; its tail is long's hash.
	role := "auddb-llllllllllllllllllllllllllllllllllll-85869fbc"
	// 56 bytes, the room in a schema name.
	schema := "auddb-lllllllllllllllllllllllllllllllllllllllll-85869fbc"
	if a, b := Role("greenroom", long), Role("greenroom", role); a == b {
		t.Errorf("%s and %s share role %s", long, role, a)
	}
	if a, b := Schema(long), Schema(schema); a == b {
		t.Errorf("%s and %s share schema %s", long, schema, a)
	}
	for _, id := range []string{long, role, schema} {
		if r, s := Role("greenroom", id), Schema(id); len(r) > 63 || len(s) > 63 {
			t.Errorf("%s: role %q schema %q longer than 63 bytes", id, r, s)
		}
	}
}

// Ids whose names were never in doubt keep them (these are the names the
// mapping gave before): a change would leave a plugin's data behind in a
// schema it no longer uses.
func TestNamesKept(t *testing.T) {
	long := "a234567890123456789012345678901234567890123456789012345678901-z"
	for _, c := range []struct{ id, role, schema string }{
		{"todo", "gr_0400f17f_todo", "plugin_todo"},
		{"my-plugin", "gr_0400f17f_my_plugin", "plugin_my_plugin"},
		{long, "gr_0400f17f_a23456789012345678901234567890123456789012_00f41440", "plugin_a2345678901234567890123456789012345678901234567_00f41440"},
		// Exactly the room, but not ending like a hash: kept whole.
		{"x-" + strings.Repeat("y", 40) + "-8586fbcg", "gr_0400f17f_x_" + strings.Repeat("y", 40) + "_8586fbcg", "plugin_x_" + strings.Repeat("y", 40) + "_8586fbcg"},
	} {
		if r, s := Role("greenroom", c.id), Schema(c.id); r != c.role || s != c.schema {
			t.Errorf("%s: role %s schema %s, want %s %s", c.id, r, s, c.role, c.schema)
		}
	}
}

// Every name is [a-z0-9_] and no longer than 63 bytes, and two ids that
// differ share a name only when both are cut and share a prefix (then
// config validation refuses them).
func TestNamesDistinct(t *testing.T) {
	var ids []string
	for _, n := range []int{1, 2, 9, 40, 41, 42, 43, 48, 49, 50, 51, 52, 55, 56, 57, 62, 63} {
		base := strings.Repeat("q", n)
		ids = append(ids, base)
		if n > 10 {
			ids = append(ids, base[:n-9]+"-0123abcd", base[:n-9]+"-0123abcg", base[:n-1]+"-")
		}
	}
	for _, name := range []func(string) string{Schema, func(id string) string { return Role("db", id) }} {
		// With each the id that, left whole, would spell its name.
		all := slices.Clone(ids)
		for _, id := range ids {
			part := strings.TrimPrefix(strings.TrimPrefix(name(id), "plugin_"), RolePrefix("db"))
			all = append(all, strings.ReplaceAll(part, "_", "-"))
		}
		seen := map[string]string{}
		for _, id := range all {
			n := name(id)
			if len(n) > 63 || strings.Trim(n, "abcdefghijklmnopqrstuvwxyz0123456789_") != "" {
				t.Errorf("%s: name %q", id, n)
			}
			if other, ok := seen[n]; ok && other != id {
				t.Errorf("%s and %s share %s", other, id, n)
			}
			seen[n] = id
		}
	}
}
