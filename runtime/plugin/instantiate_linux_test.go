//go:build linux

package plugin

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
)

// vmSize is the process's virtual memory size in bytes (/proc/self/status).
func vmSize(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmSize:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmSize %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Skip("no VmSize in /proc/self/status")
	return 0
}

// A module whose instantiation fails once wazero has made its memory (an
// active data segment past the memory's end, with one before it already
// written) leaves nothing mapped: wazero does not close such a module, and
// its memory, reserved up to limits.memory, stayed mapped with the pages
// written before the failure for the life of the process, at every load
// (an audit: 30 loads with memory = "1GiB" grew the process by 31 GiB of
// address space and 42 MB of RSS).
func TestFailedInstantiationFreesMemory(t *testing.T) {
	// Two active segments: 64 KiB at 0, filling the module's one page,
	// then one byte past it.
	body := []byte{2, 0, 0x41, 0, 0x0b, 0x80, 0x80, 0x04}
	body = append(body, bytes.Repeat([]byte{7}, 65536)...)
	body = append(body, 0, 0x41, 0x80, 0x80, 0x04, 0x0b, 1, 7)
	data := append(binary.AppendUvarint([]byte{11}, uint64(len(body))), body...)
	wasm := append(rawModule(false, []byte{0, 0x41, 0, 0x0b}, ""), data...)

	ctx := context.Background()
	eng := NewEngine(nil, "")
	defer eng.Close(ctx)
	log := logrus.New()
	log.SetLevel(logrus.ErrorLevel)
	lim := testLimits()
	lim.Memory = 1 << 30
	before := vmSize(t)
	for range 8 {
		spec := Spec{ID: "baddata", Wasm: wasm, Sum: SHA256(wasm), Size: len(wasm), Limits: lim,
			Log: logrus.NewEntry(log), Host: testHost{log: logrus.NewEntry(log)}, Engine: eng}
		p, err := Load(ctx, spec)
		if err == nil {
			p.Close(ctx)
			t.Fatal("a module with a data segment past its memory loaded")
		}
		if !strings.Contains(err.Error(), "out of bounds memory access") {
			t.Fatalf("Load = %v, want the data segment out of bounds", err)
		}
	}
	if grown := vmSize(t) - before; grown > 2<<30 {
		t.Errorf("8 failed loads with limits.memory = 1GiB grew the process by %d MiB of address space; their memories were left mapped", grown>>20)
	}
}
