package config

import (
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// numericKeys are the config's duration, size, integer, number and rate
// keys, by dotted path (a plugin's under plugins.a, a token's under
// auth.tokens.ci), with the kind of value each holds, from Config's own
// fields.
func numericKeys() map[string]reflect.Type {
	keys := map[string]reflect.Type{}
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		for f := range t.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if name == "" || name == "-" {
				continue
			}
			path := prefix + name
			ft := f.Type
			switch {
			case ft == reflect.TypeFor[Duration](), ft == reflect.TypeFor[Size](), ft == reflect.TypeFor[Rate]():
				keys[path] = ft
			case ft.Kind() == reflect.Int, ft.Kind() == reflect.Float64:
				keys[path] = ft
			case ft.Kind() == reflect.Struct:
				walk(path+".", ft)
			case ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Struct:
				walk(path+".", ft.Elem())
			case ft.Kind() == reflect.Map && ft.Elem().Kind() == reflect.Pointer:
				walk(path+"."+map[string]string{"plugins": "a", "tokens": "ci"}[name]+".", ft.Elem().Elem())
			case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
				walk(path+"[0].", ft.Elem())
			}
		}
	}
	walk("", reflect.TypeFor[Config]())
	return keys
}

// docKeys are the keys docs/config.md's tables list, by dotted path as
// numericKeys names them.
func docKeys(t *testing.T) map[string]bool {
	t.Helper()
	text, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	heading := regexp.MustCompile("^### `\\[\\[?([^`\\]]+)\\]\\]?`")
	name := regexp.MustCompile("`([a-z_0-9]+)`")
	keys := map[string]bool{}
	table := ""
	for line := range strings.Lines(string(text)) {
		if m := heading.FindStringSubmatch(line); m != nil {
			table = strings.NewReplacer("<id>", "a", "<name>", "ci", "<kind>", "github").Replace(m[1])
			if strings.HasPrefix(line, "### `[[") {
				table += "[0]"
			}
			continue
		}
		if table == "" || !strings.HasPrefix(line, "| `") {
			continue
		}
		// The first cell: "`key`", "`a`, `b`" or "`key` (or `alias`)".
		cell, _, _ := strings.Cut(line[1:], "|")
		cell, _, _ = strings.Cut(cell, "(")
		for _, m := range name.FindAllStringSubmatch(cell, -1) {
			keys[table+"."+m[1]] = true
		}
	}
	return keys
}

// Every duration, size, integer, number and rate key docs/config.md
// lists is refused with an error naming it, at its file and line, for
// values past what it or its type holds: a duration past Go's
// ("9999999h") or negative, an integer past TOML's 64 bits or a size past
// int64, negative ones, NaN and infinities, and the largest ones each
// type holds, which every key refuses but those that take any value
// without harm (a deadline computed from it saturates: time.Time.Add).
// Nothing panics, and nothing is taken to wrap around in its use. Values
// from the environment are refused the same way without being shown.
func TestAbsurdValuesNameTheirKey(t *testing.T) {
	keys := numericKeys()
	docs := docKeys(t)
	for k := range keys {
		if !docs[k] {
			t.Errorf("%s: a %s key docs/config.md does not list", k, keys[k])
		}
	}
	// The keys the largest value of their type leaves harmless: a
	// deadline (time.Now().Add saturates), a timer, a count compared
	// with, a budget the server caps at 2^62, a bound SQLite takes as an
	// int64.
	takesLargest := map[string]bool{
		"reading.timeout": true, "plugins.a.limits.queue_timeout": true,
		"plugins.a.limits.max_requests": true,
		"server.request_budget":         true, "server.response_budget": true,
		"database.sqlite_memory": true, "plugins.a.limits.db_max_size": true,
	}
	const (
		maxDuration = `"2562047h47m16.854775807s"`
		maxInt      = "9223372036854775807"
		minInt      = "-9223372036854775808"
	)
	type value struct {
		text    string
		env     string // the variable V's value, for text "${V}"
		largest bool   // the largest value of its type: takesLargest keys take it
	}
	values := map[reflect.Type][]value{
		reflect.TypeFor[Duration](): {
			{text: `"9999999h"`}, {text: `"2562047h47m16.854775808s"`}, {text: `"-1s"`}, {text: `"-2562047h"`},
			{text: maxDuration, largest: true}, {text: "-5"}, {text: maxInt}, {text: "nan"},
			{text: `"${V}"`, env: "9999999h"}, {text: `"${V}"`, env: "-1s"},
		},
		reflect.TypeFor[Size](): {
			{text: "99999999999999999999"}, {text: "-99999999999999999999"}, {text: `"99999999999TiB"`}, {text: `"9223372036854775808B"`},
			{text: "-1"}, {text: minInt}, {text: maxInt, largest: true}, {text: "inf"}, {text: "1e300"},
			{text: `"${V}"`, env: "99999999999999999999"}, {text: `"${V}"`, env: "-1"},
		},
		reflect.TypeFor[int](): {
			{text: "99999999999999999999"}, {text: "-99999999999999999999"}, {text: "0x7fffffffffffffffff"},
			{text: minInt}, {text: maxInt, largest: true}, {text: "1e300"}, {text: "nan"}, {text: `"9999999h"`},
			{text: `"${V}"`, env: "99999999999999999999"}, {text: `"${V}"`, env: "-99999999999999999999"},
			{text: `"${V}"`, env: minInt},
		},
		reflect.TypeFor[float64](): {
			{text: "99999999999999999999"}, {text: "nan"}, {text: "-inf"}, {text: "inf"}, {text: "1e300"},
			{text: "-1"}, {text: minInt}, {text: maxInt}, {text: "1.7976931348623157e308"},
			{text: `"${V}"`, env: "1e300"}, {text: `"${V}"`, env: "NaN"}, {text: `"${V}"`, env: "Inf"},
		},
		reflect.TypeFor[Rate](): {
			{text: `"99999999999/s"`}, {text: `"1e300/s"`}, {text: `"-1/s"`}, {text: `"nan/s"`}, {text: `"inf/h"`},
			{text: maxInt}, {text: `"${V}"`, env: "1e300/s"},
		},
	}
	// What each key's table needs to be valid but for the key.
	setup := map[string]string{
		"plugins.a":              "[plugins.a]\npath = \"a.wasm\"\n",
		"auth.jwt":               "[auth.jwt]\njwks_url = \"https://idp.example/jwks\"\nissuer = \"i\"\naudience = \"a\"\n",
		"server.cors":            "[server.cors]\norigins = [\"https://app.example\"]\n",
		"integrations.github[0]": "[[integrations.github]]\nhost = \"github.com\"\n",
	}
	for key, kind := range keys {
		dot := strings.LastIndexByte(key, '.')
		table, leaf := key[:dot], key[dot+1:]
		pre := ""
		if strings.HasPrefix(table, "plugins.a") {
			pre = setup["plugins.a"]
		}
		if s, ok := setup[table]; ok && table != "plugins.a" {
			pre += s
		}
		if key == "server.rate_burst" {
			pre += "[server]\nrate_limit = \"10/s\"\n"
		}
		header := "[" + table + "]\n"
		if strings.HasSuffix(table, "[0]") {
			header = "" // its array table's header is in setup
		} else if strings.Contains(pre, header) {
			header = ""
		}
		line := strings.Count(pre+header, "\n") + 1
		for _, v := range values[kind] {
			text := pre + header + leaf + " = " + v.text + "\n"
			name := key + " = " + v.text
			if v.env != "" {
				name += " with V=" + v.env
			}
			t.Run(name, func(t *testing.T) {
				_, err := read(t, text, map[string]string{"V": v.env})
				if v.largest && takesLargest[key] {
					if err != nil {
						t.Errorf("refused: %v", err)
					}
					return
				}
				want := "config.toml:" + strconv.Itoa(line) + ": " + key + ": "
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("%v, want an error beginning %q", err, want)
				}
				if v.env != "" && strings.Contains(err.Error(), v.env) {
					t.Errorf("the value from the environment is shown: %v", err)
				}
			})
		}
	}
	// The keys named take their largest values only while they do.
	for k := range takesLargest {
		if _, ok := keys[k]; !ok {
			t.Errorf("takesLargest names %s, not a key", k)
		}
	}
	// The walk finds the keys (a float, a map's values, a pointer's).
	for _, k := range []string{"plugins.a.limits.log_rate", "plugins.a.limits.timeout", "auth.jwt.leeway", "server.cors.max_age"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("numericKeys misses %s", k)
		}
	}
}
