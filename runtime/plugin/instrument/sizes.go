package instrument

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// MaxLocals is the most locals CheckSizes lets one function declare: the
// limit web browsers apply (V8's kV8MaxWasmFunctionLocals), far above what
// compilers emit.
const MaxLocals = 50000

// MaxParams is the most parameters, and the most results, CheckSizes lets a
// function type have: the browsers' limit (V8's kV8MaxWasmFunctionParams
// and ...Returns). wazero's compiler takes time quadratic in a call's
// arguments (two calls of 50 000: 1.3 s).
const MaxParams = 1000

// MaxModuleLocals is the most locals CheckSizes lets a module's functions
// declare together. A local costs a few bytes to declare and wazero keeps
// a byte per local for as long as the module is loaded, so without it a
// module of a few MB could declare tens of billions. A Go guest declares
// about 16 000-18 000 (at most 20 in one function).
const MaxModuleLocals = 1 << 22

// MaxElementEntries is the most entries CheckSizes lets a module's element
// segments hold together, active and passive. wazero keeps each entry of
// each instance on the host's heap (about 48 bytes: a function instance
// and its reference), outside the instance's capped linear memory, so a
// 16 MB module of passive segments took 0.7 GB per instance. A Go guest
// has one entry per function: a few thousand.
const MaxElementEntries = 1 << 18

// MaxTables is the most tables CheckSizes lets a module define,
// MaxElementSegments the most element segments and MaxDataSegments the
// most data segments. MaxElementEntries and the rewrite's bound on table
// entries count what they hold, not themselves: an empty table is three
// bytes of module and an empty segment two or three, and wazero keeps
// each, once per module and again in every instance (about 110 bytes
// per table and 24 per segment), so an audit's 3 MB module of 1 048 576
// empty tables held 158 MB of heap loaded and 116 MB more per instance,
// and one of as many empty element or data segments about 90 MB and
// 24 MB more per instance. A Go guest has one table, one element segment
// and up to 100 000 data segments (its linker's limit, and the
// browsers').
const (
	MaxTables          = 1 << 10
	MaxElementSegments = 1 << 16
	MaxDataSegments    = 100000
)

// MaxGlobals is the most globals CheckSizes lets a module define. Like
// element entries they live on the host's heap, per instance (a module of
// 4 million took 160 MB per instance). A Go guest defines 8.
const MaxGlobals = 1 << 16

// MaxFunctions is the most functions CheckSizes lets a module define (its
// function section; imports are bounded by MaxImports). wazero keeps each function's decoded form, compiled code and
// bookkeeping on the host's heap for as long as the module is loaded,
// outside every instance's capped memory: an audit's 12 MB module of
// 3 000 000 empty functions held 1.08 GB (about 270 bytes per function,
// 1.56 GB at its peak while it compiled). A Go guest defines a few
// thousand (plugins/hello: about 3 700).
const MaxFunctions = 1 << 18

// MaxImports is the most imports CheckSizes lets a module have. The host
// provides a few dozen functions, but a module may import one many times
// (Go's wasip1 port imports two WASI functions twice), and wazero keeps
// each import on the host's heap while the module is loaded (about 250
// bytes) and again in every instance (about 40): an audit's 24 MB module
// importing greenroom.log_enabled 1 048 576 times held 641 MB after its
// load with one instance, and 40 MB more for each further instance; a
// module of the largest size loaded would have held gigabytes. A Go
// guest has about 30 imports, a C or Rust one no more than the functions
// it uses.
const MaxImports = 1 << 10

// MaxTypes is the most function types CheckSizes lets a module declare,
// and MaxExports the most exports: wazero keeps each on the host's heap
// as long as the module is loaded, like functions. A Go guest declares a
// few hundred types and about ten exports.
const (
	MaxTypes   = 1 << 16
	MaxExports = 1 << 16
)

// CheckSizes refuses a module whose sections are not in the
// specification's order (sectionOrder), each known one at most once, or
// whose declared counts and lengths exceed the bytes that are there to
// back them: a vector count larger than what is
// left of its section, a name or data segment longer than its section,
// more than MaxLocals locals in a function or MaxModuleLocals in all, a
// function type with more than MaxParams parameters or results, more than
// MaxElementEntries element entries, MaxTables tables, MaxElementSegments
// element or MaxDataSegments data segments, MaxGlobals globals,
// MaxImports imports, MaxFunctions functions, MaxTypes types,
// MaxExports exports or MaxFunctionExportPairs functions times exports.
//
// wazero's decoder allocates each vector at its declared size before
// reading its elements, so a 16-byte module declaring 4 294 967 295
// imports makes it ask for hundreds of GiB, and the Go runtime ends the
// whole process ("fatal error: runtime: out of memory"), which no recover
// catches. With every count bounded by the bytes behind it, what the
// decoder allocates stays proportional to the module's size. Run it on
// every module before wazero sees it. The order matters to Rewrite, which
// acts on each section it meets (a second data section replaced the
// first's segments in the data image, which wazero never saw).
//
// It checks the sections wazero decodes (types, imports, functions,
// tables, memories, globals, exports, elements, code, data, tags and the
// "name" custom section) as far as their sizes go; whether the module is
// otherwise valid is wazero's to say.
//
// Its errors wrap ErrMalformed.
func CheckSizes(wasm []byte) error {
	if err := checkSizes(wasm, MaxGlobals); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return nil
}

// AddedGlobals is how many globals Rewrite with Interrupt appends to a
// module's own: the fuel, the flag and a scratch global.
const AddedGlobals = 3

// CheckRewrittenSizes is CheckSizes for a module Rewrite returned, whose
// input CheckSizes accepted: it allows the AddedGlobals globals the
// rewrite appends on top of MaxGlobals, so that the limit holds for the
// module as given (a module of MaxGlobals globals has MaxGlobals +
// AddedGlobals once rewritten).
func CheckRewrittenSizes(wasm []byte) error {
	if err := checkSizes(wasm, MaxGlobals+AddedGlobals); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return nil
}

// ErrMalformed is wrapped by the errors of CheckSizes (and so of Rewrite,
// which checks first): the module is not one to run, with or without
// instrumentation.
var ErrMalformed = errors.New("malformed module")

// MaxFunctionExportPairs bounds a module's functions (imported and its
// own) times its exports: once a module is loaded, wazero names its
// functions at their first use by the host (a trap's stack trace) by
// pairing every function with every export, holding the call that
// needed it meanwhile. An audit's 1.3 MB module of 100 000 functions and
// 60 000 exports made its first trap take 5.2 s (a 200 ms timeout); at
// MaxFunctions and MaxExports it would be 15 s. At the bound, about a
// quarter of a second; a Go guest has a few thousand functions and about
// ten exports (plugins/hello: 3 700 and 8).
const MaxFunctionExportPairs = 1 << 28

func checkSizes(wasm []byte, maxGlobals uint32) error {
	last, lastOrder := byte(0), 0 // the last non-custom section
	var functions uint64          // imports (an upper bound of imported functions) and own functions
	return eachSection(wasm, func(id byte, at int, body []byte) error {
		switch o := sectionOrder(id); {
		case o < 0:
			return fmt.Errorf("section at byte %d: unknown section id %d", at, id)
		case o == 0: // custom: anywhere
		case id == last:
			return fmt.Errorf("%s section at byte %d: a second %s section", sectionName(id), at, sectionName(id))
		case o < lastOrder:
			return fmt.Errorf("%s section at byte %d: after the %s section (sections come in the specification's order)", sectionName(id), at, sectionName(last))
		default:
			last, lastOrder = id, o
		}
		if err := checkSection(id, body, maxGlobals); err != nil {
			return fmt.Errorf("%s section at byte %d: %w", sectionName(id), at, err)
		}
		switch id {
		case secImport, secFunction:
			functions += uint64((&reader{b: body}).u32())
		case secExport:
			exports := uint64((&reader{b: body}).u32())
			if maxGlobals > MaxGlobals { // a rewritten module: its added exports are not counted
				exports -= min(exports, AddedGlobals)
			}
			if functions*exports > MaxFunctionExportPairs {
				return fmt.Errorf("%s section at byte %d: %d exports in a module of %d functions: more than %d pairs of a function and an export, which the host goes through once the module runs", sectionName(id), at, exports, functions, MaxFunctionExportPairs)
			}
		}
		return nil
	})
}

// eachSection checks that wasm is a WebAssembly 1.0 binary module and
// calls fn with each section's id, offset and body, in order, until fn
// returns an error. A section declaring more bytes than remain is an
// error.
func eachSection(wasm []byte, fn func(id byte, at int, body []byte) error) error {
	if len(wasm) < 8 || !bytes.Equal(wasm[:4], []byte{0, 'a', 's', 'm'}) || binary.LittleEndian.Uint32(wasm[4:8]) != 1 {
		return errors.New("not a WebAssembly 1.0 binary module")
	}
	r := &reader{b: wasm, off: 8}
	for r.off < len(r.b) {
		at := r.off
		id := r.byte()
		size := r.u32()
		if r.err == nil && uint64(size) > uint64(len(r.b)-r.off) {
			return fmt.Errorf("section at byte %d declares %d bytes, %d remain", at, size, len(r.b)-r.off)
		}
		body := r.bytes(int(size))
		if r.err != nil {
			return fmt.Errorf("section at byte %d: %w", at, r.err)
		}
		if err := fn(id, at, body); err != nil {
			return err
		}
	}
	return nil
}

// sectionOrder gives a section's place in a module: 0 for a custom
// section (allowed anywhere), -1 for an unknown id, and the known others
// in the specification's order, where the tag section comes between the
// memory and global sections and the data count section between the
// element and code sections.
func sectionOrder(id byte) int {
	switch id {
	case secCustom:
		return 0
	case secType, secImport, secFunction, secTable, secMemory:
		return int(id)
	case secTag:
		return 6
	case secGlobal, secExport, secStart, secElement:
		return int(id) + 1
	case secDataCount:
		return 11
	case secCode:
		return 12
	case secData:
		return 13
	}
	return -1
}

func sectionName(id byte) string {
	names := [...]string{"custom", "type", "import", "function", "table", "memory", "global", "export", "start", "element", "code", "data", "data count", "tag"}
	if int(id) < len(names) {
		return names[id]
	}
	return fmt.Sprintf("unknown (id %d)", id)
}

// count reads a vector's length and refuses one longer than the bytes
// left, each element taking at least min bytes.
func (r *reader) count(what string, min int) uint32 {
	n := r.u32()
	if r.err == nil && uint64(n)*uint64(min) > uint64(len(r.b)-r.off) {
		r.err = fmt.Errorf("%d %s declared in %d bytes", n, what, len(r.b)-r.off)
	}
	return n
}

// name reads a length-prefixed name (or byte string), refusing a length
// beyond the bytes left.
func (r *reader) name() []byte {
	n := r.u32()
	if r.err == nil && uint64(n) > uint64(len(r.b)-r.off) {
		r.err = fmt.Errorf("%d bytes declared at byte %d, %d remain", n, r.off, len(r.b)-r.off)
		return nil
	}
	return r.bytes(int(n))
}

// constExpr skips a constant expression up to and including its end.
func (r *reader) constExpr() {
	for r.err == nil {
		op := r.byte()
		if op == 0x0b {
			return
		}
		if err := r.skipImmediates(op); err != nil && r.err == nil {
			r.err = err
		}
	}
}

func checkSection(id byte, body []byte, maxGlobals uint32) error {
	r := &reader{b: body}
	switch id {
	case 0:
		if string(r.name()) == "name" && r.err == nil {
			return checkNames(r)
		}
	case 1: // type: 0x60 vec(valtype) vec(valtype), or other composite types wazero refuses
		n := r.count("types", 3)
		if r.err == nil && n > MaxTypes {
			return fmt.Errorf("%d types, more than %d", n, MaxTypes)
		}
		for i := uint32(0); i < n && r.err == nil; i++ {
			if r.byte() != 0x60 {
				return nil // not a function type: wazero refuses it
			}
			for _, what := range []string{"parameters", "results"} {
				k := r.count("value types", 1)
				if r.err == nil && k > MaxParams {
					return fmt.Errorf("type %d has %d %s, more than %d", i, k, what, MaxParams)
				}
				for j := uint32(0); j < k && r.err == nil; j++ {
					r.valtype()
				}
			}
		}
	case 2: // import: the count, then every import read as Rewrite does
		if n := r.count("imports", 4); r.err == nil {
			if n > MaxImports {
				return fmt.Errorf("%d imports, more than %d", n, MaxImports)
			}
			_, _, _, err := countImports(body)
			return err
		}
	case 3: // function
		if n := r.count("functions", 1); r.err == nil && n > MaxFunctions {
			return fmt.Errorf("%d functions, more than %d", n, MaxFunctions)
		}
	case 4, 5, 13: // table, memory, tag
		if n := r.count("entries", 1); r.err == nil && id == 4 && n > MaxTables {
			return fmt.Errorf("%d tables, more than %d", n, MaxTables)
		}
	case 6: // global
		if n := r.count("globals", 3); r.err == nil && n > maxGlobals {
			return fmt.Errorf("%d globals, more than %d", n, MaxGlobals)
		}
	case 7: // export
		n := r.count("exports", 3)
		if r.err == nil && n > MaxExports {
			return fmt.Errorf("%d exports, more than %d", n, MaxExports)
		}
		for i := uint32(0); i < n && r.err == nil; i++ {
			r.name()
			r.byte()
			r.u32()
		}
	case 9:
		checkElements(r)
	case 10:
		checkCode(r)
	case 11:
		checkData(r)
	}
	return r.err
}

func checkElements(r *reader) {
	n := r.count("element segments", 3)
	if r.err == nil && n > MaxElementSegments {
		r.err = fmt.Errorf("%d element segments, more than %d", n, MaxElementSegments)
		return
	}
	var total uint64
	entries := func(i uint32, k uint32) {
		if total += uint64(k); r.err == nil && total > MaxElementEntries {
			r.err = fmt.Errorf("segments 0 to %d hold %d entries together, more than %d", i, total, MaxElementEntries)
		}
	}
	for i := uint32(0); i < n && r.err == nil; i++ {
		flags := r.u32()
		if flags > 7 {
			return // wazero refuses it
		}
		if flags&0x02 != 0 && flags&0x01 == 0 { // 2, 6: explicit table index
			r.u32()
		}
		if flags&0x01 == 0 { // 0, 2, 4, 6: active, with an offset
			r.constExpr()
		}
		if flags&0x03 != 0 { // 1, 2, 3, 5, 6, 7: element kind or reference type
			if flags&0x04 != 0 {
				r.reftype()
			} else {
				r.byte()
			}
		}
		if flags&0x04 == 0 { // function indices
			k := r.count("function indices", 1)
			entries(i, k)
			for j := uint32(0); j < k && r.err == nil; j++ {
				r.u32()
			}
			continue
		}
		k := r.count("element expressions", 1)
		entries(i, k)
		for j := uint32(0); j < k && r.err == nil; j++ {
			r.constExpr()
		}
	}
}

func checkCode(r *reader) {
	n := r.count("function bodies", 2)
	if r.err == nil && n > MaxFunctions {
		r.err = fmt.Errorf("%d function bodies, more than %d", n, MaxFunctions)
		return
	}
	var total uint64
	for i := uint32(0); i < n && r.err == nil; i++ {
		fn := &reader{b: r.bytes(int(r.u32()))}
		if r.err != nil {
			return
		}
		groups := fn.count("local groups", 2)
		var locals uint64
		for j := uint32(0); j < groups && fn.err == nil; j++ {
			locals += uint64(fn.u32())
			fn.valtype()
		}
		if fn.err == nil && locals > MaxLocals {
			fn.err = fmt.Errorf("%d locals, more than %d", locals, MaxLocals)
		}
		if fn.err != nil {
			r.err = fmt.Errorf("function body %d: %w", i, fn.err)
			return
		}
		if total += locals; total > MaxModuleLocals {
			r.err = fmt.Errorf("functions 0 to %d declare %d locals together, more than %d", i, total, MaxModuleLocals)
		}
	}
}

func checkData(r *reader) {
	n := r.count("data segments", 2)
	if r.err == nil && n > MaxDataSegments {
		r.err = fmt.Errorf("%d data segments, more than %d", n, MaxDataSegments)
		return
	}
	for i := uint32(0); i < n && r.err == nil; i++ {
		switch flags := r.u32(); flags {
		case 0:
			r.constExpr()
		case 1:
		case 2:
			r.u32()
			r.constExpr()
		default:
			return // wazero refuses it
		}
		r.name() // the segment's bytes, length-prefixed like a name
	}
}

// checkNames checks the name section's subsections: module name, function
// names (a name map) and local names (an indirect name map), whose counts
// wazero allocates maps for.
func checkNames(r *reader) error {
	for r.off < len(r.b) && r.err == nil {
		id := r.byte()
		sub := &reader{b: r.bytes(int(r.u32()))}
		if r.err != nil {
			break
		}
		nameMap := func(rd *reader) uint32 {
			k := rd.count("names", 2)
			for j := uint32(0); j < k && rd.err == nil; j++ {
				rd.u32()
				rd.name()
			}
			return k
		}
		// wazero keeps every name it decodes for as long as the module
		// is loaded, at 24 bytes or more for an entry of two (an
		// audit's 16 MB of empty names held 177 MB, and as many empty
		// maps of local names 240 MB): a module names at most the
		// functions it can have, and at most as many locals as all
		// its functions may declare.
		const maxNamed = MaxFunctions + MaxImports
		switch id {
		case 1:
			if k := nameMap(sub); sub.err == nil && k > maxNamed {
				sub.err = fmt.Errorf("%d function names, more than the %d functions a module may have", k, maxNamed)
			}
		case 2:
			k := sub.count("functions' local names", 2)
			if sub.err == nil && k > maxNamed {
				sub.err = fmt.Errorf("local names of %d functions, more than the %d functions a module may have", k, maxNamed)
			}
			var total uint64
			for j := uint32(0); j < k && sub.err == nil; j++ {
				sub.u32()
				if total += uint64(nameMap(sub)); sub.err == nil && total > MaxModuleLocals {
					sub.err = fmt.Errorf("%d local names, more than the %d locals a module may declare", total, MaxModuleLocals)
				}
			}
		}
		if sub.err != nil {
			return fmt.Errorf("name subsection %d: %w", id, sub.err)
		}
	}
	return r.err
}
