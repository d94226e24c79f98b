package hostfuncs

import (
	"encoding/binary"
	"errors"
	"testing"
	"time"
)

func TestTaskSpecRoundTrip(t *testing.T) {
	for _, spec := range []TaskSpec{
		{ID: "refresh", Cron: "*/5 * * * *", Timeout: time.Minute, InitialDelay: 10 * time.Second, Scope: ScopeGlobal},
		{ID: "x", Every: 30 * time.Second, Scope: ScopeLocal},
		{ID: "neg", Every: -time.Second, Timeout: -1, InitialDelay: -time.Hour, Scope: 7}, // the runtime judges these
		{},
	} {
		got, err := DecodeTaskSpec(AppendTaskSpec(nil, spec))
		if err != nil || got != spec {
			t.Errorf("%+v: got %+v, %v", spec, got, err)
		}
	}
}

func TestTaskSpecMalformed(t *testing.T) {
	valid := AppendTaskSpec(nil, TaskSpec{ID: "a", Every: time.Second})
	cases := map[string][]byte{
		"empty":     nil,
		"truncated": valid[:len(valid)-1],
		"trailing":  append(append([]byte(nil), valid...), 0),
		"huge id":   binary.LittleEndian.AppendUint32(nil, 0xffffffff),
		"not utf8":  AppendTaskSpec(nil, TaskSpec{ID: "\xff", Every: time.Second}),
	}
	for name, b := range cases {
		if _, err := DecodeTaskSpec(b); !errors.Is(err, errMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzDecodeTaskSpec(f *testing.F) {
	f.Add(AppendTaskSpec(nil, TaskSpec{ID: "a", Cron: "@hourly", Timeout: time.Second}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		spec, err := DecodeTaskSpec(b)
		if err == nil {
			if again := AppendTaskSpec(nil, spec); string(again) != string(b) {
				t.Errorf("decoded %+v does not encode back to the input", spec)
			}
		}
	})
}

func TestAppendTaskRun(t *testing.T) {
	b := AppendTaskRun(nil, TaskRun{ID: "t", RunID: "r1", Deadline: 5, Due: 7, Manual: true})
	want := []byte{1, 0, 0, 0, 't', 2, 0, 0, 0, 'r', '1', 5, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 1}
	if string(b) != string(want) {
		t.Errorf("got %v, want %v", b, want)
	}
}
