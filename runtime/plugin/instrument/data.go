package instrument

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
)

// Go's linker splits a module's data into a segment per run of non-zero
// bytes, leaving the zeros between them to the zero-filled memory: a Go
// plugin has about 65,000 data segments for under 2 MB of data. The engine
// decodes, validates and evaluates the offset of each one when it compiles
// the module, and copies each one into every new instance's memory, which
// made data segments a fifth of a plugin's start-up. mergeData joins
// segments separated by short runs of zeros into one, writing the zeros
// out, which leaves the memory an instance starts with byte for byte the
// same.
//
// The zeros it writes out are at most as many as the segments' own bytes
// (or mergeAllowance, if more), the shortest gaps joined first, so a data
// section at most doubles, plus mergeAllowance: a module of empty segments
// 256 bytes apart (4.19 MB of them over 128 MiB of memory) became a 129 MB
// module when every short gap was joined, and the engine keeps a loaded
// module's data for as long as it runs. A Go guest's gaps add up to about
// a third of its data, and all are joined.

// MergeGap is the longest run of zeros between two data segments that
// mergeData writes out to join them. Each join saves the engine one
// segment (its header, its offset expression, one copy per instance) and
// costs this many zero bytes at most in the module.
const MergeGap = 256

// mergeAllowance is how many zeros mergeData may write out in all when
// the segments' own bytes are fewer.
const mergeAllowance = 1 << 16

// dataSegment is an active data segment of memory 0 at a constant offset.
type dataSegment struct {
	off  uint32
	data []byte
}

// mergeData returns the data section body b with adjacent segments merged
// (see MergeGap), and how many segments it had and has. It returns b as it
// is when merging could change what memory holds or which segment an
// instruction names, that is unless every segment is active, for memory 0,
// at an i32.const offset, and no two overlap; and unless
// the memory is the module's own (an imported one need not start zeroed)
// and no data count section exists (memory.init and data.drop, which need
// one, name segments by index).
//
// When it merges, it also returns the merged segments (their data slices of
// one new buffer), in address order; otherwise segs is nil.
func mergeData(b []byte, importedMemory, dataCount bool) (out []byte, segs []dataSegment, before, after int, err error) {
	r := &reader{b: b}
	n := r.u32()
	if r.err != nil {
		return nil, nil, 0, 0, r.err
	}
	if importedMemory || dataCount {
		return b, nil, int(n), int(n), nil
	}
	segs = make([]dataSegment, 0, n)
	for i := uint32(0); i < n; i++ {
		flags := r.u32()
		if flags != 0 {
			return b, nil, int(n), int(n), r.err
		}
		// The offset must be exactly "i32.const c; end".
		if r.byte() != 0x41 {
			return b, nil, int(n), int(n), r.err
		}
		off := uint32(int32(r.s32()))
		if r.byte() != 0x0b {
			return b, nil, int(n), int(n), r.err
		}
		data := r.bytes(int(r.u32()))
		if r.err != nil {
			return nil, nil, 0, 0, fmt.Errorf("data segment %d: %w", i, r.err)
		}
		segs = append(segs, dataSegment{off, data})
	}
	if r.off != len(b) {
		return nil, nil, 0, 0, fmt.Errorf("data section: %d trailing bytes", len(b)-r.off)
	}
	// Go does not write its segments in address order. Segments that do
	// not overlap write each byte once, so their order does not matter
	// (were one out of bounds, instantiation fails either way: the merged
	// segment holding it ends where the furthest of its parts did).
	slices.SortStableFunc(segs, func(a, b dataSegment) int { return cmp.Compare(a.off, b.off) })
	end := uint64(0)
	for _, s := range segs {
		if uint64(s.off) < end {
			return b, nil, int(n), int(n), nil // overlaps
		}
		end = uint64(s.off) + uint64(len(s.data))
	}

	// join[i] says whether segment i is joined to the one before it: the
	// gaps of at most MergeGap zeros, shortest first, while the zeros
	// written out stay within the segments' own bytes (or mergeAllowance).
	budget := uint64(0)
	gaps := make([]int, 0, len(segs))
	for i, s := range segs {
		budget += uint64(len(s.data))
		if i > 0 && gapBefore(segs, i) <= MergeGap {
			gaps = append(gaps, i)
		}
	}
	budget = max(budget, mergeAllowance)
	slices.SortStableFunc(gaps, func(a, b int) int { return cmp.Compare(gapBefore(segs, a), gapBefore(segs, b)) })
	join := make([]bool, len(segs))
	for _, i := range gaps {
		gap := gapBefore(segs, i)
		if gap > budget {
			break
		}
		budget -= gap
		join[i] = true
	}

	// The merged segments' bytes, one after the other, in all.
	type span struct{ off, start, end uint32 }
	var all []byte
	merged := make([]span, 0, len(segs)/8+1)
	for i, s := range segs {
		if join[i] {
			m := &merged[len(merged)-1]
			all = append(all, make([]byte, gapBefore(segs, i))...)
			all = append(all, s.data...)
			m.end = uint32(len(all))
			continue
		}
		start := uint32(len(all))
		all = append(all, s.data...)
		merged = append(merged, span{s.off, start, uint32(len(all))})
	}

	out = appendU32(make([]byte, 0, len(b)), uint32(len(merged)))
	msegs := make([]dataSegment, len(merged))
	for i, m := range merged {
		out = append(out, 0x00, 0x41)
		out = appendS32(out, int32(m.off))
		out = append(out, 0x0b)
		out = appendU32(out, m.end-m.start)
		out = append(out, all[m.start:m.end]...)
		msegs[i] = dataSegment{m.off, all[m.start:m.end]}
	}
	return out, msegs, len(segs), len(merged), nil
}

// gapBefore is the number of bytes between segment i-1 of segs, sorted
// and not overlapping, and segment i.
func gapBefore(segs []dataSegment, i int) uint64 {
	return uint64(segs[i].off) - uint64(segs[i-1].off) - uint64(len(segs[i-1].data))
}

// s32 reads a signed LEB128 32-bit number.
func (r *reader) s32() int32 {
	var v int64
	shift := 0
	for {
		if shift >= 35 {
			r.err = errors.New("LEB128 number too long")
			return 0
		}
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= int64(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			if shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			break
		}
	}
	if v < math.MinInt32 || v > math.MaxInt32 {
		r.err = errors.New("s32 out of range")
		return 0
	}
	return int32(v)
}
