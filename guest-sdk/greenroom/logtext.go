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
	w := logTextWriter{budget: maxLogTextNodes}
	w.write(rv, 0)
	return w.b.String()
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
	case reflect.Slice:
		return t.Elem().Kind() == reflect.Uint8 || holdsBytesIn(t.Elem(), visiting)
	case reflect.Array:
		// A byte array (a hash, an address) is written as fmt writes it.
		return holdsBytesIn(t.Elem(), visiting)
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

// maxLogTextDepth bounds the nesting logText follows, and
// maxLogTextNodes the values it writes in all: a slice that holds itself
// would have no end, and one that holds itself twice would double with
// each level.
const (
	maxLogTextDepth = 32
	maxLogTextNodes = 10000
)

// logTextWriter writes one value for logText.
type logTextWriter struct {
	b      strings.Builder
	budget int // values it may still write
}

var (
	errorType     = reflect.TypeFor[error]()
	stringerType  = reflect.TypeFor[fmt.Stringer]()
	formatterType = reflect.TypeFor[fmt.Formatter]()
)

func (w *logTextWriter) write(v reflect.Value, depth int) {
	b := &w.b
	if depth > maxLogTextDepth || w.budget <= 0 {
		b.WriteString("...")
		return
	}
	w.budget--
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
		w.write(v.Elem(), depth)
	case reflect.Slice, reflect.Array:
		if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8 {
			b.Write(v.Bytes())
			return
		}
		b.WriteByte('[')
		for i := range v.Len() {
			if i > 0 {
				b.WriteByte(' ')
			}
			w.write(v.Index(i), depth+1)
		}
		b.WriteByte(']')
	case reflect.Struct:
		b.WriteByte('{')
		for i := range v.NumField() {
			if i > 0 {
				b.WriteByte(' ')
			}
			w.write(v.Field(i), depth+1)
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
			kw := logTextWriter{budget: w.budget}
			kw.write(it.Key(), depth+1)
			w.budget = kw.budget
			entries = append(entries, entry{kw.b.String(), it.Value(), it.Key()})
		}
		// In fmt's order: numbers by value, strings, then by their text.
		slices.SortStableFunc(entries, func(a, b entry) int {
			if c, ok := compareKeys(a.k, b.k); ok {
				return c
			}
			return strings.Compare(a.key, b.key)
		})
		b.WriteString("map[")
		for i, e := range entries {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(e.key)
			b.WriteByte(':')
			w.write(e.v, depth+1)
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
				w.write(v.Elem(), depth+1)
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

// compareKeys orders two map keys as fmt does for the kinds it can,
// reporting false for others (they are then ordered by their text).
func compareKeys(a, b reflect.Value) (int, bool) {
	if a.Kind() != b.Kind() {
		return 0, false
	}
	switch a.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return cmpOrdered(a.Int(), b.Int()), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return cmpOrdered(a.Uint(), b.Uint()), true
	case reflect.Float32, reflect.Float64:
		x, y := a.Float(), b.Float()
		switch {
		case x != x && y != y:
			return 0, true
		case x != x: // NaN first, as fmt
			return -1, true
		case y != y:
			return 1, true
		}
		return cmpOrdered(x, y), true
	case reflect.String:
		return strings.Compare(a.String(), b.String()), true
	case reflect.Array:
		// Element by element, as fmt's internal/fmtsort.
		for i := range a.Len() {
			if c, ok := compareKeys(a.Index(i), b.Index(i)); !ok || c != 0 {
				return c, ok
			}
		}
		return 0, true
	case reflect.Bool:
		x, y := a.Bool(), b.Bool()
		switch {
		case x == y:
			return 0, true
		case !x:
			return -1, true
		}
		return 1, true
	}
	return 0, false
}

func cmpOrdered[T int64 | uint64 | float64](x, y T) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}
