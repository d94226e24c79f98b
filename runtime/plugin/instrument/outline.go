package instrument

import (
	"fmt"
)

// FuncType is a function type: its parameters' and results' value types
// as the binary format encodes them (the values of wazero's
// api.ValueType).
type FuncType struct{ Params, Results []byte }

// FuncImport is an imported function with its type.
type FuncImport struct {
	Module, Name string
	Type         FuncType
}

// Outline is a module's interface as its sections declare it: the
// functions it imports, in order, and the functions and memories it
// exports.
type Outline struct {
	Imports []FuncImport
	// Exports are the exported functions' types by export name.
	Exports map[string]FuncType
	// Memories are the exported memories' minimum sizes in pages (at most
	// 65 536) by export name.
	Memories map[string]uint32
}

// ReadOutline reads a module's outline from its type, import, function,
// memory and export sections alone, without validating or compiling the
// module: so that a module wazero refuses (an instruction or feature it
// does not support, too many locals) can still be described. Whatever it
// cannot read, and a reference to a type, function or memory the module
// does not declare, is an error naming the section. Run CheckSizes first:
// ReadOutline allocates by the module's declared counts.
func ReadOutline(wasm []byte) (Outline, error) {
	o := Outline{Exports: map[string]FuncType{}, Memories: map[string]uint32{}}
	var types []FuncType
	var funcTypes []uint32 // the type of each function, imported first
	var mems []uint32      // the minimum of each memory, imported first
	err := eachSection(wasm, func(id byte, at int, body []byte) error {
		r := &reader{b: body}
		var err error
		switch id {
		case secType:
			n := r.count("types", 3)
			for ; r.err == nil && n > 0; n-- {
				if f := r.byte(); f != 0x60 && r.err == nil {
					return fmt.Errorf("type section at byte %d: a type of form 0x%02x, not a function type", at, f)
				}
				var t FuncType
				t.Params = r.valtypes()
				t.Results = r.valtypes()
				types = append(types, t)
			}
		case secImport:
			err = eachImport(body, func(module, name []byte, kind ImportKind, v uint32) {
				switch kind {
				case ImportFunction:
					funcTypes = append(funcTypes, v)
					if int(v) >= len(types) {
						r.fail(fmt.Errorf("import %s.%s has no type %d", module, name, v))
						return
					}
					o.Imports = append(o.Imports, FuncImport{string(module), string(name), types[v]})
				case ImportMemory:
					mems = append(mems, v)
				}
			})
			r.off = len(body)
		case secFunction:
			for n := r.count("functions", 1); r.err == nil && n > 0; n-- {
				funcTypes = append(funcTypes, r.u32())
			}
		case secMemory:
			for n := r.count("memories", 2); r.err == nil && n > 0; n-- {
				mems = append(mems, r.limits())
			}
		case secExport:
			for n := r.count("exports", 3); r.err == nil && n > 0; n-- {
				name := string(r.name())
				kind, idx := r.byte(), r.u32()
				switch {
				case r.err != nil:
				case kind == byte(ImportFunction) && int(idx) < len(funcTypes) && int(funcTypes[idx]) < len(types):
					o.Exports[name] = types[funcTypes[idx]]
				case kind == byte(ImportFunction):
					r.fail(fmt.Errorf("export %q names no function", name))
				case kind == byte(ImportMemory) && int(idx) < len(mems):
					o.Memories[name] = mems[idx]
				case kind == byte(ImportMemory):
					r.fail(fmt.Errorf("export %q names no memory", name))
				}
			}
		default:
			return nil
		}
		if err == nil {
			err = r.err
		}
		if err == nil && r.off != len(body) {
			err = fmt.Errorf("%d bytes after its entries", len(body)-r.off)
		}
		if err != nil {
			return fmt.Errorf("%s section at byte %d: %w", sectionName(id), at, err)
		}
		return nil
	})
	return o, err
}

// valtypes reads a vector of value types.
func (r *reader) valtypes() []byte {
	n := r.count("value types", 1)
	if r.err != nil {
		return nil
	}
	ts := make([]byte, 0, n)
	for ; r.err == nil && n > 0; n-- {
		ts = append(ts, r.valtype())
	}
	return ts
}

// fail keeps the reader's first error.
func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}
