package config

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// Redacted stands in for a secret value.
const Redacted = "[REDACTED]"

// Print renders the effective config (defaults and every file merged) as
// TOML, with every secret shown as [REDACTED].
func (c *Config) Print() ([]byte, error) {
	b, err := toml.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("print config: %w", err)
	}
	doc := map[string]any{}
	if err := toml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("print config: %w", err)
	}
	c.redact("", doc)
	var out bytes.Buffer
	enc := toml.NewEncoder(&out)
	enc.SetIndentTables(true)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("print config: %w", err)
	}
	return out.Bytes(), nil
}

func (c *Config) redact(path string, v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = c.redact(joinKey(path, []string{k}), e)
		}
		return t
	case []any:
		for i, e := range t {
			t[i] = c.redact(fmt.Sprintf("%s[%d]", path, i), e)
		}
		return t
	case string:
		if t != "" && (c.secretPaths[path] || c.secretPaths[stripIndexes(path)] || alwaysSecret(path) || c.isListedSecret(path)) {
			return Redacted
		}
		return t
	}
	return v
}

// alwaysSecret reports keys that hold credentials whatever their origin.
func alwaysSecret(path string) bool {
	last := path[strings.LastIndexByte(path, '.')+1:]
	return last == "token" && (strings.HasPrefix(path, "auth.tokens.") || strings.HasPrefix(path, "integrations."))
}

func (c *Config) isListedSecret(path string) bool {
	rest, ok := strings.CutPrefix(path, "plugins.")
	if !ok {
		return false
	}
	for id, p := range c.Plugins {
		key, ok := strings.CutPrefix(rest, id+".config.")
		if !ok {
			continue
		}
		for _, s := range p.Secrets {
			if s == key || strings.HasPrefix(key, s+".") {
				return true
			}
		}
	}
	return false
}
