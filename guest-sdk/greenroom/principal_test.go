package greenroom

import (
	"encoding/json"
	"testing"
	"time"
)

func TestPrincipalFromEnvelope(t *testing.T) {
	req, _, err := decodeRequest(string(sampleEnvelope(time.Now().Add(time.Minute))))
	if err != nil {
		t.Fatal(err)
	}
	p := PrincipalFrom(req)
	if p.Type != PrincipalService || p.Subject != "service:ci" || p.Claims["sub"] != "ci" {
		t.Errorf("principal = %+v", p)
	}
	// Each call gets its own claims map.
	p.Claims["sub"] = "changed"
	if PrincipalFrom(req).Claims["sub"] != "ci" {
		t.Error("claims map shared between calls")
	}
	b, _ := json.Marshal(PrincipalFrom(req))
	if string(b) != `{"Type":"service","Subject":"service:ci","Claims":{"sub":"ci"}}` {
		t.Errorf("json = %s", b)
	}

	for _, tc := range []struct {
		typ     uint8
		subject string
		claims  string
		want    Principal
	}{
		{principalNone, "", "", Principal{Type: PrincipalNone}},
		{principalUser, "user:default/jane", `{"sub":"jane","groups":["a","b"],"exp":1700000000}`,
			Principal{Type: PrincipalUser, Subject: "user:default/jane", Claims: map[string]any{"sub": "jane", "groups": []any{"a", "b"}, "exp": float64(1700000000)}}},
		{principalService, "service:ci", "", Principal{Type: PrincipalService, Subject: "service:ci"}},
		{principalService, "service:ci", "not json", Principal{Type: PrincipalService, Subject: "service:ci"}},
		{principalService, "service:ci", `{"a":1}{"b":2}`, Principal{Type: PrincipalService, Subject: "service:ci"}},
		// Integers float64 cannot hold keep their digits.
		{principalUser, "user:default/jane", `{"id":12345678901234567890,"big":9007199254740993,"max":9007199254740992,"neg":-9007199254740993,"r":0.5,"e":1e3,"huge":1e400,"l":[9007199254740993]}`,
			Principal{Type: PrincipalUser, Subject: "user:default/jane", Claims: map[string]any{"id": json.Number("12345678901234567890"),
				"big": json.Number("9007199254740993"), "max": float64(1 << 53), "neg": json.Number("-9007199254740993"), "r": 0.5, "e": 1000.0,
				"huge": json.Number("1e400"), "l": []any{json.Number("9007199254740993")}}}},
		// An unknown type from a newer host is no principal at all.
		{9, "someone", "", Principal{Type: PrincipalNone}},
	} {
		e := &envBuilder{}
		e.str("GET").str("/").str("").str("rid").str("1.2.3.4:5").u64(0).u8(tc.typ).str(tc.subject).str(tc.claims).u32(0).str("")
		req, _, err := decodeRequest(string(e.b))
		if err != nil {
			t.Fatal(err)
		}
		got := PrincipalFrom(req)
		gb, _ := json.Marshal(got)
		wb, _ := json.Marshal(tc.want)
		if string(gb) != string(wb) {
			t.Errorf("type %d: got %s, want %s", tc.typ, gb, wb)
		}
	}
}
