package plugin

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// MaxModuleSize is the largest module file ReadModule reads. Go plugins
// are a few MiB to a few tens; the cap keeps a path that names something
// else (a huge or sparse file) from taking the host's memory.
const MaxModuleSize = 256 << 20

// ReadModule reads the module file at path. It must be a regular file of
// at most MaxModuleSize bytes: a device (/dev/zero), a FIFO (which would
// block the read until a writer comes), a directory or a larger file is
// refused with what it is.
func ReadModule(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if err := checkModuleFile(path, fi); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	// Again on what was opened: the path may name another file by now.
	if fi, err = f.Stat(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if err := checkModuleFile(path, fi); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxModuleSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > MaxModuleSize {
		return nil, fmt.Errorf("read %s: more than %d MiB, the largest module greenroom loads", path, MaxModuleSize>>20)
	}
	return b, nil
}

func checkModuleFile(path string, fi os.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("read %s: not a regular file (%s): a plugin's path names its .wasm file", path, FileKind(fi.Mode()))
	}
	if fi.Size() > MaxModuleSize {
		return fmt.Errorf("read %s: %d bytes, more than %d MiB, the largest module greenroom loads", path, fi.Size(), MaxModuleSize>>20)
	}
	return nil
}

// FileKind names what a file that is not a regular file is (a
// directory, a named pipe, a device, ...).
func FileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a named pipe"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a device"
	}
	return "mode " + m.String()
}

// ReadRegular reads the file at path if it is a regular file: a cache
// entry replaced by a FIFO (whose read waits for a writer for ever) or a
// device is refused with what it is, and read as a miss.
func ReadRegular(path string) ([]byte, error) {
	// Before the open too: opening a FIFO waits for a writer.
	if fi, err := os.Stat(path); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file (%s)", path, FileKind(fi.Mode()))
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file (%s)", path, FileKind(fi.Mode()))
	}
	return io.ReadAll(f)
}

// StaleTempAge is how old a temporary file in the cache must be for
// SweepTemp to remove it: far longer than any write of an entry takes, so
// that a write in progress (by this process or another sharing the
// directory) is never removed.
const StaleTempAge = 10 * time.Minute

// SweepTemp removes, from dir, the temporary files that match (a write of
// a cache entry that a killed process left behind: tens of megabytes each
// for wazero's, which a crash loop would pile up until the volume is full)
// and are older than StaleTempAge. It returns how many it removed.
func SweepTemp(dir string, match func(name string) bool) int {
	names, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	n := 0
	for _, de := range names {
		if !match(de.Name()) || !de.Type().IsRegular() {
			continue
		}
		fi, err := de.Info()
		if err != nil || time.Since(fi.ModTime()) < StaleTempAge {
			continue
		}
		if os.Remove(filepath.Join(dir, de.Name())) == nil {
			n++
		}
	}
	return n
}
