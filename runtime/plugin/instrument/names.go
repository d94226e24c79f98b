package instrument

import (
	"unicode/utf8"
)

// MaxName is the longest function name the rewrite keeps in a module's
// "name" section, and MaxModuleName the longest module name; a longer
// one is cut (at a UTF-8 boundary) to that many bytes. wazero writes those names into the wasm stack trace
// of every trap, 30 frames of them, each frame with the module's name and
// its function's: an audit's module naming a function with 1 MiB made
// every trap in it a 31 MB error (121 MB of the host's heap), which the
// runtime logged whole, at each request. Go's names are shorter (a hello
// plugin's longest, a generic function's, 446 bytes).
const MaxName = 1024

// MaxModuleName is shorter: wazero, at a module's first trap, makes each
// of its functions a name of its own that begins with the module's (a
// module of 262 144 functions named with 1 MiB would have asked for 256
// GiB).
const MaxModuleName = 64

// cutNames returns the body of a "name" custom section (its name
// included) with its module name and function names cut to MaxName
// and MaxModuleName bytes, and without its local names: wazero reads
// those only to name parameters, which nothing here shows, and at a
// module's first trap it looked up each function's in the whole list of
// them (100 000 functions with an empty map each, 2 bytes apiece, made
// that trap take 2.1 s). The other subsections are kept as they are. A section it cannot
// read is dropped (nil): names are for stack traces only, and wazero
// reads such a section as best it can.
func cutNames(body []byte) []byte {
	r := &reader{b: body}
	name := r.name()
	if r.err != nil || string(name) != "name" {
		return nil
	}
	long := false
	for sr := (&reader{b: body, off: r.off}); sr.off < len(sr.b) && sr.err == nil; {
		id := sr.byte()
		sub := &reader{b: sr.name()}
		switch id {
		case 0:
			if len(sub.name()) > MaxModuleName {
				long = true
			}
		case 2:
			long = true // dropped
		case 1:
			for k := sub.count("names", 2); k > 0 && sub.err == nil; k-- {
				sub.u32()
				if len(sub.name()) > MaxName {
					long = true
				}
			}
		}
		if sr.err != nil || sub.err != nil {
			return nil
		}
	}
	if !long {
		return body
	}
	out := append([]byte(nil), body[:r.off]...)
	for r.off < len(r.b) {
		id := r.byte()
		raw := r.name()
		sub := &reader{b: raw}
		var nb []byte
		switch id {
		case 0:
			nb = appendName(nil, sub.name(), MaxModuleName)
		case 1:
			k := sub.count("names", 2)
			nb = appendU32(nil, k)
			for ; k > 0; k-- {
				nb = appendU32(nb, sub.u32())
				nb = appendName(nb, sub.name(), MaxName)
			}
		case 2:
			continue
		default:
			nb = raw
		}
		out = append(out, id)
		out = appendU32(out, uint32(len(nb)))
		out = append(out, nb...)
	}
	return out
}

// appendName appends name, cut to most bytes, length-prefixed.
func appendName(dst, name []byte, most int) []byte {
	if len(name) > most {
		n := most
		for n > 0 && !utf8.RuneStart(name[n]) {
			n--
		}
		name = name[:n]
	}
	return append(appendU32(dst, uint32(len(name))), name...)
}
