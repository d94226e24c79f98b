package config

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// Redacted stands in for a secret value.
const Redacted = "[REDACTED]"

// Print renders the effective config (defaults and every file merged) as
// TOML, with every secret shown as [REDACTED].
func (c *Config) Print() ([]byte, error) {
	// The config is marshalled and read back as a generic document to be
	// redacted: each plugin on its own, since go-toml's decoder checks
	// each key against every key read since its table, which made one
	// [plugins] table of 4000 plugins (30 keys each, their defaults
	// printed) take 6 s, and grew with the square of the plugins.
	rest := *c
	rest.Plugins = nil
	doc, err := tomlDocument(&rest)
	if err != nil {
		return nil, err
	}
	plugins := make(map[string]any, len(c.Plugins))
	for id, p := range c.Plugins {
		if plugins[id], err = tomlDocument(p); err != nil {
			return nil, err
		}
	}
	doc["plugins"] = plugins // [plugins], empty, when there are none
	c.redact("", doc, false)
	var out bytes.Buffer
	enc := toml.NewEncoder(&out)
	enc.SetIndentTables(true)
	enc.EnableMarshalerInterface() // literals (see redact)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("print config: %w", err)
	}
	return out.Bytes(), nil
}

// tomlDocument is v marshalled as TOML and read back as a generic
// document.
func tomlDocument(v any) (map[string]any, error) {
	b, err := toml.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("print config: %w", err)
	}
	doc := map[string]any{}
	if err := toml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("print config: %w", err)
	}
	return doc, nil
}

// redact replaces every scalar under a secret path with [REDACTED]: once a
// key is secret (substituted from the environment, a token, or listed in a
// plugin's secrets), so is everything in it, whatever its type.
func (c *Config) redact(path string, v any, secret bool) any {
	secret = secret || c.isSecret(path)
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = c.redact(joinKey(path, []string{k}), e, secret)
		}
		return t
	case []any:
		for i, e := range t {
			t[i] = c.redact(fmt.Sprintf("%s[%d]", path, i), e, secret)
		}
		return t
	case string:
		if secret && t != "" {
			return Redacted
		}
		if path == "database.connection" {
			t = redactConnection(t)
		} else if urlKeys[path] {
			t = redactURL(t)
		}
		// Written so that it reads back as it is: a "${" in a value
		// (written "$${" in its file) would be a reference read again.
		return strings.ReplaceAll(t, "${", "$${")
	case nil:
		return v
	}
	if secret {
		return Redacted
	}
	// A plugin reads a number, boolean or date-time of its config as
	// written (0xff, 1_000): printed as written, it reads back the same.
	if text, ok := c.literal(path); ok {
		return unstable.RawMessage(text)
	}
	return v
}

// literal returns the source text of the plugin config value at path
// (plugins.<id>.config.<key>), if it has one.
func (c *Config) literal(path string) (string, bool) {
	p, key, ok := c.pluginConfigKey(path)
	if !ok {
		return "", false
	}
	text, ok := p.literals[plainKey(key)]
	return text, ok
}

// pluginConfigKey splits a path plugins.<id>.config.<key> into the plugin
// and the key: a plugin id needs no quoting and holds no dot, so it is
// the part after "plugins." (a lookup, not a loop over every plugin,
// which made config print quadratic in the number of plugins).
func (c *Config) pluginConfigKey(path string) (*Plugin, string, bool) {
	rest, ok := strings.CutPrefix(path, "plugins.")
	if !ok {
		return nil, "", false
	}
	id, rest, ok := strings.Cut(rest, ".")
	if !ok {
		return nil, "", false
	}
	key, ok := strings.CutPrefix(rest, "config.")
	p := c.Plugins[id]
	if !ok || p == nil {
		return nil, "", false
	}
	return p, key, true
}

func (c *Config) isSecret(path string) bool {
	return c.secretPaths[path] || alwaysSecret(path) || c.isListedSecret(path)
}

// alwaysSecret reports keys that hold credentials whatever their origin:
// auth.tokens.<name>.token and integrations.<kind>[i].token.
func alwaysSecret(path string) bool {
	rest, ok := strings.CutSuffix(path, ".token")
	return ok && (strings.HasPrefix(rest, "auth.tokens.") || strings.HasPrefix(rest, "integrations."))
}

func (c *Config) isListedSecret(path string) bool {
	p, key, ok := c.pluginConfigKey(path)
	return ok && underListedKey(key, p.Secrets)
}
