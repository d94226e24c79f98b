package instrument

import (
	"bytes"
	"errors"
	"fmt"
)

// A new instance's memory is its data segments copied into zeroed pages:
// for a Go guest about 2.6 MB written into fresh memory at every instance
// the pool creates, two thirds of the time a new instance takes, and as
// many private pages per instance, most of which the guest only ever
// reads (type descriptors, strings, tables). With Options.DataImage,
// Rewrite moves the data segments out of the module into a custom section,
// ImageSection, which the engine ignores; the runtime lays them out once
// per module (see DataImage) and maps that image copy-on-write under each
// instance's memory, so a page is copied only when the guest writes it.

// ImageSection names the custom section holding a module's data image.
// Rewrite drops a section of this name from its input, so the one in its
// output is always Rewrite's own.
const ImageSection = "greenroom.data"

// Segment is data an instance's memory starts with at Offset.
type Segment struct {
	Offset uint32
	Data   []byte
}

// imageSection returns the custom section (its body) holding segs.
func imageSection(segs []dataSegment) []byte {
	body := appendU32(nil, uint32(len(ImageSection)))
	body = append(body, ImageSection...)
	body = appendU32(body, uint32(len(segs)))
	for _, s := range segs {
		body = appendU32(body, s.off)
		body = appendU32(body, uint32(len(s.data)))
		body = append(body, s.data...)
	}
	return body
}

// withinMemory says whether every segment lies inside the first
// minPages pages: instantiation would fail otherwise, and the data section
// is left where the engine checks it.
func withinMemory(segs []dataSegment, minPages uint32) bool {
	limit := uint64(minPages) * 65536
	for _, s := range segs {
		if uint64(s.off)+uint64(len(s.data)) > limit {
			return false
		}
	}
	return true
}

// DataImage returns the data segments a module Rewrite wrote with
// Options.DataImage keeps in its ImageSection, in address order and not
// overlapping, each inside the first minPages pages of memory (the
// module's initial memory, which the caller knows from the compiled
// module). The segments' Data are slices of wasm. ok is false when the
// module has no such section: its data, if any, is in its data section,
// and the engine copies it as usual. A section that breaks these rules is
// an error (a module that was not Rewrite's output, or a damaged one).
func DataImage(wasm []byte, minPages uint32) (segs []Segment, ok bool, err error) {
	if len(wasm) < 8 {
		return nil, false, errors.New("not a WebAssembly module")
	}
	r := &reader{b: wasm, off: 8}
	var body []byte
	for r.off < len(r.b) {
		id := r.byte()
		n := r.u32()
		b := r.bytes(int(n))
		if r.err != nil {
			return nil, false, fmt.Errorf("section at byte %d: %w", r.off, r.err)
		}
		if id != secCustom {
			continue
		}
		cr := &reader{b: b}
		name := cr.bytes(int(cr.u32()))
		if cr.err != nil || !bytes.Equal(name, []byte(ImageSection)) {
			continue
		}
		if body != nil {
			return nil, false, fmt.Errorf("more than one %s section", ImageSection)
		}
		body = b[cr.off:]
	}
	if body == nil {
		return nil, false, nil
	}
	sr := &reader{b: body}
	count := sr.u32()
	if sr.err == nil && uint64(count) > uint64(len(body)) {
		return nil, false, fmt.Errorf("%s section: %d segments in %d bytes", ImageSection, count, len(body))
	}
	limit := uint64(minPages) * 65536
	end := uint64(0)
	segs = make([]Segment, 0, count)
	for i := uint32(0); i < count; i++ {
		off := sr.u32()
		data := sr.bytes(int(sr.u32()))
		if sr.err != nil {
			return nil, false, fmt.Errorf("%s section: segment %d: %w", ImageSection, i, sr.err)
		}
		if uint64(off) < end {
			return nil, false, fmt.Errorf("%s section: segment %d at %d overlaps the one before it or is out of order", ImageSection, i, off)
		}
		end = uint64(off) + uint64(len(data))
		if end > limit {
			return nil, false, fmt.Errorf("%s section: segment %d ends at byte %d, past the module's initial memory of %d bytes", ImageSection, i, end, limit)
		}
		segs = append(segs, Segment{Offset: off, Data: data})
	}
	if sr.err == nil && sr.off != len(body) {
		return nil, false, fmt.Errorf("%s section: %d trailing bytes", ImageSection, len(body)-sr.off)
	}
	if sr.err != nil {
		return nil, false, fmt.Errorf("%s section: %w", ImageSection, sr.err)
	}
	return segs, true, nil
}

// WithoutImage returns wasm without its ImageSection when that section is
// the module's last, as Rewrite writes it: a prefix of wasm, no copy. The
// engine has no use for the section, and given it, wazero would copy it
// and keep the copy for as long as the compiled module lives (it keeps
// every custom section while its DWARF support is on, the default), as
// well as hash it into its cache key at every load. Any other module is
// returned as it is.
func WithoutImage(wasm []byte) []byte {
	cut := -1
	err := eachSection(wasm, func(id byte, at int, body []byte) error {
		cut = -1
		if id != secCustom {
			return nil
		}
		r := &reader{b: body}
		if name := r.bytes(int(r.u32())); r.err == nil && bytes.Equal(name, []byte(ImageSection)) {
			cut = at
		}
		return nil
	})
	if err != nil || cut < 0 {
		return wasm
	}
	return wasm[:cut:cut]
}
