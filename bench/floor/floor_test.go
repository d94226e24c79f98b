package floor

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/greenroom-dev/greenroom/runtime/build"
)

func TestListMatchesTheTodoPluginsAnswer(t *testing.T) {
	items, err := List()
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != Rows || items[0].ID != 1 || items[Rows-1].Title != "benchmark item 099" || items[0].DoneAt != nil {
		t.Fatalf("listing: %d items, first %+v", len(items), items[0])
	}
	if _, err := Encode(items); err != nil {
		t.Fatal(err)
	}
	var got struct{ Items []map[string]any }
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	// The fields plugins/todo answers with (bench/harness.go checks the
	// real route for the same).
	for _, k := range []string{"id", "title", "done", "created_at", "updated_at", "done_at"} {
		if _, ok := got.Items[0][k]; !ok {
			t.Errorf("encoded item has no %q: %v", k, got.Items[0])
		}
	}
}

// guest builds and loads the wasm guest (a minute on a cold build cache).
func guest(tb testing.TB) *Guest {
	tb.Helper()
	ctx := context.Background()
	out := filepath.Join(tb.TempDir(), "floor.wasm")
	if err := build.Build(ctx, "guest", out); err != nil {
		tb.Fatal(err)
	}
	wasm, err := os.ReadFile(out)
	if err != nil {
		tb.Fatal(err)
	}
	g, err := LoadGuest(ctx, wasm)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { g.Close(ctx) })
	return g
}

// The guest does the same work as the native listing: as many bytes, and
// Measure refuses a side that encodes a different number.
func TestGuestEncodesWhatNativeDoes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a wasm module")
	}
	g := guest(t)
	ctx := context.Background()
	n, err := NativeWork(3)
	if err != nil {
		t.Fatal(err)
	}
	w, err := g.Work(ctx, 3)
	if err != nil || w != n {
		t.Fatalf("guest encoded %d bytes (%v), native %d", w, err, n)
	}
	res, err := Measure(ctx, g, 1, time.Millisecond)
	if err != nil || len(res.Native) != 1 || len(res.Wasm) != 1 || res.Native[0] <= 0 || res.Wasm[0] <= 0 {
		t.Fatalf("Measure: %+v, %v", res, err)
	}
	titles[0] = "changed natively only"
	defer func() { titles[0] = "benchmark item 000" }()
	if _, err := Measure(ctx, g, 1, time.Millisecond); err == nil || !bytes.Contains([]byte(err.Error()), []byte("want")) {
		t.Fatalf("Measure with differing sides: %v", err)
	}
}

// BenchmarkWork: one listing natively and in wasm, side by side.
func BenchmarkWork(b *testing.B) {
	b.Run("native", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Work(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("wasm", func(b *testing.B) {
		g := guest(b)
		ctx := context.Background()
		b.ResetTimer()
		if _, err := g.Work(ctx, b.N); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkList and BenchmarkEncode split the native listing.
func BenchmarkList(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := List(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	items, err := List()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(items); err != nil {
			b.Fatal(err)
		}
	}
}
