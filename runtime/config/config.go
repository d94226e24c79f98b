// Package config reads greenroom's config.toml: strict TOML (an unknown key
// is an error naming the key and its line), ${VAR} and ${VAR:-default}
// substituted from the environment, several files merged key by key, and
// every error reported at once (the first MaxErrors, the rest counted).
//
// Values that came from ${VAR} are secrets: Secrets returns them for log
// redaction, and Print and Read's errors show them as [REDACTED]. Keys
// that hold credentials by definition (tokens) are secrets whatever their
// origin.
package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"time"
)

// Config is the whole of greenroom's static configuration.
type Config struct {
	Server       Server             `toml:"server"`
	Log          Log                `toml:"log"`
	Runtime      Runtime            `toml:"runtime"`
	Database     Database           `toml:"database"`
	Scheduler    Scheduler          `toml:"scheduler"`
	Reading      Reading            `toml:"reading"`
	Integrations Integrations       `toml:"integrations"`
	Auth         Auth               `toml:"auth"`
	Plugins      map[string]*Plugin `toml:"plugins"`

	// Files are the files the config was read from, in order.
	Files []string `toml:"-"`

	secrets     []string        // values substituted from the environment
	secretPaths map[string]bool // key paths whose values are secret
	origins     map[string]string
}

// Server configures the HTTP listener.
type Server struct {
	Listen    string `toml:"listen"`
	BodyLimit Size   `toml:"body_limit"`
	// HeaderLimit bounds a request's line and headers together: the HTTP
	// server's per-connection read buffer.
	HeaderLimit     Size     `toml:"header_limit"`
	ShutdownTimeout Duration `toml:"shutdown_timeout"`
	// ShutdownDelay keeps serving, with readiness 503, this long after
	// SIGTERM before the listener closes, so load balancers stop sending.
	ShutdownDelay Duration `toml:"shutdown_delay"`
	// ResponseBudget bounds the bytes of plugin responses held at once,
	// from the plugin's answer until the client has read it.
	ResponseBudget Size `toml:"response_budget"`
	// RequestBudget bounds the bytes of plugin request bodies held at
	// once, from the first byte read until the plugin\'s call ends.
	RequestBudget Size `toml:"request_budget"`
	// MaxConnections bounds the open client connections; past it a new
	// connection gets 503 and is closed.
	MaxConnections int      `toml:"max_connections"`
	ReadTimeout    Duration `toml:"read_timeout"`
	WriteTimeout   Duration `toml:"write_timeout"`
	IdleTimeout    Duration `toml:"idle_timeout"`
	// MetricsListen serves /metrics on a separate address; empty serves it
	// on the main listener behind admin authentication.
	MetricsListen string `toml:"metrics_listen"`
	// RateLimit limits requests per principal; zero is off.
	RateLimit Rate `toml:"rate_limit"`
	RateBurst int  `toml:"rate_burst"`
	// TrustedProxies are the addresses ("10.0.0.1") and networks
	// ("10.0.0.0/8") of the reverse proxies in front of greenroom: from
	// one of them a request's X-Forwarded-For names the client, and the
	// forwarding headers reach the plugin; from anyone else those headers
	// are dropped (ParseTrustedProxy).
	TrustedProxies []string `toml:"trusted_proxies"`
	CORS           CORS     `toml:"cors"`
}

// CORS configures cross-origin requests; off unless origins are listed.
type CORS struct {
	Origins          []string `toml:"origins"`
	Methods          []string `toml:"methods"`
	Headers          []string `toml:"headers"`
	AllowCredentials bool     `toml:"allow_credentials"`
	MaxAge           int      `toml:"max_age"`
}

// DefaultCORSMethods are the methods a preflight allows when
// server.cors.methods is not set (Fiber's default list).
var DefaultCORSMethods = []string{"GET", "POST", "HEAD", "PUT", "DELETE", "PATCH"}

// Log configures the runtime's log.
type Log struct {
	Level  string `toml:"level"`
	Format string `toml:"format"`
	// AccessLog writes one line per request (default true).
	AccessLog bool `toml:"access_log"`
}

// Runtime configures the WebAssembly runtime.
type Runtime struct {
	// CacheDir holds wazero's compilation cache and dev builds.
	CacheDir string `toml:"cache_dir"`
}

// Database configures the databases plugins get.
type Database struct {
	Client         string `toml:"client"`
	Connection     string `toml:"connection"`
	Isolation      string `toml:"isolation"`
	SkipMigrations bool   `toml:"skip_migrations"`
	// SQLiteMemory bounds the memory SQLite allocates in the process, for
	// every plugin's database and the runtime's together (0: no bound).
	SQLiteMemory Size `toml:"sqlite_memory"`
}

// Scheduler configures task scheduling.
type Scheduler struct {
	Enabled bool     `toml:"enabled"`
	Lease   Duration `toml:"lease"`
}

// Reading configures the URL reader's global allow list.
type Reading struct {
	Allow    []AllowRule `toml:"allow"`
	MaxBytes Size        `toml:"max_bytes"`
	Timeout  Duration    `toml:"timeout"`
}

// AllowRule allows reads from host (a name, or "*.example.com" for its
// subdomains), optionally only under paths, over https unless Scheme says
// "http" (which allows both).
type AllowRule struct {
	Host   string   `toml:"host"`
	Paths  []string `toml:"paths"`
	Scheme string   `toml:"scheme"`
	// Internal lets this exact host (not a "*." pattern) resolve to
	// internal addresses — loopback, private, link-local and the like —
	// which the URL reader otherwise refuses.
	Internal bool `toml:"internal"`
}

// Integrations holds credentials the URL reader adds for specific hosts.
type Integrations struct {
	GitHub    []Integration `toml:"github"`
	GitLab    []Integration `toml:"gitlab"`
	Bitbucket []Integration `toml:"bitbucket"`
	Generic   []Integration `toml:"generic"`
}

// List returns the integrations of kind ("github", "gitlab", "bitbucket"
// or "generic").
func (i Integrations) List(kind string) []Integration {
	switch kind {
	case "github":
		return i.GitHub
	case "gitlab":
		return i.GitLab
	case "bitbucket":
		return i.Bitbucket
	case "generic":
		return i.Generic
	}
	return nil
}

// Integration is a credential for one host.
type Integration struct {
	Host  string `toml:"host"`
	Token string `toml:"token"`
	// Header overrides the header the token is sent in (generic only).
	Header string `toml:"header"`
}

// Auth configures who may call plugin routes and the admin API.
type Auth struct {
	Tokens             map[string]*Token `toml:"tokens"`
	JWT                *JWT              `toml:"jwt"`
	DangerouslyDisable bool              `toml:"dangerously_disable"`
}

// Token is a static credential for scripts and services.
type Token struct {
	Token   string `toml:"token"`
	Subject string `toml:"subject"`
	// Type is the principal type plugins see: "service" (default) or
	// "user".
	Type string `toml:"type"`
	// Plugins restricts the token to these plugins; empty allows all.
	Plugins []string `toml:"plugins,omitempty"`
	Admin   bool     `toml:"admin"`
}

// setDefaults is called on map values the decoder creates.
func (t *Token) setDefaults() { *t = Token{Type: "service"} }

// JWT configures bearer tokens from an identity provider.
type JWT struct {
	JWKSURL      string   `toml:"jwks_url"`
	Issuer       string   `toml:"issuer"`
	Audience     string   `toml:"audience"`
	Algorithms   []string `toml:"algorithms"`
	SubjectClaim string   `toml:"subject_claim"`
	Leeway       Duration `toml:"leeway"`
	// AdminClaim names a claim that makes the caller an admin: when it is
	// true, or when it equals or (as an array) contains AdminValue.
	AdminClaim string `toml:"admin_claim"`
	AdminValue string `toml:"admin_value"`
	// PrincipalType is "user" (default) or "service".
	PrincipalType string `toml:"principal_type"`
}

// Plugin is one [plugins.<id>] table.
type Plugin struct {
	Path   string `toml:"path"`
	SHA256 string `toml:"sha256"`
	// LogLevel is the plugin's level floor.
	LogLevel     string         `toml:"log_level"`
	PublicRoutes []string       `toml:"public_routes"`
	Limits       Limits         `toml:"limits"`
	Capabilities Capabilities   `toml:"capabilities"`
	Config       map[string]any `toml:"config"`
	// Secrets names keys of Config that are secret whatever their origin.
	Secrets []string `toml:"secrets"`
	// secretLimits names the keys of Limits ("memory") whose values are
	// secret (LimitSecret); nil when none is.
	secretLimits map[string]bool
	// literals holds the source text of Config's number, boolean and
	// date-time values by dotted key (1_000, 0xff, 1e10, 2026-01-02), which
	// ConfigValue returns as written.
	literals map[string]string
}

// Limits bound one plugin.
type Limits struct {
	Memory       Size     `toml:"memory" json:"memory"`
	Timeout      Duration `toml:"timeout" json:"timeout"`
	Instances    int      `toml:"instances" json:"instances"`
	QueueTimeout Duration `toml:"queue_timeout" json:"queue_timeout"`
	MaxRequests  int      `toml:"max_requests" json:"max_requests"`
	RetireMemory Size     `toml:"retire_memory" json:"retire_memory"`
	// MaxResponse bounds a response body; default 16MiB.
	MaxResponse Size `toml:"max_response" json:"max_response"`
	// Interruptible keeps the deadline check in the guest's loops; turning
	// it off is for plugins the operator vetted, and is logged loudly.
	Interruptible bool `toml:"interruptible" json:"interruptible"`
	// GCPercent is the Go guest's GOGC: 0 for Go's default (100), -1 for
	// off (collect only near the memory limit the runtime sets).
	GCPercent int `toml:"gc_percent" json:"gc_percent"`

	DBMaxConns         int      `toml:"db_max_conns" json:"db_max_conns"`
	DBStatementTimeout Duration `toml:"db_statement_timeout" json:"db_statement_timeout"`
	DBMaxResult        Size     `toml:"db_max_result" json:"db_max_result"`
	// DBMaxSize bounds the plugin's SQLite database file; 0 is no bound.
	DBMaxSize Size `toml:"db_max_size" json:"db_max_size"`
	// MigrationTimeout bounds applying the plugin's pending migrations
	// when it loads.
	MigrationTimeout Duration `toml:"migration_timeout" json:"migration_timeout"`

	LogRate  float64 `toml:"log_rate" json:"log_rate"`
	LogBurst int     `toml:"log_burst" json:"log_burst"`
}

// Capabilities are what the operator granted a plugin.
type Capabilities struct {
	Database  bool `toml:"database"`
	Scheduler bool `toml:"scheduler"`
	// URLReader lists "host/path-prefix" entries the plugin may read.
	URLReader []string `toml:"urlreader"`
}

// PluginIDPattern is the form of a plugin id.
var PluginIDPattern = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// Default returns the configuration used for keys a file leaves out.
func Default() *Config {
	return &Config{
		Server: Server{
			Listen:          "127.0.0.1:7007",
			BodyLimit:       4 << 20,
			HeaderLimit:     16 << 10,
			ResponseBudget:  256 << 20,
			RequestBudget:   256 << 20,
			MaxConnections:  10000,
			ShutdownTimeout: Duration(30 * time.Second),
			ReadTimeout:     Duration(30 * time.Second),
			WriteTimeout:    Duration(30 * time.Second),
			IdleTimeout:     Duration(2 * time.Minute),
			RateBurst:       0,
		},
		Log:       Log{Level: "info", Format: "text", AccessLog: true},
		Runtime:   Runtime{CacheDir: ".greenroom/cache"},
		Database:  Database{Client: "sqlite", Connection: "file:.greenroom/data", Isolation: "role", SQLiteMemory: 1 << 30},
		Scheduler: Scheduler{Enabled: true, Lease: Duration(30 * time.Second)},
		Reading:   Reading{MaxBytes: 16 << 20, Timeout: Duration(30 * time.Second)},
		Auth:      Auth{Tokens: map[string]*Token{}},
		Plugins:   map[string]*Plugin{},
	}
}

// DefaultPlugin returns the settings of a plugin table that sets nothing.
func DefaultPlugin() *Plugin {
	return &Plugin{
		Limits: Limits{
			Memory:             64 << 20,
			Timeout:            Duration(5 * time.Second),
			Instances:          4,
			QueueTimeout:       Duration(time.Second),
			MaxRequests:        10000,
			MaxResponse:        16 << 20,
			Interruptible:      true,
			DBMaxConns:         4,
			DBStatementTimeout: Duration(5 * time.Second),
			DBMaxResult:        8 << 20,
			MigrationTimeout:   Duration(5 * time.Minute),
			LogRate:            100,
			LogBurst:           200,
		},
		Config: map[string]any{},
	}
}

// setDefaults is called on map values the decoder creates.
func (p *Plugin) setDefaults() { *p = *DefaultPlugin() }

// LimitSecret reports whether the plugin's limit key (as written in its
// limits table: "memory", "instances") is a secret: it came from the
// environment, or it was computed from one that did (retire_memory left
// to its default, 3/4 of a memory from the environment). Whatever shows
// such a limit, or a figure computed from it, shows config.Redacted or
// nothing: the admin API, the metrics, the log, the callers' errors. The
// redaction of the secret as written ("32MiB") misses it decoded
// ("33554432", "24MiB" for its 3/4).
func (p *Plugin) LimitSecret(key string) bool { return p != nil && p.secretLimits[key] }

// ShownLimits is the plugin's limits as the admin API shows them: in
// JSON, each secret one (LimitSecret) as Redacted.
func (p *Plugin) ShownLimits() *ShownLimits {
	return &ShownLimits{limits: p.Limits, secret: p.secretLimits}
}

// ShownLimits is a plugin's limits with its secret ones redacted, for JSON
// (Plugin.ShownLimits).
type ShownLimits struct {
	limits Limits
	secret map[string]bool
}

// MarshalJSON writes the limits as json.Marshal writes Limits, in the
// same order, each secret one as Redacted.
func (s *ShownLimits) MarshalJSON() ([]byte, error) {
	v := reflect.ValueOf(s.limits)
	t := v.Type()
	var b bytes.Buffer
	b.WriteByte('{')
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		var val any = v.Field(i).Interface()
		if s.secret[name] {
			val = Redacted
		}
		enc, err := json.Marshal(val)
		if err != nil {
			return nil, err
		}
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q:", name)
		b.Write(enc)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// EffectiveRetireMemory is limits.retire_memory, or 3/4 of limits.memory
// when unset.
func (l Limits) EffectiveRetireMemory() uint64 {
	if l.RetireMemory > 0 {
		return uint64(l.RetireMemory)
	}
	return uint64(l.Memory) / 4 * 3
}

// JWTDefaults fills what an [auth.jwt] table leaves out.
func (j *JWT) setDefaults() {
	*j = JWT{
		Algorithms:    []string{"RS256", "ES256", "EdDSA"},
		SubjectClaim:  "sub",
		Leeway:        Duration(30 * time.Second),
		PrincipalType: "user",
	}
}

// Origin returns "file:line" where the key at path (dotted) was set, or "".
func (c *Config) Origin(path string) string { return c.origins[path] }

// Resolve makes path, the value of key, relative to the directory of the
// file that set it when it is relative; a default stays relative to the
// working directory.
func (c *Config) Resolve(key, path string) string {
	if path == "" || filepath.IsAbs(path) {
		return path
	}
	origin := c.Origin(key)
	if i := strings.LastIndexByte(origin, ':'); i > 0 {
		return filepath.Join(filepath.Dir(origin[:i]), path)
	}
	return path
}

// Secrets returns every value substituted from the environment and every
// credential the config holds, for redaction: tokens, every scalar under a
// key listed in a plugin's secrets (numbers also in their float64 forms),
// the password in database.connection and the one in auth.jwt.jwks_url.
func (c *Config) Secrets() []string {
	out := append([]string(nil), c.secrets...)
	for _, t := range c.Auth.Tokens {
		if t != nil && t.Token != "" {
			out = append(out, t.Token)
		}
	}
	for _, list := range [][]Integration{c.Integrations.GitHub, c.Integrations.GitLab, c.Integrations.Bitbucket, c.Integrations.Generic} {
		for _, in := range list {
			if in.Token != "" {
				out = append(out, in.Token)
			}
		}
	}
	for _, p := range c.Plugins {
		out = p.appendListedSecrets(out)
	}
	if c.Auth.JWT != nil {
		out = append(out, urlSecrets(c.Auth.JWT.JWKSURL)...)
	}
	return append(out, connectionSecrets(c.Database.Connection)...)
}

// appendListedSecrets appends the values under the keys the plugin's
// secrets list names (nothing for a nil plugin).
func (p *Plugin) appendListedSecrets(out []string) []string {
	if p == nil {
		return out
	}
	for _, k := range p.Secrets {
		// Every value the entry names, as the plugin reads keys.
		if vs := p.configAll(k); len(vs) > 0 {
			for _, v := range vs {
				out = appendLeaves(out, v)
			}
			// A number as the plugin reads it: as written (0x1234).
			for lk, text := range p.literals {
				if (lk == k || strings.HasPrefix(lk, k+".") || strings.HasPrefix(lk, k+"[")) && text != "true" && text != "false" {
					out = append(out, text)
				}
			}
		}
	}
	return out
}

// PluginSecrets returns the secrets of plugin id's own config table, as
// Secrets returns them: the values under the keys its secrets list names
// and the values substituted from the environment that its table holds.
// They are the secrets the plugin can know; the runtime keeps the others
// out of what it tells the plugin.
func (c *Config) PluginSecrets(id string) []string {
	p := c.Plugins[id]
	if p == nil {
		return nil
	}
	out := p.appendListedSecrets(nil)
	flat := p.FlatConfig()
	for _, s := range c.secrets {
		for _, v := range flat {
			if strings.Contains(v, s) {
				out = append(out, s)
				break
			}
		}
	}
	return out
}

// appendLeaves appends the text of every scalar in v, as a plugin reads it
// with ConfigValue: a listed table or array is secret in each of its
// values, which is what a plugin logs. A number is appended also in the
// forms a float64 of it takes when printed (floatForms). Booleans are left
// out: "true" and "false" hide nothing and would be cut out of every log
// line. The redactor skips values too short to redact.
func appendLeaves(out []string, v any) []string {
	switch t := v.(type) {
	case map[string]any:
		for _, e := range t {
			out = appendLeaves(out, e)
		}
	case []any:
		for _, e := range t {
			out = appendLeaves(out, e)
		}
	case bool, nil:
	default:
		if s := formatValue(t); s != "" {
			out = append(out, s)
		}
		// A number also as the plugin prints it once decoded as a
		// float64, which is what reading it as JSON gives.
		out = append(out, floatForms(t)...)
	}
	return out
}

// IsSecretPath reports whether the value at the dotted key path came from
// the environment or is secret by definition.
func (c *Config) IsSecretPath(path string) bool { return c.secretPaths[path] }
