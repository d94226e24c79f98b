package database_test

import (
	"strings"
	"testing"
)

// A statement that calls LIKE for ever, each call within its work budget,
// still stops at db_statement_timeout, and a call past the budget fails
// with its error, which reaches the plugin.
func TestSQLiteLikeBudgetAndStatementTimeout(t *testing.T) {
	in := start(t, backends[0].conf(t),
		plugin("alpha", true, "good", "db_statement_timeout = \"300ms\"\ntimeout = \"20s\""),
		plugin("beta", true, "good", "db_statement_timeout = \"20s\"\ntimeout = \"30s\""))
	r := run(t, in, "alpha",
		query("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c WHERE hex(zeroblob(10000)) || x LIKE '%a%'"))
	r = append(r, run(t, in, "beta",
		query("SELECT replace(hex(zeroblob(100000)),'0','a') GLOB '*' || replace(hex(zeroblob(20000)),'0','a') || 'b*'"),
		query("SELECT 'abc' LIKE 'A_C', 'abc' GLOB 'a[a-c]?', instr('héllo', 'l'), trim('xxhixx', 'x')"))...)
	if r[0].Kind != "timeout" || !strings.Contains(r[0].Error, "db_statement_timeout") {
		t.Errorf("endless LIKE: got %+v, want a statement timeout", r[0])
	}
	if !strings.Contains(r[1].Error, "LIKE or GLOB pattern too complex") {
		t.Errorf("GLOB past the budget: got %+v, want its error", r[1])
	}
	if r[2].Error != "" || len(r[2].Rows) != 1 || len(r[2].Rows[0]) != 4 {
		t.Fatalf("got %+v", r[2])
	}
	if got := r[2].Rows[0]; got[0] != float64(1) || got[1] != float64(1) || got[2] != float64(3) || got[3] != "hi" {
		t.Errorf("got %v, want [1 1 3 hi]", got)
	}
}
