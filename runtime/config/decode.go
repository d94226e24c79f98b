package config

import (
	"encoding"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// decoder copies a generic TOML document into typed config structs,
// strictly: every key must name a field, every value must fit its field's
// type. It keeps going after an error so that all of them are reported.
type decoder struct {
	origins map[string]string
	// secret reports the keys whose values are secret (secretKeys): an
	// error there names the type it found, never the value.
	secret func(path string) bool
	// substituted holds the key paths whose strings held a ${VAR}: TOML
	// substitutes only inside strings, so a number or boolean from the
	// environment ("${INSTANCES}") arrives as one, and is taken as the
	// number or boolean it spells where the key wants one.
	substituted map[string]bool
	errs        Errors
}

type defaulter interface{ setDefaults() }

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

func (d *decoder) fail(path, format string, args ...any) {
	d.errs = append(d.errs, &Error{Origin: d.origin(path), Key: path, Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) origin(path string) string {
	for p := path; p != ""; p = parentPath(p) {
		if o, ok := d.origins[p]; ok {
			return o
		}
	}
	return ""
}

func (d *decoder) decode(path string, src any, dst reflect.Value) {
	if dst.Kind() == reflect.Pointer {
		if dst.IsNil() {
			dst.Set(reflect.New(dst.Type().Elem()))
			if df, ok := dst.Interface().(defaulter); ok {
				df.setDefaults()
			}
		}
		d.decode(path, src, dst.Elem())
		return
	}
	if dst.CanAddr() && dst.Addr().Type().Implements(textUnmarshaler) {
		d.decodeText(path, src, dst)
		return
	}
	switch dst.Kind() {
	case reflect.Struct:
		d.decodeStruct(path, src, dst)
	case reflect.Map:
		d.decodeMap(path, src, dst)
	case reflect.Slice:
		arr, ok := src.([]any)
		if !ok {
			d.fail(path, "want an array, got %s", d.describe(path, src))
			return
		}
		out := reflect.MakeSlice(dst.Type(), len(arr), len(arr))
		for i, e := range arr {
			d.decode(fmt.Sprintf("%s[%d]", path, i), e, out.Index(i))
		}
		dst.Set(out)
	case reflect.String:
		s, ok := src.(string)
		if !ok {
			d.fail(path, "want a string, got %s", d.describe(path, src))
			return
		}
		dst.SetString(s)
	case reflect.Bool:
		if s, ok := src.(string); ok && d.substituted[path] && (s == "true" || s == "false") {
			src = s == "true"
		}
		b, ok := src.(bool)
		if !ok {
			d.fail(path, "want true or false, got %s", d.describe(path, src))
			return
		}
		dst.SetBool(b)
	case reflect.Int, reflect.Int64, reflect.Int32:
		if s, ok := src.(string); ok && d.substituted[path] {
			n, err := strconv.ParseInt(s, 10, 64)
			if err == nil {
				src = n
			} else if errors.Is(err, strconv.ErrRange) {
				// Digits past int64's range: as out of range as an
				// integer the file gives, not a string.
				d.fail(path, "integer out of range")
				return
			}
		}
		n, ok := src.(int64)
		if !ok {
			d.fail(path, "want an integer, got %s", d.describe(path, src))
			return
		}
		if dst.OverflowInt(n) {
			if d.isSecret(path) {
				d.fail(path, "integer out of range")
				return
			}
			d.fail(path, "integer %d out of range", n)
			return
		}
		dst.SetInt(n)
	case reflect.Float64:
		if s, ok := src.(string); ok && d.substituted[path] {
			if f, err := strconv.ParseFloat(s, 64); err == nil {
				src = f
			}
		}
		switch n := src.(type) {
		case int64:
			dst.SetFloat(float64(n))
		case float64:
			if math.IsNaN(n) || math.IsInf(n, 0) {
				d.fail(path, "want a finite number, got %s", d.describeNumber(path, n))
				return
			}
			dst.SetFloat(n)
		default:
			d.fail(path, "want a number, got %s", d.describe(path, src))
		}
	case reflect.Interface:
		dst.Set(reflect.ValueOf(src))
	default:
		d.fail(path, "unsupported config field type %s", dst.Type())
	}
}

func (d *decoder) decodeText(path string, src any, dst reflect.Value) {
	u := dst.Addr().Interface().(encoding.TextUnmarshaler)
	switch v := src.(type) {
	case string:
		if err := u.UnmarshalText([]byte(v)); err != nil {
			// At a secret key, neither the value nor what was computed
			// from it: redactErrors misses a short secret, or one with a
			// unit added, or its digits worked out.
			var ve *valueError
			switch {
			case !d.isSecret(path):
				d.fail(path, "%v", err)
			case errors.As(err, &ve):
				d.fail(path, "%s", ve.hidden)
			default:
				d.fail(path, "want a %s, got string %q", dst.Type().Name(), Redacted)
			}
		}
	case int64:
		if dst.Type() == reflect.TypeFor[Size]() {
			if v < 0 {
				d.fail(path, "must not be negative, got %s", d.describeNumber(path, v))
				return
			}
			dst.SetUint(uint64(v))
			return
		}
		d.fail(path, "want a string, got %s", d.describe(path, src))
	default:
		if dst.Type() == reflect.TypeFor[Size]() {
			d.fail(path, "want a size (a whole number of bytes, or a string with a unit such as \"4MiB\"), got %s", d.describe(path, src))
			return
		}
		d.fail(path, "want a string, got %s", d.describe(path, src))
	}
}

func (d *decoder) decodeStruct(path string, src any, dst reflect.Value) {
	m, ok := src.(map[string]any)
	if !ok {
		d.fail(path, "want a table, got %s", d.describe(path, src))
		return
	}
	fields := map[string]int{}
	var known []string
	t := dst.Type()
	for i := 0; i < t.NumField(); i++ {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		fields[tag] = i
		known = append(known, tag)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		p := joinKey(path, []string{k})
		i, ok := fields[k]
		if !ok {
			slices.Sort(known)
			where := "at the top level"
			if path != "" {
				where = "in [" + path + "]"
			}
			d.fail(p, "unknown key %q %s (known keys: %s)", k, where, strings.Join(known, ", "))
			continue
		}
		d.decode(p, m[k], dst.Field(i))
	}
}

func (d *decoder) decodeMap(path string, src any, dst reflect.Value) {
	m, ok := src.(map[string]any)
	if !ok {
		d.fail(path, "want a table, got %s", d.describe(path, src))
		return
	}
	if dst.Type().Key().Kind() != reflect.String {
		d.fail(path, "unsupported map key type %s", dst.Type().Key())
		return
	}
	if dst.IsNil() {
		dst.Set(reflect.MakeMap(dst.Type()))
	}
	elem := dst.Type().Elem()
	if elem.Kind() == reflect.Interface {
		for k, v := range m {
			dst.SetMapIndex(reflect.ValueOf(k), reflect.ValueOf(v))
		}
		return
	}
	for k, v := range m {
		p := joinKey(path, []string{k})
		key := reflect.ValueOf(k).Convert(dst.Type().Key())
		cur := dst.MapIndex(key)
		nv := reflect.New(elem).Elem()
		if cur.IsValid() {
			nv.Set(cur)
		}
		d.decode(p, v, nv)
		dst.SetMapIndex(key, nv)
	}
}

func (d *decoder) isSecret(path string) bool { return d.secret != nil && d.secret(path) }

// describe names what a value is for an error message: its type and, unless
// the key is secret, its value. A secret string is quoted as "[REDACTED]",
// as redactErrors quotes one.
func (d *decoder) describe(path string, v any) string {
	if !d.isSecret(path) {
		return describe(v)
	}
	switch v.(type) {
	case string:
		return fmt.Sprintf("string %q", Redacted)
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	}
	return describe(v)
}

// describeNumber is a number as an error quotes it: "[REDACTED]" at a
// secret key.
func (d *decoder) describeNumber(path string, n any) string {
	if d.isSecret(path) {
		return Redacted
	}
	return fmt.Sprint(n)
}

func describe(v any) string {
	switch t := v.(type) {
	case nil:
		return "nothing"
	case string:
		return fmt.Sprintf("string %q", t)
	case int64:
		return fmt.Sprintf("integer %d", t)
	case float64:
		return fmt.Sprintf("float %v", t)
	case bool:
		return fmt.Sprintf("boolean %v", t)
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	case time.Time, toml.LocalDateTime:
		return "a date-time"
	case toml.LocalDate:
		return "a date"
	case toml.LocalTime:
		return "a time"
	}
	return fmt.Sprintf("%T", v)
}
