package greenroom

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// logText formats v as fmt's %v does, except that a []byte (or a type
// defined as one) anywhere inside it, in a struct's field, a slice, a map
// or an interface, is written as its text, as slog's TextHandler writes a
// []byte attribute: fmt's [115 101 107 ...] would hide a secret in it from
// the host's redaction. A value whose type holds no bytes is formatted by
// fmt itself.
func logText(v any) string {
	rv := reflect.ValueOf(v)
	if !rv.IsValid() || !holdsBytes(rv.Type()) {
		return fmt.Sprint(v)
	}
	var b strings.Builder
	writeLogText(&b, rv, 0)
	return b.String()
}

// holdsBytesCache maps a reflect.Type to whether a value of it can hold a
// byte slice.
var holdsBytesCache sync.Map

// holdsBytes reports whether a value of type t can hold a byte slice that
// fmt's %v would print as numbers: in itself, an element, a field, a map's
// key or value, or behind an interface (which can hold anything).
func holdsBytes(t reflect.Type) bool {
	if v, ok := holdsBytesCache.Load(t); ok {
		return v.(bool)
	}
	h := holdsBytesIn(t, map[reflect.Type]bool{})
	holdsBytesCache.Store(t, h)
	return h
}

func holdsBytesIn(t reflect.Type, visiting map[reflect.Type]bool) bool {
	if visiting[t] {
		return false
	}
	visiting[t] = true
	defer delete(visiting, t)
	switch t.Kind() {
	case reflect.Interface:
		return true
	case reflect.Slice, reflect.Array:
		return t.Elem().Kind() == reflect.Uint8 || holdsBytesIn(t.Elem(), visiting)
	case reflect.Map:
		return holdsBytesIn(t.Key(), visiting) || holdsBytesIn(t.Elem(), visiting)
	case reflect.Pointer:
		// fmt follows a pointer only at the top (&{...}); deeper ones are
		// printed as addresses.
		return holdsBytesIn(t.Elem(), visiting)
	case reflect.Struct:
		for i := range t.NumField() {
			if holdsBytesIn(t.Field(i).Type, visiting) {
				return true
			}
		}
	}
	return false
}

// maxLogTextDepth bounds the nesting logText follows (a slice that holds
// itself would have none).
const maxLogTextDepth = 32

var (
	errorType     = reflect.TypeFor[error]()
	stringerType  = reflect.TypeFor[fmt.Stringer]()
	formatterType = reflect.TypeFor[fmt.Formatter]()
)

func writeLogText(b *strings.Builder, v reflect.Value, depth int) {
	if depth > maxLogTextDepth {
		b.WriteString("...")
		return
	}
	if !v.IsValid() {
		b.WriteString("<nil>")
		return
	}
	t := v.Type()
	// A value with its own formatting is formatted by fmt, as fmt would
	// (it reaches such methods only where the value is exported).
	if v.CanInterface() && t.Kind() != reflect.Interface && (t.Implements(errorType) || t.Implements(stringerType) || t.Implements(formatterType)) {
		if t.Kind() == reflect.Pointer && v.IsNil() {
			b.WriteString("<nil>")
			return
		}
		fmt.Fprint(b, v.Interface())
		return
	}
	switch t.Kind() {
	case reflect.Interface:
		if v.IsNil() {
			b.WriteString("<nil>")
			return
		}
		writeLogText(b, v.Elem(), depth)
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			if t.Kind() == reflect.Slice {
				b.Write(v.Bytes())
			} else {
				for i := range v.Len() {
					b.WriteByte(byte(v.Index(i).Uint()))
				}
			}
			return
		}
		b.WriteByte('[')
		for i := range v.Len() {
			if i > 0 {
				b.WriteByte(' ')
			}
			writeLogText(b, v.Index(i), depth+1)
		}
		b.WriteByte(']')
	case reflect.Struct:
		b.WriteByte('{')
		for i := range v.NumField() {
			if i > 0 {
				b.WriteByte(' ')
			}
			writeLogText(b, v.Field(i), depth+1)
		}
		b.WriteByte('}')
	case reflect.Map:
		if v.IsNil() {
			b.WriteString("map[]")
			return
		}
		type entry struct {
			key  string
			v, k reflect.Value
		}
		var entries []entry
		for it := v.MapRange(); it.Next(); {
			var kb strings.Builder
			writeLogText(&kb, it.Key(), depth+1)
			entries = append(entries, entry{kb.String(), it.Value(), it.Key()})
		}
		slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.key, b.key) })
		b.WriteString("map[")
		for i, e := range entries {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(e.key)
			b.WriteByte(':')
			writeLogText(b, e.v, depth+1)
		}
		b.WriteByte(']')
	case reflect.Pointer:
		if v.IsNil() {
			b.WriteString("<nil>")
			return
		}
		if depth == 0 {
			switch t.Elem().Kind() {
			case reflect.Struct, reflect.Slice, reflect.Array, reflect.Map:
				b.WriteByte('&')
				writeLogText(b, v.Elem(), depth+1)
				return
			}
		}
		b.WriteString("0x" + strconv.FormatUint(uint64(v.Pointer()), 16))
	case reflect.Bool:
		b.WriteString(strconv.FormatBool(v.Bool()))
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		b.WriteString(strconv.FormatInt(v.Int(), 10))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		b.WriteString(strconv.FormatUint(v.Uint(), 10))
	case reflect.Float32:
		b.WriteString(strconv.FormatFloat(v.Float(), 'g', -1, 32))
	case reflect.Float64:
		b.WriteString(strconv.FormatFloat(v.Float(), 'g', -1, 64))
	case reflect.Complex64:
		fmt.Fprint(b, complex64(v.Complex()))
	case reflect.Complex128:
		fmt.Fprint(b, v.Complex())
	case reflect.String:
		b.WriteString(v.String())
	default: // chan, func, unsafe pointer
		if v.IsNil() {
			b.WriteString("<nil>")
			return
		}
		b.WriteString("0x" + strconv.FormatUint(uint64(v.Pointer()), 16))
	}
}
