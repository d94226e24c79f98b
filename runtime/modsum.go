package runtime

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

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
type sumIndex struct{ dir string }

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
				if plugin.SHA256(b) != sum {
					return nil, fmt.Errorf("%s changed while it was being loaded; load it again", path)
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

// entry is the index file for path.
func (x sumIndex) entry(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	h := sha256.Sum256([]byte(path))
	return filepath.Join(x.dir, hex.EncodeToString(h[:16]))
}

// entryPrefix starts every entry; a format change changes it.
const entryPrefix = "greenroom-sum-v1 "

func (x sumIndex) lookup(path, id string) (string, bool) {
	if x.dir == "" {
		return "", false
	}
	b, err := os.ReadFile(x.entry(path))
	if err != nil {
		return "", false
	}
	rest, ok := strings.CutPrefix(string(b), entryPrefix+id+" ")
	if !ok || len(rest) != 65 || rest[64] != '\n' {
		return "", false
	}
	sum := rest[:64]
	if _, err := hex.DecodeString(sum); err != nil {
		return "", false
	}
	return sum, true
}

// store writes the entry atomically; failing to is only a missed saving.
func (x sumIndex) store(path, id, sum string) {
	if x.dir == "" || os.MkdirAll(x.dir, 0o755) != nil {
		return
	}
	f, err := os.CreateTemp(x.dir, ".sum-*")
	if err != nil {
		return
	}
	_, werr := f.WriteString(entryPrefix + id + " " + sum + "\n")
	if cerr := f.Close(); werr == nil && cerr == nil {
		os.Rename(f.Name(), x.entry(path))
	}
	os.Remove(f.Name())
}
