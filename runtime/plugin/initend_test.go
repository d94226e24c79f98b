package plugin

import (
	"context"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/greenroom-dev/greenroom/hostfuncs"
)

// initDB records what an instance's initialization registers, and when the
// runtime ends that initialization.
type initDB struct {
	*benchDB
	events *[]string
}

func (d initDB) RegisterMigrations(in *hostfuncs.Instance, files []hostfuncs.MigrationFile) error {
	for _, f := range files {
		*d.events = append(*d.events, f.Name)
	}
	if in.Value(initDB{}) == nil {
		in.SetValue(initDB{}, true)
		in.OnInitEnd(func() { *d.events = append(*d.events, "end") })
	}
	return nil
}

type initDBHost struct {
	testHost
	db initDB
}

func (h initDBHost) Database() (hostfuncs.Database, error) { return h.db, nil }

// migrationsModule assembles a reactor whose start section and _initialize
// each call db_migrations with one file, named "start" and "init".
func migrationsModule() []byte {
	uleb := func(b []byte, v int) []byte { return binary.AppendUvarint(b, uint64(v)) }
	section := func(id byte, body []byte) []byte { return append(uleb([]byte{id}, len(body)), body...) }
	sleb := func(b []byte, v int) []byte { // a non-negative v, as a signed LEB128
		for ; v >= 0x40; v >>= 7 {
			b = append(b, byte(v)|0x80)
		}
		return append(b, byte(v))
	}
	str := func(b []byte, s string) []byte { return append(uleb(b, len(s)), s...) }
	// A db_migrations request: u32 count, (bytes name, bytes sql); bytes
	// are a u32 length and the bytes.
	request := func(name string) []byte {
		b := binary.LittleEndian.AppendUint32(nil, 1)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(name)))
		b = append(b, name...)
		return binary.LittleEndian.AppendUint32(b, 0)
	}
	startReq, initReq := request("start"), request("init")
	const startAt, initAt = 16, 64
	wasm := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	// types: 0 (i32 i32) -> i32, 1 () -> (), 2 (i32) -> i32
	wasm = append(wasm, section(1, []byte{3, 0x60, 2, 0x7f, 0x7f, 1, 0x7f, 0x60, 0, 0, 0x60, 1, 0x7f, 1, 0x7f})...)
	imports := str(str([]byte{1}, "greenroom"), "db_migrations")
	wasm = append(wasm, section(2, append(imports, 0, 0))...)
	// functions 1 start, 2 _initialize, 3 greenroom_abi_v1, 4 greenroom_handle
	wasm = append(wasm, section(3, []byte{4, 1, 1, 1, 2})...)
	wasm = append(wasm, section(5, []byte{1, 0, 1})...)
	exports := []byte{4}
	for _, e := range []struct {
		name        string
		kind, func_ byte
	}{{"memory", 2, 0}, {"_initialize", 0, 2}, {"greenroom_abi_v1", 0, 3}, {"greenroom_handle", 0, 4}} {
		exports = append(str(exports, e.name), e.kind, e.func_)
	}
	wasm = append(wasm, section(7, exports)...)
	wasm = append(wasm, section(8, []byte{1})...)
	call := func(at, n int) []byte { // i32.const at; i32.const n; call 0; drop; end
		body := []byte{0, 0x41}
		body = sleb(body, at)
		body = append(body, 0x41)
		body = sleb(body, n)
		body = append(body, 0x10, 0, 0x1a, 0x0b)
		return append(uleb(nil, len(body)), body...)
	}
	code := []byte{4}
	code = append(code, call(startAt, len(startReq))...)
	code = append(code, call(initAt, len(initReq))...)
	code = append(code, 2, 0, 0x0b)          // nop
	code = append(code, 4, 0, 0x41, 0, 0x0b) // i32.const 0
	wasm = append(wasm, section(10, code)...)
	data := []byte{2}
	for _, d := range []struct {
		at  int
		req []byte
	}{{startAt, startReq}, {initAt, initReq}} {
		data = append(data, 0, 0x41)
		data = sleb(data, d.at)
		data = append(data, 0x0b)
		data = append(uleb(data, len(d.req)), d.req...)
	}
	return append(wasm, section(11, data)...)
}

// A start section and _initialize are calls of their own, but one
// initialization: what both register is ended (OnInitEnd) once, after
// _initialize, not after each.
func TestInitEndsAfterStartAndInitialize(t *testing.T) {
	var events []string
	host := initDBHost{testHost{log: logrus.NewEntry(logrus.New())}, initDB{newBenchDB(), &events}}
	p, err := Load(context.Background(), Spec{ID: "initend", Wasm: migrationsModule(), Limits: testLimits(), Host: host})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	defer p.Close(context.Background())
	if want := []string{"start", "init", "end"}; !slices.Equal(events[:min(len(events), 3)], want) {
		t.Errorf("the first instance's initialization: %q, want %q", events, want)
	}
}
