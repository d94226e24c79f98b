package plugin

import (
	"errors"
	"fmt"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// moduleView is what describe reads of a module: its exported functions
// and memories (with their types and minimum pages) and its imported
// functions (with their types).
type moduleView struct {
	exports  map[string]exportSignature
	memories map[string]uint32
	imports  []importedFunc
}

type importedFunc struct {
	module, name string
	sig          exportSignature
}

// viewOf is the view of a compiled module.
func viewOf(cm wazero.CompiledModule) moduleView {
	v := moduleView{exports: map[string]exportSignature{}, memories: map[string]uint32{}}
	for name, f := range cm.ExportedFunctions() {
		v.exports[name] = exportSignature{f.ParamTypes(), f.ResultTypes()}
	}
	for name, m := range cm.ExportedMemories() {
		v.memories[name] = m.Min()
	}
	for _, f := range cm.ImportedFunctions() {
		mod, name, _ := f.Import()
		v.imports = append(v.imports, importedFunc{mod, name, exportSignature{f.ParamTypes(), f.ResultTypes()}})
	}
	return v
}

// decodeView reads the view from the module's type, import, function,
// memory and export sections alone, without compiling it: so that
// inspect describes a module that fails to compile (an instruction or a
// feature wazero does not support, too many locals) as well as one that
// compiles. Whatever it cannot read is an error.
func decodeView(wasm []byte) (moduleView, error) {
	v := moduleView{exports: map[string]exportSignature{}, memories: map[string]uint32{}}
	if err := checkMagic(wasm); err != nil {
		return v, err
	}
	var types []exportSignature
	var funcTypes []uint32 // the type of each function, imported first
	var mems []uint32      // the minimum of each memory, imported first
	r := &secReader{b: wasm, off: 8}
	for r.off < len(r.b) && r.err == nil {
		id := r.byte()
		body := &secReader{b: r.bytes(int(r.u32()))}
		if r.err != nil {
			break
		}
		switch id {
		case 1: // types
			for n := body.count(); body.err == nil && n > 0; n-- {
				if body.byte() != 0x60 {
					body.fail("a type that is not a function type")
				}
				var sig exportSignature
				sig.params = body.valTypes()
				sig.results = body.valTypes()
				types = append(types, sig)
			}
		case 2: // imports
			for n := body.count(); body.err == nil && n > 0; n-- {
				mod, name := string(body.bytes(int(body.u32()))), string(body.bytes(int(body.u32())))
				switch kind := body.byte(); kind {
				case 0x00:
					t := body.u32()
					funcTypes = append(funcTypes, t)
					if int(t) >= len(types) {
						body.fail(fmt.Sprintf("import %s.%s has no type %d", mod, name, t))
						break
					}
					v.imports = append(v.imports, importedFunc{mod, name, types[t]})
				case 0x01:
					body.byte()
					body.limits()
				case 0x02:
					mems = append(mems, body.limits())
				case 0x03:
					body.byte()
					body.byte()
				case 0x04:
					body.byte()
					body.u32()
				default:
					body.fail(fmt.Sprintf("import kind 0x%02x", kind))
				}
			}
		case 3: // functions
			for n := body.count(); body.err == nil && n > 0; n-- {
				funcTypes = append(funcTypes, body.u32())
			}
		case 5: // memories
			for n := body.count(); body.err == nil && n > 0; n-- {
				mems = append(mems, body.limits())
			}
		case 7: // exports
			for n := body.count(); body.err == nil && n > 0; n-- {
				name := string(body.bytes(int(body.u32())))
				kind, idx := body.byte(), body.u32()
				switch {
				case body.err != nil:
				case kind == 0x00 && int(idx) < len(funcTypes) && int(funcTypes[idx]) < len(types):
					v.exports[name] = types[funcTypes[idx]]
				case kind == 0x00:
					body.fail(fmt.Sprintf("export %q names no function", name))
				case kind == 0x02 && int(idx) < len(mems):
					v.memories[name] = mems[idx]
				case kind == 0x02:
					body.fail(fmt.Sprintf("export %q names no memory", name))
				}
			}
		}
		if parsed := id == 1 || id == 2 || id == 3 || id == 5 || id == 7; parsed && body.err == nil && body.off != len(body.b) {
			body.fail("bytes after its entries")
		}
		if body.err != nil {
			return v, fmt.Errorf("section %d: %w", id, body.err)
		}
	}
	return v, r.err
}

// secReader reads a module's bytes; its first error sticks.
type secReader struct {
	b   []byte
	off int
	err error
}

var errShort = errors.New("unexpected end")

func (r *secReader) fail(what string) {
	if r.err == nil {
		r.err = errors.New(what)
	}
}

func (r *secReader) byte() byte {
	if r.err != nil || r.off >= len(r.b) {
		if r.err == nil {
			r.err = errShort
		}
		return 0
	}
	r.off++
	return r.b[r.off-1]
}

func (r *secReader) u64(maxBytes int) uint64 {
	var v uint64
	for i := 0; i < maxBytes; i++ {
		c := r.byte()
		v |= uint64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			return v
		}
	}
	r.fail("integer too long")
	return 0
}

func (r *secReader) u32() uint32 { return uint32(r.u64(5)) }

func (r *secReader) bytes(n int) []byte {
	if r.err != nil || n < 0 || n > len(r.b)-r.off {
		if r.err == nil {
			r.err = errShort
		}
		return nil
	}
	r.off += n
	return r.b[r.off-n : r.off]
}

// count reads a vector's length, which cannot exceed its bytes left.
func (r *secReader) count() int {
	n := int(r.u32())
	if n > len(r.b)-r.off {
		r.fail("a count over the section's size")
		return 0
	}
	return n
}

func (r *secReader) valTypes() []api.ValueType {
	n := r.count()
	ts := make([]api.ValueType, 0, n)
	for ; r.err == nil && n > 0; n-- {
		switch t := r.byte(); t {
		case 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f:
			ts = append(ts, t)
		default:
			r.fail(fmt.Sprintf("value type 0x%02x", t))
		}
	}
	return ts
}

// limits reads a table's or memory's limits (shared and 64-bit ones too)
// and returns the minimum, capped at 65 536 pages.
func (r *secReader) limits() uint32 {
	flags := r.byte()
	if flags > 0x07 {
		r.fail(fmt.Sprintf("limits flags 0x%02x", flags))
		return 0
	}
	width := 5
	if flags&0x04 != 0 {
		width = 10
	}
	lo := r.u64(width)
	if flags&0x01 != 0 {
		r.u64(width)
	}
	return uint32(min(lo, 65536))
}
