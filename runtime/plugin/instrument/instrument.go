// Package instrument rewrites a WebAssembly module so that the host can
// interrupt it cheaply. It adds two exported mutable i32 globals, a fuel
// counter and an interrupt flag (and a scratch global of its own), and at
// the entry of every function and the header of every loop it inserts
//
//	global.get $fuel
//	i32.const weight
//	i32.sub
//	global.set $fuel
//	global.get $fuel
//	i32.const 1
//	i32.lt_s
//	if
//	  i32.const Refill
//	  global.set $fuel
//	  i32.const 0
//	  memory.grow 0   ;; exits to Go: a safe point for the Go scheduler and GC
//	  drop
//	  global.get $flag
//	  if
//	    unreachable
//	  end
//	end
//
// where weight is the work the check covers (see weigh): one unit per 1024
// bytes of code that can run before the next check, so that one loop
// iteration that does a lot (calls to many functions without checks of
// their own) takes as much fuel as it does work. Before every bulk memory
// or table operation (memory.copy, memory.fill, ...), whose time grows
// with its length, the same check takes 1 + length/256 units.
//
// At a call's deadline the host sets the flag, then the fuel to 1, so the
// guest traps at its next check. Were the fuel write lost to the guest's
// own update, the check still comes within Refill units. The periodic exit
// matters as much as the flag: compiled code never reaches a Go safe point
// by itself, so a guest spinning without it would stall the Go runtime's
// stop-the-world, and with every core in guest code the timer that sets
// the flag cannot run until one exits: weighing the fuel by work bounds
// that time whatever a loop iteration costs. This replaces wazero's
// close-on-context-done, whose check leaves compiled code on every loop
// iteration and costs far more (docs/benchmarks.md).
//
// It also merges the module's data segments where that keeps the memory an
// instance starts with the same (see mergeData), and it keeps what a module
// can make the host spend bounded: declared sizes (CheckSizes, before
// anything else), the memory cap, tables fixed at their initial size, and
// per-function limits on what wazero's compiler is slow with
// (MaxFunctionCode, MaxFunctionLoops and the others).
//
// The rewriter parses only what it must: section headers, the import,
// global, export, code and data sections, and instructions to find loops. It
// knows the immediates of every instruction of WebAssembly 2.0 plus the
// threads, tail-call and exception-handling proposals; a module using any
// other opcode is refused with an error naming it, and the caller refuses
// the module (wazero's own interruption, checked at loop headers only,
// does not stop a loop-free tree of calls). No maintained Go library walks
// instruction streams for rewriting (wazero's decoder is internal, wabin
// stops at function bodies), hence this small one.
package instrument

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
)

// Version changes whenever Rewrite's output for the same input and options
// changes, or what it refuses does; caches of rewritten modules key on it.
const Version = 30

// Export names of the added globals, and of a start function the rewrite
// takes out of a start section (with Interrupt: the caller runs it
// right after instantiation, when the flag can be reached).
const (
	FlagName  = "greenroom_interrupt"
	FuelName  = "greenroom_fuel"
	StartName = "greenroom_start"
)

// Refill is how many units of fuel (see weigh) run between two exits to
// Go: 16 384 loop iterations at least, and at most twice the units (a
// check that spends the fuel refills it in full, whatever it took): some
// 32 MiB of code or 8 MiB of memory copied, plus one bulk operation, which
// memory's size bounds. Each exit costs well under a microsecond, and a Go guest
// exits some ten thousand times per second at most (todo's list and
// hello's ping measured within noise of 65 536 unweighted units).
const Refill = 1 << 14

// Section ids.
const (
	secCustom    = 0
	secType      = 1
	secImport    = 2
	secFunction  = 3
	secTable     = 4
	secMemory    = 5
	secGlobal    = 6
	secExport    = 7
	secStart     = 8
	secElement   = 9
	secCode      = 10
	secData      = 11
	secDataCount = 12
	secTag       = 13
)

// Stats describes what Rewrite changed.
type Stats struct {
	Functions int // checks at function entries
	Loops     int // checks at loop headers
	// Skipped counts function entries left without a check because every
	// call they can make is preceded by a loop-header check, or because
	// they call nothing (see needsEntryCheck).
	Skipped int
	// DataSegments and MergedSegments count the data segments before and
	// after mergeData.
	DataSegments, MergedSegments int
	// Image says that the data segments went to ImageSection
	// (Options.DataImage).
	Image bool
	// Cached is set by callers that took the output from a cache, where
	// the counts are not known.
	Cached bool
}

// Options say what Rewrite changes.
type Options struct {
	// Interrupt adds the fuel and flag globals and their checks.
	Interrupt bool
	// MaxMemoryPages, when not 0, caps the module's memory at this many
	// 64 KiB pages: its declared maximum is lowered to it (or set, when it
	// declares none), so the engine refuses to grow it further. A module
	// that needs more at start is refused.
	MaxMemoryPages uint32
	// MaxTableEntries, when not 0, fixes the module's tables at their
	// initial size (each one's maximum becomes its minimum, so table.grow
	// fails and returns -1) and refuses a module whose tables start with
	// more entries than this together. Table entries live in the host's
	// memory, outside the capped linear memory: wazero lets an unbounded
	// table grow to 2^32-1 entries, 32 GiB.
	MaxTableEntries uint32
	// DataImage moves the module's data segments into ImageSection (see
	// DataImage), where merging may (see mergeData) and every segment
	// lies inside the initial memory; otherwise they stay in the data
	// section. The caller must then lay them out in each instance's
	// memory itself: the engine no longer sees them.
	DataImage bool
}

// Interruptible is Rewrite with only Interrupt.
func Interruptible(wasm []byte) ([]byte, Stats, error) {
	return Rewrite(wasm, Options{Interrupt: true})
}

// Rewrite returns a copy of the module changed as opts say, and with its
// data segments merged where that keeps memory the same (see mergeData). With
// Interrupt, custom sections holding DWARF (".debug_*") are dropped, since
// code offsets change. A module CheckSizes refuses is refused, with an error
// wrapping ErrMalformed.
func Rewrite(wasm []byte, opts Options) ([]byte, Stats, error) {
	var st Stats
	if len(wasm) < 8 || !bytes.Equal(wasm[:4], []byte{0, 'a', 's', 'm'}) || binary.LittleEndian.Uint32(wasm[4:8]) != 1 {
		return nil, st, errors.New("not a WebAssembly 1.0 binary module")
	}
	if err := CheckSizes(wasm); err != nil {
		return nil, st, err
	}
	type section struct {
		id   byte
		body []byte
	}
	var secs []section
	r := &reader{b: wasm, off: 8}
	for r.off < len(r.b) {
		id := r.byte()
		n := r.u32()
		body := r.bytes(int(n))
		if r.err != nil {
			return nil, st, fmt.Errorf("section at byte %d: %w", r.off, r.err)
		}
		secs = append(secs, section{id, body})
	}

	var importedFuncs, definedFuncs, importedGlobals, definedGlobals, memories, importedMemories, memMin uint32
	dataCount := false
	// start is the start section's function, taken out of it with
	// Interrupt: a start section runs inside instantiation, before the
	// host can reach the flag, so the function is exported as StartName
	// for the host to call once the module is instantiated.
	start, hasStart := uint32(0), false
	results, arity := 0, 0
	// CheckSizes has checked that the sections are in order, each once.
	for _, s := range secs {
		switch s.id {
		case secType:
			results, arity = maxResults(s.body)
		case secImport:
			f, g, m, err := countImports(s.body)
			if err != nil {
				return nil, st, fmt.Errorf("import section: %w", err)
			}
			importedFuncs, importedGlobals, importedMemories, memories = f, g, m, memories+m
		case secFunction:
			definedFuncs = (&reader{b: s.body}).u32() // CheckSizes read it
		case secDataCount:
			dataCount = true
		case secMemory:
			mr := &reader{b: s.body}
			n := mr.u32()
			memories += n
			if n > 0 {
				mr.byte() // limit flags (capMemory checks them)
				memMin = mr.u32()
			}
		case secGlobal:
			gr := &reader{b: s.body}
			definedGlobals = gr.u32()
			if gr.err != nil {
				return nil, st, fmt.Errorf("global section: %w", gr.err)
			}
		case secStart:
			sr := &reader{b: s.body}
			start, hasStart = sr.u32(), true
			if sr.err != nil || sr.off != len(s.body) {
				return nil, st, fmt.Errorf("%w: start section is not one function index", ErrMalformed)
			}
		case secExport:
			// Reserved with or without the checks, so that a module means
			// the same to load and to inspect whatever the config.
			for _, name := range []string{FlagName, FuelName, StartName} {
				if exportsName(s.body, name) {
					return nil, st, fmt.Errorf("%w: module exports %q, a name this runtime reserves for its interruption checks", ErrReserved, name)
				}
			}
		}
	}
	// Exported as StartName with Interrupt, a start function that does
	// not exist would be refused by wazero as an export of an unknown
	// function, which the module never declared.
	if hasStart && uint64(start) >= uint64(importedFuncs)+uint64(definedFuncs) {
		return nil, st, fmt.Errorf("%w: start section names function %d, but the module has %d functions (%d imported, %d defined)", ErrMalformed, start, importedFuncs+definedFuncs, importedFuncs, definedFuncs)
	}
	switch {
	case memories == 0 && opts.MaxMemoryPages > 0:
		return nil, st, unsupported(errors.New("module has no memory of its own, which the memory cap (and the interruption check) needs"))
	case memories == 0 && opts.Interrupt:
		return nil, st, errors.New("module has no memory, which the interruption check needs")
	}
	fuel := importedGlobals + definedGlobals
	flag := fuel + 1
	g := checkGlobals{fuel: fuel, flag: flag, scratch: fuel + 2, results: results, arity: arity}

	out := append([]byte(nil), wasm[:8]...)
	wroteGlobal, wroteExport := false, false
	writeSection := func(id byte, body []byte) {
		out = append(out, id)
		out = appendU32(out, uint32(len(body)))
		out = append(out, body...)
	}
	newGlobalSection := func(old []byte) []byte {
		var body []byte
		rest := []byte(nil)
		if old != nil {
			gr := &reader{b: old}
			gr.u32()
			rest = old[gr.off:]
		}
		body = appendU32(body, definedGlobals+AddedGlobals)
		body = append(body, rest...)
		// (global $fuel (mut i32) (i32.const Refill)) (global $flag (mut i32) (i32.const 0))
		// (global $scratch (mut i32) (i32.const 0))
		body = append(body, 0x7f, 0x01, 0x41)
		body = appendS32(body, Refill)
		return append(body, 0x0b, 0x7f, 0x01, 0x41, 0x00, 0x0b, 0x7f, 0x01, 0x41, 0x00, 0x0b)
	}
	newExportSection := func(old []byte) []byte {
		var body []byte
		rest := []byte(nil)
		count := uint32(0)
		if old != nil {
			er := &reader{b: old}
			count = er.u32()
			rest = old[er.off:]
		}
		type export struct {
			name string
			kind byte // 0x00 function, 0x03 global
			idx  uint32
		}
		added := []export{{FuelName, 0x03, fuel}, {FlagName, 0x03, flag}}
		if hasStart {
			added = append(added, export{StartName, 0x00, start})
		}
		body = appendU32(body, count+uint32(len(added)))
		body = append(body, rest...)
		for _, e := range added {
			body = appendU32(body, uint32(len(e.name)))
			body = append(body, e.name...)
			body = append(body, e.kind)
			body = appendU32(body, e.idx)
		}
		return body
	}
	if !opts.Interrupt {
		// Nothing is added: the global and export sections stay as they are.
		wroteGlobal, wroteExport = true, true
	}
	cappedMemory := opts.MaxMemoryPages == 0
	var image []dataSegment // with st.Image
	for _, s := range secs {
		// A created global or export section lands where the
		// specification requires.
		if s.id != secCustom {
			if !wroteGlobal && sectionOrder(s.id) > sectionOrder(secGlobal) {
				writeSection(secGlobal, newGlobalSection(nil))
				wroteGlobal = true
			}
			if !wroteExport && sectionOrder(s.id) > sectionOrder(secExport) {
				writeSection(secExport, newExportSection(nil))
				wroteExport = true
			}
		}
		switch s.id {
		case secCustom:
			cr := &reader{b: s.body}
			name := cr.bytes(int(cr.u32()))
			if opts.Interrupt && cr.err == nil && bytes.HasPrefix(name, []byte(".debug_")) {
				continue
			}
			if cr.err == nil && bytes.Equal(name, []byte(ImageSection)) {
				continue // only Rewrite writes it
			}
			if cr.err == nil && bytes.Equal(name, []byte("name")) {
				if body := cutNames(s.body); body != nil {
					writeSection(s.id, body)
				}
				continue
			}
			writeSection(s.id, s.body)
		case secTable:
			body := s.body
			if opts.MaxTableEntries > 0 {
				var err error
				if body, err = fixTables(s.body, opts.MaxTableEntries); err != nil {
					return nil, st, err
				}
			}
			writeSection(s.id, body)
		case secMemory:
			body := s.body
			if opts.MaxMemoryPages > 0 {
				var err error
				if body, err = capMemory(s.body, opts.MaxMemoryPages); err != nil {
					return nil, st, err
				}
				cappedMemory = true
			}
			writeSection(s.id, body)
		case secGlobal:
			if !opts.Interrupt {
				writeSection(s.id, s.body)
				continue
			}
			writeSection(secGlobal, newGlobalSection(s.body))
			wroteGlobal = true
		case secStart:
			if opts.Interrupt {
				continue // exported as StartName instead
			}
			writeSection(s.id, s.body)
		case secExport:
			if !opts.Interrupt {
				writeSection(s.id, s.body)
				continue
			}
			if err := checkExportedGlobals(s.body, fuel); err != nil {
				return nil, st, fmt.Errorf("export section: %w", err)
			}
			writeSection(secExport, newExportSection(s.body))
			wroteExport = true
		case secData:
			body, segs, before, after, err := mergeData(s.body, importedMemories > 0, dataCount)
			if err != nil {
				return nil, st, fmt.Errorf("%w: data section: %w", ErrMalformed, err)
			}
			st.DataSegments, st.MergedSegments = before, after
			if opts.DataImage && segs != nil && withinMemory(segs, memMin) {
				image, st.Image = segs, true
				continue
			}
			writeSection(s.id, body)
		case secCode:
			if !opts.Interrupt {
				if err := checkControl(s.body, results, arity); err != nil {
					return nil, st, err
				}
				writeSection(s.id, s.body)
				continue
			}
			body, err := rewriteCode(s.body, g, &st)
			if err != nil {
				return nil, st, err
			}
			writeSection(secCode, body)
		default:
			writeSection(s.id, s.body)
		}
	}
	if !wroteGlobal {
		writeSection(secGlobal, newGlobalSection(nil))
	}
	if !wroteExport {
		writeSection(secExport, newExportSection(nil))
	}
	if !cappedMemory {
		return nil, st, unsupported(errors.New("module defines no memory of its own to cap (an imported memory cannot be bounded per plugin)"))
	}
	if st.Image {
		writeSection(secCustom, imageSection(image))
	}
	return out, st, nil
}

// capMemory lowers the maximum of the first memory of a memory section to
// max pages.
func capMemory(b []byte, max uint32) ([]byte, error) {
	r := &reader{b: b}
	n := r.u32()
	if r.err != nil {
		return nil, fmt.Errorf("%w: memory section: %w", ErrMalformed, r.err)
	}
	if n == 0 {
		return nil, unsupported(errors.New("memory section declares no memory of its own to cap (an imported memory cannot be bounded per plugin)"))
	}
	flags := r.byte()
	if flags&^0x01 != 0 {
		return nil, unsupported(fmt.Errorf("memory 0 has limit flags 0x%02x (shared or 64-bit memory), which this runtime does not run", flags))
	}
	min := r.u32()
	declared := uint32(0)
	if flags&0x01 != 0 {
		declared = r.u32()
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: memory section: %w", ErrMalformed, r.err)
	}
	if min > max {
		return nil, &MemoryError{Need: min, Cap: max}
	}
	if flags&0x01 != 0 && declared < max {
		max = declared
	}
	out := appendU32(nil, n)
	out = append(out, 0x01)
	out = appendU32(out, min)
	out = appendU32(out, max)
	return append(out, b[r.off:]...), nil
}

// ErrOverLimit is wrapped by Rewrite's errors for a module over one of
// the runtime's limits (memory or tables needed at start, instructions,
// loops or blocks in a function): no other rewrite makes it acceptable.
var ErrOverLimit = errors.New("module over a limit")

// MemoryError is Rewrite's refusal of a module whose memory at start,
// Need pages, is over its cap, Cap pages (Options.MaxMemoryPages). It is
// one of ErrOverLimit. With CapSecret its message does not tell the cap:
// limits.memory came from the environment, and the message reaches the
// plugin's callers (its 503s).
type MemoryError struct {
	Need, Cap uint32
	CapSecret bool
}

func (e *MemoryError) Error() string {
	if e.CapSecret {
		return fmt.Sprintf("module needs %d pages of memory at start (%d bytes), over its limit (limits.memory, [REDACTED])", e.Need, uint64(e.Need)*65536)
	}
	return fmt.Sprintf("module needs %d pages of memory at start (%d bytes), over its limit (limits.memory) of %d pages (%d bytes)", e.Need, uint64(e.Need)*65536, e.Cap, uint64(e.Cap)*65536)
}

func (e *MemoryError) Is(target error) bool { return target == ErrOverLimit }

// ErrReserved is wrapped by the refusal of a module that exports a name
// Rewrite adds (FlagName, FuelName, StartName), with or without Interrupt.
var ErrReserved = errors.New("reserved export name")

// limitError marks an error as one of ErrOverLimit without changing its
// message.
type limitError struct{ error }

func (e limitError) Unwrap() error        { return e.error }
func (e limitError) Is(target error) bool { return target == ErrOverLimit }

func overLimit(err error) error { return limitError{err} }

// ErrUnsupported is wrapped by Rewrite's refusal of a module that uses
// what this runtime does not run at all, with or without Interrupt: a
// shared or 64-bit memory, no memory of its own (with MaxMemoryPages), a
// table with an initializer expression or 64-bit or shared limits (with
// MaxTableEntries).
var ErrUnsupported = errors.New("module uses what this runtime does not run")

// unsupportedError marks an error as one of ErrUnsupported without
// changing its message.
type unsupportedError struct{ error }

func (e unsupportedError) Unwrap() error        { return e.error }
func (e unsupportedError) Is(target error) bool { return target == ErrUnsupported }

func unsupported(err error) error { return unsupportedError{err} }

// fixTables sets the maximum of every table of a table section to its
// minimum, refusing tables whose minimums add up to more than budget, and
// tables it does not run (ErrUnsupported) or cannot read (ErrMalformed).
func fixTables(b []byte, budget uint32) ([]byte, error) {
	r := &reader{b: b}
	n := r.u32()
	out := appendU32(nil, n)
	var total uint64
	for i := uint32(0); i < n && r.err == nil; i++ {
		if r.off < len(r.b) && r.b[r.off] == 0x40 {
			return nil, unsupported(fmt.Errorf("table %d has an initializer expression, which this runtime does not run", i))
		}
		start := r.off
		r.reftype()
		reftype := r.b[start:r.off]
		flags := r.byte()
		if r.err == nil && flags&^0x01 != 0 {
			return nil, unsupported(fmt.Errorf("table %d has limit flags 0x%02x (64-bit or shared), which this runtime does not run", i, flags))
		}
		min := r.u32()
		if flags&0x01 != 0 {
			if max := r.u32(); r.err == nil && max < min {
				return nil, fmt.Errorf("%w: table %d: maximum %d below its minimum %d", ErrMalformed, i, max, min)
			}
		}
		if r.err != nil {
			break
		}
		if total += uint64(min); total > uint64(budget) {
			return nil, overLimit(fmt.Errorf("module's tables need %d entries at start, over the limit of %d", total, budget))
		}
		out = append(out, reftype...)
		out = append(out, 0x01)
		out = appendU32(out, min)
		out = appendU32(out, min)
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: table section: %w", ErrMalformed, r.err)
	}
	if r.off != len(b) {
		return nil, fmt.Errorf("%w: table section: %d trailing bytes", ErrMalformed, len(b)-r.off)
	}
	return out, nil
}

// checkGlobals are the indices of the globals the checks use: the fuel,
// the flag, and a scratch global that holds a bulk operation's length
// while its check runs.
type checkGlobals struct {
	fuel, flag, scratch uint32
	// results and arity are the most results, and the most parameters or
	// results, a function type of the module has (maxResults), for
	// controlCount.
	results, arity int
}

// maxResults returns the most results a function type of the type
// section b has (what a call can push at most), and the most parameters
// or results (what a block typed by a type index can carry at most). A
// section it cannot read gives bounds high enough that controlCount
// refuses what relies on them.
func maxResults(b []byte) (results, arity int) {
	const unreadable = 1 << 16
	r := &reader{b: b}
	for n := r.u32(); n > 0 && r.err == nil; n-- {
		if r.byte() != 0x60 {
			return unreadable, unreadable // not a function type (GC's, which wazero refuses)
		}
		for i := range 2 { // parameters, results
			k := r.u32()
			for range k {
				r.valtype()
			}
			arity = max(arity, int(k))
			if i == 1 {
				results = max(results, int(k))
			}
		}
	}
	if r.err != nil {
		return unreadable, unreadable
	}
	return results, arity
}

// appendCheck appends the check sequence of the package comment, which
// takes weight units of fuel.
func appendCheck(dst []byte, g checkGlobals, weight int32) []byte {
	dst = appendU32(append(dst, 0x23), g.fuel) // global.get $fuel
	dst = appendS32(append(dst, 0x41), weight) // i32.const weight
	dst = append(dst, 0x6b)                    // i32.sub
	return appendRefuel(dst, g)
}

// appendBulkCheck appends the check before a bulk memory or table
// operation, whose length is on top of the stack: it takes 1 + length/256
// units of fuel and leaves the length where it was.
func appendBulkCheck(dst []byte, g checkGlobals) []byte {
	dst = appendU32(append(dst, 0x24), g.scratch) // global.set $scratch
	dst = appendU32(append(dst, 0x23), g.fuel)    // global.get $fuel
	dst = appendU32(append(dst, 0x23), g.scratch) // global.get $scratch
	dst = append(dst, 0x41, 0x08, 0x76, 0x6b)     // i32.const 8; i32.shr_u; i32.sub
	dst = append(dst, 0x41, 0x01, 0x6b)           // i32.const 1; i32.sub
	dst = appendRefuel(dst, g)
	return appendU32(append(dst, 0x23), g.scratch) // global.get $scratch
}

// appendRefuel stores the fuel on the stack and, when it is spent, refills
// it, exits to Go and traps if the flag is set.
func appendRefuel(dst []byte, g checkGlobals) []byte {
	dst = appendU32(append(dst, 0x24), g.fuel) // global.set $fuel
	dst = appendU32(append(dst, 0x23), g.fuel) // global.get $fuel
	dst = append(dst, 0x41, 0x01, 0x48)        // i32.const 1; i32.lt_s
	dst = append(dst, 0x04, 0x40, 0x41)        // if; i32.const
	dst = appendS32(dst, Refill)
	dst = appendU32(append(dst, 0x24), g.fuel)       // global.set $fuel
	dst = append(dst, 0x41, 0x00, 0x40, 0x00, 0x1a)  // i32.const 0; memory.grow 0; drop
	dst = appendU32(append(dst, 0x23), g.flag)       // global.get $flag
	return append(dst, 0x04, 0x40, 0x00, 0x0b, 0x0b) // if; unreachable; end; end
}

// countImports counts the imported functions, globals and memories.
func countImports(b []byte) (functions, globals, memories uint32, err error) {
	err = eachImport(b, func(_, _ []byte, kind ImportKind, _ uint32) {
		switch kind {
		case ImportFunction:
			functions++
		case ImportMemory:
			memories++
		case ImportGlobal:
			globals++
		}
	})
	return functions, globals, memories, err
}

// eachImport reads an import section's body, calling fn with each
// import's module, name and kind, and for a function its type index, for
// a memory its minimum pages (see limits). It is the one reader of
// imports: the rewrite counts them with it, CheckSizes checks them with
// it, and Imports and ReadOutline list them with it.
func eachImport(b []byte, fn func(module, name []byte, kind ImportKind, typeOrMin uint32)) error {
	r := &reader{b: b}
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		module := r.bytes(int(r.u32()))
		name := r.bytes(int(r.u32()))
		kind := ImportKind(r.byte())
		var v uint32
		switch kind {
		case ImportFunction:
			v = r.u32()
		case ImportTable:
			r.reftype()
			r.limits()
		case ImportMemory:
			v = r.limits()
		case ImportGlobal:
			r.valtype()
			r.byte()
		case ImportTag:
			r.byte()
			r.u32()
		default:
			if r.err == nil {
				return fmt.Errorf("import %d: unknown kind 0x%02x", i, byte(kind))
			}
		}
		if r.err == nil {
			fn(module, name, kind, v)
		}
	}
	return r.err
}

// ImportKind is the kind of an import (the byte of its descriptor).
type ImportKind byte

// The kinds of import.
const (
	ImportFunction ImportKind = 0x00
	ImportTable    ImportKind = 0x01
	ImportMemory   ImportKind = 0x02
	ImportGlobal   ImportKind = 0x03
	ImportTag      ImportKind = 0x04 // exception handling
)

// String names the kind as the WebAssembly text format does, with
// "function" for func.
func (k ImportKind) String() string {
	switch k {
	case ImportFunction:
		return "function"
	case ImportTable:
		return "table"
	case ImportMemory:
		return "memory"
	case ImportGlobal:
		return "global"
	case ImportTag:
		return "tag"
	}
	return fmt.Sprintf("kind 0x%02x", byte(k))
}

// Import is one entry of a module's import section.
type Import struct {
	Module, Name string
	Kind         ImportKind
}

// Imports lists the imports of a module, of every kind, in the order of
// its import section. wazero's CompiledModule lists only imported
// functions and memories; a module importing a global or a table compiles
// and fails only when instantiated. The module should have passed
// CheckSizes (compiling it runs after), which bounds the count by the
// section's bytes; Imports checks that bound too before allocating.
func Imports(wasm []byte) ([]Import, error) {
	var imps []Import
	err := eachSection(wasm, func(id byte, at int, body []byte) error {
		if id != secImport {
			return nil
		}
		cr := &reader{b: body}
		n := cr.count("imports", 4)
		if cr.err != nil {
			return fmt.Errorf("import section at byte %d: %w", at, cr.err)
		}
		imps = make([]Import, 0, n)
		err := eachImport(body, func(module, name []byte, kind ImportKind, _ uint32) {
			imps = append(imps, Import{string(module), string(name), kind})
		})
		if err != nil {
			return fmt.Errorf("import section at byte %d: %w", at, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return imps, nil
}

// Export is one entry of a module's export section.
type Export struct {
	Name string
	Kind ImportKind // exports have the kinds imports have
}

// Exports lists the exports of a module, of every kind, in the order of
// its export section. wazero's CompiledModule lists only exported
// functions and memories. The module should have passed CheckSizes.
func Exports(wasm []byte) ([]Export, error) {
	var exps []Export
	err := eachSection(wasm, func(id byte, at int, body []byte) error {
		if id != secExport {
			return nil
		}
		r := &reader{b: body}
		for n := r.count("exports", 3); r.err == nil && n > 0; n-- {
			name := string(r.name())
			kind := ImportKind(r.byte())
			r.u32()
			if r.err == nil {
				exps = append(exps, Export{name, kind})
			}
		}
		if r.err != nil {
			return fmt.Errorf("export section at byte %d: %w", at, r.err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return exps, nil
}

func exportsName(b []byte, name string) bool {
	r := &reader{b: b}
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		if string(r.bytes(int(r.u32()))) == name {
			return true
		}
		r.byte()
		r.u32()
	}
	return false
}

// rewriteCode inserts the checks (see rewriteBody) into every function
// body. The module's own globals, imported and defined, are those below
// g.fuel; the checks' come after them.
func rewriteCode(b []byte, g checkGlobals, st *Stats) ([]byte, error) {
	r := &reader{b: b}
	n := r.u32()
	out := appendU32(make([]byte, 0, len(b)+len(b)/8), n)
	var body []byte
	for i := uint32(0); i < n; i++ {
		size := r.u32()
		fn := r.bytes(int(size))
		if r.err != nil {
			return nil, fmt.Errorf("code section, function %d: %w", i, r.err)
		}
		var err error
		body, err = rewriteBody(body[:0], fn, g, st)
		if err != nil {
			return nil, fmt.Errorf("code section, function %d: %w", i, err)
		}
		out = appendU32(out, uint32(len(body)))
		out = append(out, body...)
	}
	if r.off != len(b) {
		return nil, fmt.Errorf("code section: %d trailing bytes", len(b)-r.off)
	}
	return out, nil
}

// rewriteBody rewrites one function body: a check at its entry (unless
// weigh finds it needless) and after the block type of every loop, each
// taking the fuel weigh gives it, and a check before every bulk memory or
// table operation taking fuel by its length. It refuses a global.get or
// global.set of an index the module does not have: invalid as written, it
// would name the fuel or the flag once they are added, and a guest could
// then reset them and never be interrupted. A function of more than
// MaxFunctionCode instructions is refused before anything else.
func rewriteBody(dst, fn []byte, g checkGlobals, st *Stats) ([]byte, error) {
	r := &reader{b: fn}
	groups := r.u32()
	locals := 0
	for j := uint32(0); j < groups; j++ {
		locals += int(r.u32()) // CheckSizes bounds the sum
		r.valtype()
	}
	if r.err != nil {
		return nil, fmt.Errorf("locals: %w", r.err)
	}
	dst = append(dst, fn[:r.off]...)
	w, err := weigh(fn, r.off, locals)
	if err != nil {
		return nil, err
	}
	if err := checkFunctionCode(w.instructions, len(fn)); err != nil {
		return nil, err
	}
	if w.entryCheck {
		dst = appendCheck(dst, g, w.entry)
		st.Functions++
	} else {
		st.Skipped++
	}
	c := newControlCount(true, g.results, g.arity)
	loop := 0
	for r.off < len(r.b) {
		start := r.off
		op := r.byte()
		if err := r.skipImmediates(op); err != nil {
			return nil, fmt.Errorf("instruction at byte %d: %w", start, err)
		}
		if r.err != nil {
			return nil, fmt.Errorf("instruction at byte %d: %w", start, r.err)
		}
		if err := c.add(op, fn[start+1:r.off]); err != nil {
			return nil, err
		}
		if op == 0x23 || op == 0x24 { // global.get, global.set
			if n := (&reader{b: fn[start+1 : r.off]}).u32(); n >= g.fuel {
				return nil, fmt.Errorf("instruction at byte %d: %w: global index %d, but the module has %d globals", start, ErrMalformed, n, g.fuel)
			}
		}
		if op == 0xfc && bulkOp(fn[start+1:r.off]) {
			dst = appendBulkCheck(dst, g)
		}
		dst = append(dst, fn[start:r.off]...)
		if op == 0x03 {
			dst = appendCheck(dst, g, w.loops[loop])
			loop++
			st.Loops++
		}
	}
	return dst, nil
}

// bulkOp reports whether the 0xfc instruction with immediates imm takes
// time in proportion to a length on top of the stack: memory.init,
// memory.copy, memory.fill, table.init, table.copy, table.fill.
func bulkOp(imm []byte) bool {
	switch (&reader{b: imm}).u32() {
	case 8, 10, 11, 12, 14, 17:
		return true
	}
	return false
}

// checkExportedGlobals refuses an export of a global index the module does
// not have, which would export the fuel or the flag once they are added.
func checkExportedGlobals(b []byte, globals uint32) error {
	r := &reader{b: b}
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		r.bytes(int(r.u32()))
		kind := r.byte()
		idx := r.u32()
		if r.err == nil && kind == 0x03 && idx >= globals {
			return fmt.Errorf("%w: export %d names global %d, but the module has %d globals", ErrMalformed, i, idx, globals)
		}
	}
	return r.err
}

// MaxFunctionLoops, MaxFunctionBasicBlocks and MaxFunctionBlockWork bound
// what wazero's optimizing compiler is slow with in one function, which it
// cannot be stopped inside (see package plugin: the compilation deadline
// is seen between functions only).
//
// Its time grows faster than linearly with the loops of a function: 10 000
// loops (30 KB of code) took over a minute once instrumented, 20 000
// memory.fill (each a loop of its own in the compiled code) several
// minutes; memory.fill and table.fill count as loops. It also grows with
// the chains of basic blocks that have a single predecessor: the compiler
// looks a local, a global or the memory's base up by walking back through
// them (no cache until a block with several predecessors, where the value
// becomes a block parameter), and a value stays live across the blocks
// between its definition and its use: 8 000 br_if followed by 40 000
// local.get took 20 s, 20 000 br_if 17.6 s, 8 000 br_if between 10 000
// i32.const and their sums 4.8 s, 40 000 empty blocks one after the other
// 16 s. MaxFunctionBlockWork bounds that: the sum over a function's
// reachable instructions of the length of the chain of single-predecessor
// blocks that leads to the instruction's block (twice that for one that
// looks up a local, a global or the memory), plus, for each block made,
// the values then on the operand stack (an upper bound: stackEffect),
// plus what the joins cost: a block where paths join takes a parameter
// for each local read after it and for each value a branch to it carries,
// and wazero's pass removing redundant parameters costs about their
// square times the join's predecessors (an adversarial review: 1 000
// locals read after 12 000 joins, 22 s; a br_table carrying 1 000 values
// to 24 000 targets, 49 s), counted as the distinct locals the function
// reads, squared, times the edges into its joins, plus the square of the
// values each branch to a join carries, all that once per level of nested
// loops, since the pass repeats and removes a level each round (1 000
// nested loops around reads of 100 locals, 22.5 s). A block where paths join (a
// branch target with another way in, the end of an if, an interruption
// check) ends a chain. The time also grows with
// the blocks in all, where paths join or not (50 000: 18.5 s), which
// MaxFunctionBasicBlocks bounds.
//
// At the limits a function compiles in under 3 s on two cores (the
// slowest shapes measured: 25 000 blocks where paths join, 2.8 s; 8 300
// nested ifs, 2.6 s (8 333 one after the other, 1.2 s); 12 000 nested
// blocks each left by a br_if, 2.5 s; 9 400 br_if, 1.2 s; 100 locals read after 6 000 joins,
// 1.4 s; 10 000 values live across 6 000 br_if, 0.6 s; a br_table carrying
// 100 values to 10 000 targets, 0.3 s; 1 000 memory.fill, 0.2 s; 75
// locals read inside 100 nested loops, 0.15 s). Go's compiler joins paths often (its
// functions dispatch from one br_table and branch back to it) and leaves
// no value on the operand stack across blocks: of twelve plugins built
// on much of the standard library and popular modules (validator,
// x/net/html, expr, goldmark, protobuf, yaml, go-toml, Prometheus), the
// largest function has 12 897 basic blocks and a work of at most
// 1.6 million times its loop nesting plus one (under 5%; Go's functions
// read at most 18 distinct locals and nest at most 3 loops); Go
// never emits more than 3 loops in one, and up to 52 memory.fill.
const (
	MaxFunctionLoops       = 1000
	MaxFunctionBasicBlocks = 25000
	MaxFunctionBlockWork   = 1 << 27
)

// Basic blocks wazero's compiler (wazevo's frontend, wazero v1.12) makes:
// one for a block's end, two for a loop (header and exit), three for an if
// (then, else, end), two for a try_table and one per catch, one after each
// br_if (or br_on_null, br_on_non_null; two inside a try_table, whose
// leaving takes a block of its own), one per target of a br_table (but an
// empty one), three for memory.fill and table.fill (a loop copying the
// filled bytes onto themselves). The rewrite adds two ifs, six blocks, per
// check: at a function's entry, at each loop header and before each bulk
// memory or table operation; they are counted in MaxFunctionBasicBlocks
// whether or not the rewrite adds them. None is made for calls,
// call_indirect's checks, select, memory.copy or atomics (they exit or
// branch inside one block).
const (
	bbCheck = 6
	bbBlock = 1
	bbLoop  = 2
	bbIf    = 3
	bbTry   = 2
	bbBrIf  = 1
	bbFill  = 3
)

// controlCount counts a function's loops, basic blocks and work (see
// MaxFunctionBlockWork) against the limits, following its control flow:
// chain is the length of the chain of single-predecessor blocks the
// current instruction's block ends, dead that the instruction cannot be
// reached (wazero compiles none of it). checks says that the rewrite adds
// interruption checks (at loop headers and bulk operations), which end a
// chain.
type controlCount struct {
	checks             bool
	results            int // the most results of the module's function types
	arity              int // the most parameters or results of one
	loops, basic, work int
	// The instructions that made the basic blocks, by kind, for the error.
	blocks, ifs, brIfs, targets, fills, bulks int

	started bool
	chain   int
	dead    bool
	frames  []frame
	inTry   int
	// height bounds the values on the operand stack, of every open frame:
	// each is live across the blocks made until it is used, which the
	// compiler's register allocation pays for per block.
	height int
	// Where paths join, a block takes parameters: each local looked up
	// through it (locals: the locals the function reads), and the values
	// the branches to it carry. wazero's pass removing redundant ones
	// costs about parameters² × predecessors at each join: joinEdges
	// counts the edges into joins, carried the values² branches carry.
	locals    map[uint32]struct{}
	joinEdges int
	carried   int
	// The pass repeats until nothing changes, removing one level of
	// nested loops' parameters per round: openLoops counts the open
	// loops, deepest the most ever open at once.
	openLoops, deepest int
}

// frame is an open structured instruction.
type frame struct {
	op        byte // block, loop, if, try, try_table
	try       bool // a try_table: leaving it takes a block of its own
	openChain int  // the chain where it opened
	openDead  bool // its opening could not be reached
	// The stack's height below its values, the values it leaves, and
	// those a branch back to it (a loop) carries.
	openHeight, results, params int
	backEdges                   int
	// The branches to its end (not a loop's: those go to its header),
	// and the longest chain among them.
	edges, edgeChain int
	// An if's else: whether the then arm reached it, and its chain.
	hasElse, thenLive bool
	thenChain         int
}

// newControlCount counts a function the rewrite adds interruption checks
// to (checks) or not.
func newControlCount(checks bool, results, arity int) *controlCount {
	return &controlCount{checks: checks, results: results, arity: arity}
}

// open pushes a frame for a structured instruction whose block type is
// read from imm.
func (c *controlCount) open(op byte, imm []byte, try bool) {
	f := frame{op: op, try: try, openChain: c.chain, openDead: c.dead, openHeight: c.height}
	if len(imm) > 0 {
		switch imm[0] {
		case 0x40: // no results
		case 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f, 0x69, 0x63, 0x64:
			f.results = 1
		default: // a type index
			f.results, f.params = c.arity, c.arity
		}
	}
	c.frames = append(c.frames, f)
}

// base is the height of the stack below the innermost frame's values.
func (c *controlCount) base() int {
	if n := len(c.frames); n > 0 {
		return c.frames[n-1].openHeight
	}
	return 0
}

// stackEffect returns how many values the instruction op (immediates imm)
// takes off the operand stack and puts on it, at least and at most: exact
// for the core instructions, and taking none and putting one for the
// others (SIMD, atomics), an upper bound of the height. A call puts the
// most results any function type has.
func (c *controlCount) stackEffect(op byte, imm []byte) (pop, push int) {
	switch {
	case op == 0x04, op == 0x0d, op == 0x1a, op == 0x21, op == 0x24, op == 0xd6: // if, br_if, drop, local.set, global.set, br_on_non_null
		return 1, 0
	case op == 0x10: // call
		return 0, c.results
	case op == 0x11, op == 0x14: // call_indirect, call_ref
		return 1, c.results
	case op == 0x1b, op == 0x1c: // select
		return 3, 1
	case op == 0x20, op == 0x23, op == 0x3f, op >= 0x41 && op <= 0x44, op == 0xd0, op == 0xd2: // gets, memory.size, consts, ref.null, ref.func
		return 0, 1
	case op == 0x22, op == 0x25, op >= 0x28 && op <= 0x35, op == 0x40, op == 0xd1, op == 0xd4, op == 0xd5: // tee, table.get, loads, memory.grow, unary refs
		return 1, 1
	case op == 0x26, op >= 0x36 && op <= 0x3e: // table.set, stores
		return 2, 0
	case op == 0x45, op == 0x50, op >= 0x67 && op <= 0x69, op >= 0x79 && op <= 0x7b, op >= 0x8b && op <= 0x91, op >= 0x99 && op <= 0x9f, op >= 0xa7 && op <= 0xc4:
		return 1, 1 // unary, conversions
	case op >= 0x46 && op <= 0x4f, op >= 0x51 && op <= 0x66, op >= 0x6a && op <= 0x78, op >= 0x7c && op <= 0x8a, op >= 0x92 && op <= 0x98, op >= 0xa0 && op <= 0xa6, op == 0xd3:
		return 2, 1 // binary, comparisons, ref.eq
	case op == 0xfc:
		switch (&reader{b: imm}).u32() {
		case 0, 1, 2, 3, 4, 5, 6, 7: // saturating truncations
			return 1, 1
		case 8, 10, 11, 12, 14, 17: // memory.init/copy/fill, table.init/copy/fill
			return 3, 0
		case 9, 13: // data.drop, elem.drop
			return 0, 0
		case 15: // table.grow
			return 2, 1
		}
		return 0, 1
	case op <= 0x03, op >= 0x05 && op <= 0x0c, op == 0x0e, op == 0x0f, op == 0x12, op == 0x13, op == 0x15, op >= 0x18 && op <= 0x19, op == 0x1f:
		return 0, 0 // control: see add
	}
	return 0, 1
}

// branch records a branch to label l from the current block.
func (c *controlCount) branch(l uint32) {
	if c.dead || int(l) >= len(c.frames) {
		return // unreachable, or to the function's end
	}
	f := &c.frames[len(c.frames)-1-int(l)]
	if f.op == 0x03 { // to a loop's header, which becomes a join
		if f.backEdges++; f.backEdges == 1 {
			c.joinEdges++ // the way in
		}
		c.joinEdges++
		c.carried += f.params * f.params
		return
	}
	f.edges++
	f.edgeChain = max(f.edgeChain, c.chain)
	c.carried += f.results * f.results
}

// add counts the instruction op, whose immediates are imm.
func (c *controlCount) add(op byte, imm []byte) error {
	if !c.started {
		c.started = true
		c.basic = bbCheck // the function's entry check
	}
	basic := c.basic
	if !c.dead {
		c.work += (1 + lookups(op, imm)) * c.chain
		if op == 0x20 { // local.get
			i := (&reader{b: imm}).u32()
			if i >= MaxLocals+MaxParams {
				return fmt.Errorf("%w: local.get %d, past the %d locals and parameters a function can have", ErrMalformed, i, MaxLocals+MaxParams)
			}
			if c.locals == nil {
				c.locals = map[uint32]struct{}{}
			}
			c.locals[i] = struct{}{}
		}
		pop, push := c.stackEffect(op, imm)
		c.height = max(c.height-pop, c.base()) + push
	}
	switch op {
	case 0x02, 0x06: // block, try
		c.basic += bbBlock
		c.blocks++
		c.open(op, imm, false)
	case 0x1f: // try_table
		r := &reader{b: imm}
		r.blocktype()
		c.basic += bbTry + int(r.u32())
		c.blocks++
		c.inTry++
		c.open(op, imm, true)
	case 0x03:
		if c.loops++; c.loops > MaxFunctionLoops {
			return overLimit(fmt.Errorf("more than %d loops (memory.fill and table.fill included) in one function", MaxFunctionLoops))
		}
		c.basic += bbLoop + bbCheck
		c.open(op, imm, false)
		c.openLoops++
		c.deepest = max(c.deepest, c.openLoops)
		// The header: another way in only if something branches back
		// to it, which comes later; counted as one way in.
		c.chain++
		if c.checks {
			c.chain = 0 // the loop's check ends where its two paths join
		}
	case 0x04:
		c.basic += bbIf
		c.ifs++
		c.open(op, imm, false)
		c.chain++
	case 0x05, 0x07, 0x19: // else; catch, catch_all (a legacy try's arms)
		if n := len(c.frames); n > 0 {
			f := &c.frames[n-1]
			if op == 0x05 {
				f.hasElse, f.thenLive, f.thenChain = true, !c.dead, c.chain
			} else if !c.dead {
				f.edges++
				f.edgeChain = max(f.edgeChain, c.chain)
			}
			c.chain, c.dead, c.height = f.openChain+1, f.openDead, f.openHeight
		}
	case 0x0b, 0x18: // end, delegate (which ends a try)
		n := len(c.frames)
		if n == 0 {
			break // the function's end
		}
		f := c.frames[n-1]
		c.frames = c.frames[:n-1]
		if f.try {
			c.inTry--
		}
		if f.op == 0x03 {
			c.openLoops--
		}
		c.height = f.openHeight + f.results
		edges, chain := f.edges, f.edgeChain
		if !c.dead {
			edges, chain = edges+1, max(chain, c.chain)
		}
		if f.op == 0x04 {
			switch {
			case f.hasElse && f.thenLive:
				edges, chain = edges+1, max(chain, f.thenChain)
			case !f.hasElse && !f.openDead: // the way round the then arm
				edges, chain = edges+1, max(chain, f.openChain)
			}
		}
		switch {
		case edges >= 2:
			c.chain, c.dead = 0, false
			c.joinEdges += edges
			c.carried += f.results * f.results
		case edges == 1:
			c.chain, c.dead = chain+1, false
		default:
			c.dead = true
		}
	case 0x0c: // br
		c.branch((&reader{b: imm}).u32())
		c.dead = true
	case 0x0d, 0xd5, 0xd6: // br_if, br_on_null, br_on_non_null
		c.basic += bbBrIf
		c.brIfs++
		c.branch((&reader{b: imm}).u32())
		c.chain++
		if c.inTry > 0 {
			c.basic += bbBrIf
			c.chain++
		}
	case 0x0e: // br_table: a vector of labels, then the default
		r := &reader{b: imm}
		n := r.u32()
		for i := uint32(0); i <= n && r.err == nil; i++ {
			c.branch(r.u32())
		}
		if n > 0 { // an empty one is a jump
			c.basic += int(n) + 1
			c.targets += int(n) + 1
		}
		c.dead = true
	case 0x00, 0x0f, 0x08, 0x09, 0x0a, 0x12, 0x13, 0x15:
		// unreachable, return, throw, rethrow, throw_ref, return_call,
		// return_call_indirect, return_call_ref
		c.dead = true
	case 0xfc:
		if bulkOp(imm) {
			c.basic += bbCheck
			if c.checks {
				c.chain = 0 // the check ends where its two paths join
			}
			switch (&reader{b: imm}).u32() {
			case 11, 17: // memory.fill, table.fill: a loop in the compiled code
				c.basic += bbFill
				c.fills++
				if c.loops++; c.loops > MaxFunctionLoops {
					return overLimit(fmt.Errorf("more than %d loops (memory.fill and table.fill included) in one function", MaxFunctionLoops))
				}
				c.chain = 1 // the fill's exit, after its loop's header
			default:
				c.bulks++
			}
		}
	}
	if c.dead {
		c.height = c.base() // what the frame left on the stack is unreachable
	}
	// The values on the stack live across each block this made.
	c.work += (c.basic - basic) * c.height
	if c.basic > MaxFunctionBasicBlocks {
		return overLimit(fmt.Errorf("more than %d basic blocks in one function: %s", MaxFunctionBasicBlocks, c.kinds()))
	}
	if c.total() > MaxFunctionBlockWork {
		return overLimit(fmt.Errorf("more than %d units of compile work in one function (instructions × the single-predecessor blocks before them, and values × the blocks they live across: wazero's compiler takes time in their products): %s", MaxFunctionBlockWork, c.kinds()))
	}
	return nil
}

// total is the function's work so far: the chains and the values live
// across blocks (work), and the parameters of its joins, once per level
// of nested loops (wazero's pass over them repeats until nothing changes,
// and each round removes one level: loops nested 1 000 deep around reads
// of 100 locals took 22.5 s).
func (c *controlCount) total() int {
	n := len(c.locals)
	return c.work + (n*n*c.joinEdges+c.carried)*(c.deepest+1)
}

// lookups is how many values wazero's compiler looks up for the
// instruction op (immediates imm): a local's, a global's, or the memory's
// base and length.
func lookups(op byte, imm []byte) int {
	switch {
	case op == 0x20, op == 0x23, op == 0x3f: // local.get, global.get, memory.size
		return 1
	case op >= 0x28 && op <= 0x3e, op == 0xfd, op == 0xfe: // loads, stores, SIMD, atomics
		return 2
	case op == 0xfc:
		switch (&reader{b: imm}).u32() {
		case 8, 10, 11: // memory.init, memory.copy, memory.fill
			return 2
		}
	}
	return 0
}

// kinds says what made a function's basic blocks, for add's errors.
func (c *controlCount) kinds() string {
	var parts []string
	for _, k := range []struct {
		n    int
		what string
	}{
		{c.brIfs, "br_if"},
		{c.targets, "br_table targets"},
		{c.ifs, "if"},
		{c.loops, "loops"},
		{c.blocks, "blocks"},
		{c.fills, "memory.fill or table.fill"},
		{c.bulks, "other bulk memory or table operations"},
	} {
		if k.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", k.n, k.what))
		}
	}
	return strings.Join(parts, ", ") + " so far, with the interruption checks"
}

// checkControl applies the limits of controlCount and MaxFunctionCode to
// every function of a code section, for modules rewritten without the interruption checks
// (rewriteBody applies them otherwise). A function it cannot read to the
// end (an instruction it does not know: the reason such a module is not
// instrumented) is counted up to there; whether the rest is valid is
// wazero's to say, and the compilation deadline still bounds it.
func checkControl(b []byte, results, arity int) error {
	r := &reader{b: b}
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		fn := &reader{b: r.bytes(int(r.u32()))}
		groups := fn.u32()
		for j := uint32(0); j < groups && fn.err == nil; j++ {
			fn.u32()
			fn.valtype()
		}
		c := newControlCount(false, results, arity)
		instructions := 0
		for fn.off < len(fn.b) && fn.err == nil {
			start := fn.off
			op := fn.byte()
			if fn.skipImmediates(op) != nil {
				break
			}
			instructions++
			if err := c.add(op, fn.b[start+1:fn.off]); err != nil {
				return fmt.Errorf("code section, function %d: %w", i, err)
			}
		}
		if err := checkFunctionCode(instructions, len(fn.b)); err != nil {
			return fmt.Errorf("code section, function %d: %w", i, err)
		}
	}
	return r.err
}

// MaxFunctionCode is the most instructions (its final end included) one
// function may have. wazero's compiler takes time and memory in
// proportion to a function's instructions, even where none of the other
// limits counts anything (straight-line code: no block, no branch), and
// it cannot be stopped inside a function: an audit's function of
// 1 000 000 i32.store of constants (3 million instructions, a 7 MB module)
// took 59 s and 5.3 GB of heap to compile. At the limit the slowest shape
// measured (stores of constants) compiles in about 3 s with a peak heap of
// 420 MB on two cores; Go's largest function (in the runtime, so in every
// Go guest) has 20 599 instructions, under a twelfth of it.
const MaxFunctionCode = 1 << 18

// checkFunctionCode refuses a function of more than MaxFunctionCode
// instructions (size is its body's bytes, for the error).
func checkFunctionCode(instructions, size int) error {
	if instructions > MaxFunctionCode {
		return overLimit(fmt.Errorf("%d instructions in one function (a body of %d bytes), more than %d: wazero's compiler takes time and memory in proportion", instructions, size, MaxFunctionCode))
	}
	return nil
}

// Fuel is taken by the work a check covers, not one unit per check, so
// that the time between two exits to Go stays bounded whatever one loop
// iteration does: one unit per costUnit bytes of code a check covers, and
// leafBytes for each call, which may run a function that has no check of
// its own (a leaf of at most leafBytes, below).
const (
	costUnit  = 1024
	leafBytes = 128
)

// weights are the fuel the checks of one function take (see weigh).
type weights struct {
	entryCheck bool
	entry      int32   // the entry check's weight
	loops      []int32 // each loop header check's, in order
	// instructions counts the function's instructions, its final end
	// included, for MaxFunctionCode.
	instructions int
}

// weigh reads a function body (instructions from off) and weighs its
// checks. Code inside a loop's body (not inside a loop nested in it) can
// run once per iteration and is charged to that loop's header check; the
// rest of the function runs at most once per call and is charged to the
// entry check, with 8 bytes per local (which each call sets to zero: a
// function of 50 000 locals costs a call that much). Every instruction
// counts its bytes, and each call instruction leafBytes more for the
// callee it may enter without a check.
//
// The entry check is left out where it is needless:
//   - a function with no call and no loop of at most leafBytes runs each
//     of its instructions at most once (what calls it pays for it), or
//   - a loop header is reached before any instruction that calls or
//     branches (only straight-line code and block openings precede it):
//     every invocation passes that loop's check before it can call
//     anything, and that check takes the entry's weight too. Go's
//     compiler starts nearly every function this way.
func weigh(fn []byte, off, locals int) (weights, error) {
	var w weights
	r := &reader{b: fn, off: off}
	var (
		loopBytes []int        // per loop, in order
		outside   = locals * 8 // bytes outside every loop; each call sets its locals to zero
		enclosing []int        // per open block, the loop enclosing it (-1: none)
		cur       = -1         // the innermost open loop
		calls     bool
		loopFirst bool
		straight  = true
	)
	for r.off < len(r.b) {
		start := r.off
		op := r.byte()
		if err := r.skipImmediates(op); err != nil {
			return w, fmt.Errorf("instruction at byte %d: %w", start, err)
		}
		if r.err != nil {
			return w, fmt.Errorf("instruction at byte %d: %w", start, r.err)
		}
		w.instructions++
		cost := r.off - start
		switch op {
		case 0x10, 0x11, 0x12, 0x13, 0x14, 0x15: // call, call_indirect, return_call*, call_ref*
			cost += leafBytes
			calls = true
			straight = false
		case 0x03: // loop
			if straight && len(loopBytes) == 0 {
				loopFirst = true
			}
			straight = false
		case 0x02, 0x01: // block, nop
		default:
			if op <= 0x1f || op >= 0xd5 && op <= 0xd6 { // other control instructions
				straight = false
			}
		}
		if cur < 0 {
			outside += cost
		} else {
			loopBytes[cur] += cost
		}
		switch op {
		case 0x02, 0x04, 0x06, 0x1f: // block, if, try, try_table
			enclosing = append(enclosing, cur)
		case 0x03:
			enclosing = append(enclosing, cur)
			loopBytes = append(loopBytes, 0)
			cur = len(loopBytes) - 1
		case 0x0b, 0x18: // end, delegate (which ends a try)
			if n := len(enclosing); n > 0 {
				cur = enclosing[n-1]
				enclosing = enclosing[:n-1]
			}
		}
	}
	weight := func(bytes int) int32 { return int32(min(1+bytes/costUnit, Refill)) }
	w.entry = weight(outside)
	for _, b := range loopBytes {
		w.loops = append(w.loops, weight(b))
	}
	switch {
	case loopFirst:
		w.loops[0] = min(w.loops[0]+w.entry, Refill)
	case !calls && len(loopBytes) == 0 && outside <= leafBytes:
	default:
		w.entryCheck = true
	}
	return w, nil
}

type reader struct {
	b   []byte
	off int
	err error
}

var errTruncated = errors.New("truncated")

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if r.off >= len(r.b) {
		r.err = errTruncated
		return 0
	}
	v := r.b[r.off]
	r.off++
	return v
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b)-r.off < n {
		r.err = errTruncated
		return nil
	}
	v := r.b[r.off : r.off+n]
	r.off += n
	return v
}

// leb reads an LEB128 number of at most maxBits bits, returning it raw.
func (r *reader) leb(maxBits int) uint64 {
	var v uint64
	for shift := 0; ; shift += 7 {
		if shift >= maxBits+7 {
			r.err = errors.New("LEB128 number too long")
			return 0
		}
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			return v
		}
	}
}

func (r *reader) u32() uint32 {
	v := r.leb(32)
	if v > math.MaxUint32 {
		r.err = errors.New("u32 out of range")
	}
	return uint32(v)
}

// valtype reads a value type and returns its first byte (a reference
// type with a heap type returns 0x63 or 0x64).
func (r *reader) valtype() byte {
	t := r.byte()
	switch t {
	case 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f, 0x69:
	case 0x63, 0x64: // (ref null ht), (ref ht)
		r.leb(33)
	default:
		if r.err == nil {
			r.err = fmt.Errorf("unknown value type 0x%02x", t)
		}
	}
	return t
}

func (r *reader) reftype() { r.valtype() }

// limits reads a table's or memory's limits (64-bit ones too) and returns
// the minimum, capped at 65 536 (a memory's most pages).
func (r *reader) limits() uint32 {
	flags := r.byte()
	var lo uint64
	if flags&0x04 != 0 { // memory64
		lo = r.leb(64)
		if flags&0x01 != 0 {
			r.leb(64)
		}
	} else {
		lo = uint64(r.u32())
		if flags&0x01 != 0 {
			r.u32()
		}
	}
	return uint32(min(lo, 65536))
}

// blocktype skips a block type: empty, a value type, or a type index.
func (r *reader) blocktype() {
	if r.off >= len(r.b) {
		r.err = errTruncated
		return
	}
	switch c := r.b[r.off]; c {
	case 0x40, 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f, 0x69:
		r.off++
	case 0x63, 0x64:
		r.off++
		r.leb(33)
	default:
		r.leb(33) // s33 type index
	}
}

func (r *reader) memarg() {
	align := r.u32()
	if align&0x40 != 0 { // multi-memory: a memory index follows
		r.u32()
	}
	r.leb(64) // offset (u64 with memory64)
}

// skipImmediates advances past the immediates of opcode op.
func (r *reader) skipImmediates(op byte) error {
	switch {
	case op == 0x00, op == 0x01, op == 0x05, op == 0x0b, op == 0x0f, op == 0x19, op == 0x0a,
		op == 0x1a, op == 0x1b, op == 0xd1, op == 0xd3, op == 0xd4,
		op >= 0x45 && op <= 0xc4:
		// unreachable nop else end return catch_all throw_ref drop select
		// ref.is_null ref.as_non_null ref.eq, numeric: no immediates
	case op == 0x02, op == 0x03, op == 0x04, op == 0x06: // block loop if try
		r.blocktype()
	case op == 0x07, op == 0x08, op == 0x09, op == 0x18, // catch throw rethrow delegate
		op == 0x0c, op == 0x0d, // br br_if
		op == 0x10, op == 0x12, // call return_call
		op == 0x14, op == 0x15, // call_ref return_call_ref
		op == 0xd5, op == 0xd6, // br_on_null br_on_non_null
		op >= 0x20 && op <= 0x26, // local.*, global.*, table.get/set
		op == 0xd2:               // ref.func
		r.u32()
	case op == 0x0e: // br_table
		n := r.u32()
		for i := uint32(0); i <= n && r.err == nil; i++ {
			r.u32()
		}
	case op == 0x11, op == 0x13: // call_indirect return_call_indirect
		r.u32()
		r.u32()
	case op == 0x1c: // select t*
		n := r.u32()
		for i := uint32(0); i < n && r.err == nil; i++ {
			r.valtype()
		}
	case op == 0x1f: // try_table bt vec(catch)
		r.blocktype()
		n := r.u32()
		for i := uint32(0); i < n && r.err == nil; i++ {
			switch kind := r.byte(); kind {
			case 0x00, 0x01:
				r.u32()
				r.u32()
			case 0x02, 0x03:
				r.u32()
			default:
				return fmt.Errorf("try_table: unknown catch kind 0x%02x", kind)
			}
		}
	case op >= 0x28 && op <= 0x3e: // loads and stores
		r.memarg()
	case op == 0x3f, op == 0x40: // memory.size memory.grow
		r.u32()
	case op == 0x41: // i32.const
		r.leb(32)
	case op == 0x42: // i64.const
		r.leb(64)
	case op == 0x43:
		r.bytes(4)
	case op == 0x44:
		r.bytes(8)
	case op == 0xd0: // ref.null ht
		r.leb(33)
	case op == 0xfc:
		return r.skipFC()
	case op == 0xfd:
		return r.skipSIMD()
	case op == 0xfe:
		return r.skipAtomic()
	default:
		return fmt.Errorf("unsupported opcode 0x%02x", op)
	}
	return nil
}

func (r *reader) skipFC() error {
	switch sub := r.u32(); {
	case sub <= 7: // saturating truncations
	case sub == 8: // memory.init data mem
		r.u32()
		r.u32()
	case sub == 9, sub == 13, sub == 15, sub == 16, sub == 17: // data.drop elem.drop table.grow/size/fill
		r.u32()
	case sub == 10, sub == 12, sub == 14: // memory.copy table.init table.copy
		r.u32()
		r.u32()
	case sub == 11: // memory.fill
		r.u32()
	default:
		return fmt.Errorf("unsupported opcode 0xfc %d", sub)
	}
	return nil
}

// skipSIMD reads a SIMD instruction as wazero runs it, which is not quite
// as the specification writes it: wazero reads the opcode after 0xfd as one
// byte, not as LEB128 (its numbering is the instructions' values, all
// below 256), so 0xfd 0x8c 0x01 is i16x8.shr_s and then 0x01, a nop. An
// encoding on which the two readings part (0xfd 0x8c 0x00: v128.const and
// 16 bytes of immediate as LEB128, i16x8.shr_s then code to wazero) would
// hide code from the rewriter, loops and global.set included: an opcode
// byte of 0x80 or more must be followed by the 0x01 that ends its
// canonical encoding, or the module is refused as malformed.
func (r *reader) skipSIMD() error {
	sub := uint32(r.byte())
	if sub >= 0x80 {
		if next := r.byte(); next != 0x01 && r.err == nil {
			return fmt.Errorf("%w: SIMD opcode 0xfd 0x%02x 0x%02x is not encoded canonically (a second byte of 0x01)", ErrMalformed, sub, next)
		}
	}
	switch {
	case sub <= 11, sub == 92, sub == 93: // loads, stores, load zero
		r.memarg()
	case sub == 12, sub == 13: // v128.const, i8x16.shuffle
		r.bytes(16)
	case sub >= 21 && sub <= 34: // extract/replace lane
		r.byte()
	case sub >= 84 && sub <= 91: // load/store lane
		r.memarg()
		r.byte()
	default: // every other SIMD instruction has no immediate
	}
	return nil
}

func (r *reader) skipAtomic() error {
	switch sub := r.u32(); {
	case sub == 3: // atomic.fence
		r.byte()
	case sub <= 2, sub >= 0x10 && sub <= 0x4e:
		r.memarg()
	default:
		return fmt.Errorf("unsupported opcode 0xfe %d", sub)
	}
	return nil
}

func appendS32(dst []byte, v int32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(dst, c)
		}
		dst = append(dst, c|0x80)
	}
}

func appendU32(dst []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			dst = append(dst, c|0x80)
			continue
		}
		return append(dst, c)
	}
}
