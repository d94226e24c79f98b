package plugin

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/greenroom-dev/greenroom/hostfuncs"
)

func TestGCTuning(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name  string
		lim   Limits
		pages uint32
		want  hostfuncs.GCTuning
	}{
		// 48 MiB retire size, 4 MiB of static data, 3 MiB of headroom.
		{"retire size", Limits{Memory: 64 * mib, RetireMemory: 48 * mib}, 64, hostfuncs.GCTuning{MemoryLimit: 41 * mib}},
		{"no retire size: the cap", Limits{Memory: 64 * mib}, 64, hostfuncs.GCTuning{MemoryLimit: 56 * mib}},
		{"small memory: 2 MiB headroom", Limits{Memory: 16 * mib, RetireMemory: 12 * mib}, 16, hostfuncs.GCTuning{MemoryLimit: 9 * mib}},
		{"too small for a useful limit", Limits{Memory: 8 * mib, RetireMemory: 8 * mib}, 64, hostfuncs.GCTuning{}},
		{"percent passes through", Limits{Memory: 8 * mib, GCPercent: 400}, 64, hostfuncs.GCTuning{Percent: 400}},
		{"off", Limits{Memory: 64 * mib, RetireMemory: 48 * mib, GCPercent: -1}, 64, hostfuncs.GCTuning{MemoryLimit: 41 * mib, Percent: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := gcTuning(tc.lim, tc.pages); got != tc.want {
				t.Errorf("gcTuning = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// The guest's collector runs with the settings the host gave it.
func TestGuestGCSettings(t *testing.T) {
	for _, percent := range []int{0, -1, 400} {
		t.Run(fmt.Sprint(percent), func(t *testing.T) {
			lim := testLimits()
			lim.Instances, lim.GCPercent = 1, percent
			p := load(t, hostileWasm, lim)
			status, body, err := get(p, "/gc")
			if err != nil || status != 200 {
				t.Fatalf("/gc: %d %s %v", status, body, err)
			}
			var got struct {
				MemoryLimit int64 `json:"memory_limit"`
				GCPercent   int   `json:"gc_percent"`
			}
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			want := percent
			if want == 0 {
				want = 100
			}
			if got.GCPercent != want || got.MemoryLimit != int64(p.gc.MemoryLimit>>10<<10) || p.gc.MemoryLimit == 0 {
				t.Errorf("guest has memory limit %d and GOGC %d; want %d (of %d) and %d", got.MemoryLimit, got.GCPercent, p.gc.MemoryLimit>>10<<10, p.gc.MemoryLimit, want)
			}
		})
	}
}

// A plugin whose working set is half its retire size, allocating garbage
// around it, keeps its instance: the memory limit makes the collector run
// before the heap reaches the retire size. Without the limit (the guest
// resets it to Go's default) the same calls retire the instance again and
// again, which is what the limit is for.
func TestGCMemoryLimitKeepsInstance(t *testing.T) {
	for _, tc := range []struct {
		query   string
		retired bool
	}{
		{"live=12&garbage=4", false},
		{"live=12&garbage=4&nolimit", true},
	} {
		t.Run(tc.query, func(t *testing.T) {
			lim := testLimits() // 24 MiB retire size
			lim.Instances = 1
			p := load(t, hostileWasm, lim)
			for i := 0; i < 20; i++ {
				if status, body, err := get(p, "/churn?"+tc.query); err != nil || status != 200 || body != "12" {
					t.Fatalf("call %d: %d %q %v", i, status, body, err)
				}
			}
			st := p.Stats()
			if retired := st.Retired > 0; retired != tc.retired {
				t.Errorf("retired %d instances in 20 calls; want retirements: %v", st.Retired, tc.retired)
			}
		})
	}
}
