package config

import (
	"strings"
	"testing"
)

// Keys an audit found without an upper bound (or with a lower one that let
// a useless value through) are refused past it, naming the key; the
// largest value each takes is accepted, and so is every value the docs
// and config.toml use.
func TestAuditedUpperBounds(t *testing.T) {
	plugin := "[plugins.a]\npath = \"a.wasm\"\n[plugins.a.limits]\n"
	for _, tc := range []struct {
		text string
		want string // "" when accepted
	}{
		{plugin + "db_max_conns = 1000\n", ""},
		{plugin + "db_max_conns = 1001\n", "config.toml:4: plugins.a.limits.db_max_conns: must be from 1 to 1000 (connections per replica), got 1001"},
		{plugin + "db_max_conns = 0\n", "config.toml:4: plugins.a.limits.db_max_conns: must be from 1 to 1000 (connections per replica), got 0"},
		{plugin + "log_burst = 100000\n", ""},
		{plugin + "log_burst = 100001\n", "config.toml:4: plugins.a.limits.log_burst: must be from 1 to 100000"},
		{plugin + "log_burst = 0\n", "config.toml:4: plugins.a.limits.log_burst: must be from 1 to 100000"},
		{plugin + "queue_timeout = \"0s\"\n", ""},
		{"[server.cors]\norigins = [\"https://app.example\"]\nmax_age = 86400\n", ""},
		{"[server.cors]\norigins = [\"https://app.example\"]\nmax_age = 600\n", ""},
		{"[server.cors]\norigins = [\"https://app.example\"]\nmax_age = 86401\n", "config.toml:3: server.cors.max_age: must be from 0 to 86400 (a day"},
		{"[server]\nshutdown_delay = \"10m\"\n", ""},
		{"[server]\nshutdown_delay = \"10m1s\"\n", "config.toml:2: server.shutdown_delay: must be at most 10m"},
		{"[server]\nshutdown_delay = \"2562047h\"\n", "config.toml:2: server.shutdown_delay: must be at most 10m"},
		{"[server]\nread_timeout = \"10ms\"\nwrite_timeout = \"10ms\"\n", ""},
		{"[server]\nread_timeout = \"1ns\"\n", "config.toml:2: server.read_timeout: must be at least 10ms"},
		{"[server]\nwrite_timeout = \"9ms\"\n", "config.toml:2: server.write_timeout: must be at least 10ms"},
		{"[server]\nread_timeout = \"24h\"\nwrite_timeout = \"24h\"\n", ""},
		{"[server]\nread_timeout = \"24h0m1s\"\n", "config.toml:2: server.read_timeout: must be at most 24h (a connection holds one of server.max_connections for as long; idle_timeout 0 takes read_timeout's), got 24h0m1s"},
		{"[server]\nwrite_timeout = \"2562047h\"\n", "config.toml:2: server.write_timeout: must be at most 24h"},
		{"[server]\nread_timeout = \"2562047h\"\nidle_timeout = \"0s\"\n", "config.toml:2: server.read_timeout: must be at most 24h"},
		{plugin + "timeout = \"1ms\"\n", ""},
		{plugin + "timeout = \"999us\"\n", "config.toml:4: plugins.a.limits.timeout: must be at least 1ms"},
		{plugin + "timeout = \"24h\"\n", ""},
		{plugin + "timeout = \"24h0m0.001s\"\n", "config.toml:4: plugins.a.limits.timeout: must be at most 24h (as a task's own Timeout), got 24h0m0.001s"},
		{plugin + "timeout = \"2562047h\"\n", "config.toml:4: plugins.a.limits.timeout: must be at most 24h"},
		{"[server]\nshutdown_timeout = \"1h\"\n", ""},
		{"[server]\nshutdown_timeout = \"1h0m1s\"\n", "config.toml:2: server.shutdown_timeout: must be at most 1h (task runs are cancelled at once and requests end within limits.timeout; a longer wait only holds a stopping replica), got 1h0m1s"},
		{"[server]\nshutdown_timeout = \"2562047h47m16.854775807s\"\nshutdown_delay = \"1s\"\n", "config.toml:2: server.shutdown_timeout: must be at most 1h"},
		{"[server]\nidle_timeout = \"24h\"\n", ""},
		{"[server]\nidle_timeout = \"0s\"\n", ""},
		{"[server]\nidle_timeout = \"24h1s\"\n", "config.toml:2: server.idle_timeout: must be at most 24h (an idle connection holds one of server.max_connections; clients and proxies drop theirs within minutes), got 24h0m1s"},
		{"[server]\nidle_timeout = \"2562047h\"\n", "config.toml:2: server.idle_timeout: must be at most 24h"},
		{plugin + "log_rate = 1000000\n", ""},
		{plugin + "log_rate = 0.001\n", ""},
		{plugin + "log_rate = 1000000.5\n", "config.toml:4: plugins.a.limits.log_rate: must be more than 0 and at most 1000000 (tokens a second: 4GiB of log lines, more than the log writes), got 1.0000005e+06"},
		{plugin + "log_rate = 1e300\n", "config.toml:4: plugins.a.limits.log_rate: must be more than 0 and at most 1000000"},
		{plugin + "log_rate = 9223372036854775807\n", "config.toml:4: plugins.a.limits.log_rate: must be more than 0 and at most 1000000"},
		{plugin + "log_rate = 0\n", "config.toml:4: plugins.a.limits.log_rate: must be more than 0 and at most 1000000 (tokens a second: 4GiB of log lines, more than the log writes), got 0"},
		{plugin + "log_rate = -1\n", "config.toml:4: plugins.a.limits.log_rate: must be more than 0 and at most 1000000"},
	} {
		_, err := read(t, tc.text, nil)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%q: %v, want %q", tc.text, err, tc.want)
		}
	}
	// A value from the environment is not shown.
	_, err := read(t, plugin+"db_max_conns = \"${N}\"\n", map[string]string{"N": "5000"})
	if err == nil || !strings.Contains(err.Error(), "db_max_conns: must be from 1 to 1000 (connections per replica), got [REDACTED]") || strings.Contains(err.Error(), "5000") {
		t.Errorf("db_max_conns from the environment: %v", err)
	}
	_, err = read(t, plugin+"log_rate = \"${N}\"\n", map[string]string{"N": "99999999999999999999"})
	if err == nil || !strings.Contains(err.Error(), "log_rate: must be more than 0 and at most 1000000 (tokens a second: 4GiB of log lines, more than the log writes), got [REDACTED]") || strings.Contains(err.Error(), "e+19") {
		t.Errorf("log_rate from the environment: %v", err)
	}
	_, err = read(t, "[server]\nshutdown_timeout = \"${D}\"\n", map[string]string{"D": "3601s"})
	if err == nil || !strings.Contains(err.Error(), "server.shutdown_timeout: must be at most 1h (task runs are cancelled at once and requests end within limits.timeout; a longer wait only holds a stopping replica), got [REDACTED]") || strings.Contains(err.Error(), "1h0m1s") {
		t.Errorf("shutdown_timeout from the environment: %v", err)
	}
}

// A plugin's path (and the cache directory) with a NUL or another control
// character is refused at config load, naming the key: no file is opened
// by such a name, and it was reported only when the plugin loaded.
func TestPathControlCharacters(t *testing.T) {
	for text, want := range map[string]string{
		"[plugins.a]\npath = \"a\\u0000.wasm\"\n": `config.toml:2: plugins.a.path: must not contain control characters (a NUL, a newline, ...), got "a\x00.wasm"`,
		"[plugins.a]\npath = \"a\\n.wasm\"\n":     `config.toml:2: plugins.a.path: must not contain control characters`,
		"[plugins.a]\npath = \"a\\u007f.wasm\"\n": `config.toml:2: plugins.a.path: must not contain control characters`,
		"[runtime]\ncache_dir = \"c\\u0000d\"\n":  `config.toml:2: runtime.cache_dir: must not contain control characters`,
		"[plugins.a]\npath = \"a b/é.wasm\"\n":    "",
	} {
		_, err := read(t, text, nil)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("%q: %v, want %q", text, err, want)
		}
	}
	_, err := read(t, "[plugins.a]\npath = \"${P}\"\n", map[string]string{"P": "plugins/secret\x00name.wasm"})
	if err == nil || !strings.Contains(err.Error(), "plugins.a.path: must not contain control characters") || strings.Contains(err.Error(), "secret") {
		t.Errorf("a path from the environment: %v", err)
	}
}
