package runtime

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/greenroom-dev/greenroom/runtime/plugin"
)

// sumIndex remembers the sha256 of plugin modules by file identity
// (device, inode, size, modification and change times, see fileIdentity),
// in dir, one small file per module path. A restart then neither reads nor
// hashes a module that did not change: with the rewritten module in the
// engine's cache, nothing needs the original bytes. (Reading and hashing
// five Go modules was about 7% of a warm start's CPU.) Writing to a file or
// replacing it changes its change time, which user code cannot set, so an
// entry never vouches for other bytes; this is the check git's index and
// build tools rely on. Where the platform gives no identity, every load
// reads and hashes the module.
//
// An entry carries a checksum over its line and the module's path, so a
// damaged entry (or one copied from another path) is a miss, deleted with
// a warning. Whoever can write the directory can still forge an entry,
// checksum included: like the rest of runtime.cache_dir it must be
// writable by greenroom's user only. When a remembered sum turns out not
// to be the file's (the pin disagrees, or the bytes read do not hash to
// it), plugin.Load reads and hashes the file and goes on with its true
// sum, and read deletes the wrong entry with a warning.
type sumIndex struct {
	dir string
	log logrus.FieldLogger // nil: the standard logger
}

// fileID identifies a file's contents without reading them.
type fileID struct {
	key     string
	size    int
	changed time.Time // the change time (ctime)
}

// settle is how long after its last change a file's identity is trusted.
// File times come from a clock that ticks every few milliseconds, so two
// writes within one tick can leave the same times; a file that changed
// this recently is hashed again next time instead (git's "racy" case).
var settle = 2 * time.Second

// wasmSource is a plugin module: its sha256 and size, and its bytes unless
// the index made reading them unnecessary (then read gets them).
type wasmSource struct {
	sum  string
	size int
	wasm []byte
	read func() ([]byte, error)
}

// load returns the module at path.
func (x sumIndex) load(path string) (wasmSource, error) {
	before, known := fileIdentity(path)
	if known {
		if sum, ok := x.lookup(path, before.key); ok {
			return wasmSource{sum: sum, size: before.size, read: func() ([]byte, error) {
				b, err := plugin.ReadModule(path)
				if err != nil {
					return nil, err
				}
				if got := plugin.SHA256(b); got != sum {
					// The caller (plugin.Load) goes on with these bytes
					// under their own sum. If the file is still the one
					// the entry named, the entry was wrong.
					if now, ok := fileIdentity(path); ok && now == before {
						x.discard(path, "the file's sha256 is "+got+", not the remembered "+sum)
						if time.Since(before.changed) > settle {
							x.store(path, before.key, got)
						}
					}
				}
				return b, nil
			}}, nil
		}
	}
	wasm, err := plugin.ReadModule(path)
	if err != nil {
		return wasmSource{}, err
	}
	sum := plugin.SHA256(wasm)
	// Only bytes read from a file that did not change meanwhile, nor
	// shortly before, are remembered under its identity.
	if after, ok := fileIdentity(path); known && ok && after == before && time.Since(before.changed) > settle {
		x.store(path, before.key, sum)
	}
	return wasmSource{sum: sum, size: len(wasm), wasm: wasm}, nil
}

// entry is the index file for path, and path made absolute.
func (x sumIndex) entry(path string) (string, string) {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	h := sha256.Sum256([]byte(path))
	return filepath.Join(x.dir, hex.EncodeToString(h[:16])), path
}

// entryPrefix starts every entry; a format change changes it. An entry is
// one line: entryPrefix, the file's identity, its sha256, and check over
// them and the module's absolute path, separated by single spaces.
const entryPrefix = "greenroom-sum-v2 "

// oldPrefixes start the entries of earlier formats: misses, rewritten
// without a warning.
var oldPrefixes = []string{"greenroom-sum-v1 "}

// check is the checksum of an entry's line up to its last space (line)
// for the module at abs: 32 hex digits.
func check(abs, line string) string {
	h := sha256.Sum256([]byte(abs + "\x00" + line))
	return hex.EncodeToString(h[:16])
}

// lookup returns the sum remembered for path under identity id. An entry
// that is damaged is deleted, with a warning; one for another identity
// (the file changed) or of an earlier format is a plain miss.
func (x sumIndex) lookup(path, id string) (string, bool) {
	if x.dir == "" {
		return "", false
	}
	name, abs := x.entry(path)
	b, err := plugin.ReadRegular(name)
	if err != nil {
		return "", false
	}
	s := string(b)
	for _, p := range oldPrefixes {
		if strings.HasPrefix(s, p) {
			return "", false
		}
	}
	line, ok := strings.CutSuffix(s, "\n")
	var fields []string
	if ok {
		fields = strings.Split(strings.TrimPrefix(line, entryPrefix), " ")
	}
	if !ok || !strings.HasPrefix(line, entryPrefix) || len(fields) != 3 || strings.ContainsRune(line, '\n') ||
		check(abs, line[:strings.LastIndexByte(line, ' ')]) != fields[2] {
		x.discard(path, "malformed, or its checksum does not match")
		return "", false
	}
	sum := fields[1]
	if _, err := hex.DecodeString(sum); err != nil || len(sum) != 64 || strings.ToLower(sum) != sum {
		x.discard(path, "not a sha256")
		return "", false
	}
	if fields[0] != id {
		return "", false
	}
	return sum, true
}

// discard deletes path's entry, with a warning naming it and why.
func (x sumIndex) discard(path, why string) {
	name, _ := x.entry(path)
	log := x.log
	if log == nil {
		log = logrus.StandardLogger()
	}
	log = log.WithFields(logrus.Fields{"entry": name, "module": path, "damage": why})
	if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		log = log.WithError(err)
	}
	log.Warn("discarded a wrong entry of the module sums (runtime.cache_dir/sums); the module is read and hashed instead")
}

// store writes the entry atomically; failing to is only a missed saving.
func (x sumIndex) store(path, id, sum string) {
	if x.dir == "" || os.MkdirAll(x.dir, 0o755) != nil {
		return
	}
	name, abs := x.entry(path)
	f, err := os.CreateTemp(x.dir, ".sum-*")
	if err != nil {
		return
	}
	line := entryPrefix + id + " " + sum
	_, werr := f.WriteString(line + " " + check(abs, line) + "\n")
	if cerr := f.Close(); werr == nil && cerr == nil {
		os.Rename(f.Name(), name)
	}
	os.Remove(f.Name())
}
