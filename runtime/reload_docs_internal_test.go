package runtime

import (
	"os"
	"strings"
	"testing"
)

// docs/config.md names every setting a reload cannot change, as the
// reload reports it under restart_needed: a key the list left out read as
// one a reload applies.
func TestDocsNameTheRestartSettings(t *testing.T) {
	b, err := os.ReadFile("../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	start := strings.Index(text, "`restart_needed` with a warning:")
	if start < 0 {
		t.Fatal("docs/config.md does not list the settings that need a restart")
	}
	list, _, _ := strings.Cut(text[start:], "\n\n")
	list = strings.Join(strings.Fields(list), " ")
	for _, f := range fixedSettings {
		section, key, _ := strings.Cut(f.key, ".")
		var forms []string
		switch {
		case key == "" && section == "integrations":
			forms = []string{"`[[integrations]]`"}
		case key == "":
			forms = []string{"`[" + section + "]`"}
		case key == "cors":
			forms = []string{"`[server.cors]`"}
		default:
			forms = []string{"`" + f.key + "`", "`" + key + "`", "`[" + section + "] " + key + "`"}
		}
		found := false
		for _, form := range forms {
			found = found || strings.Contains(list, form)
		}
		if !found {
			t.Errorf("%s needs a restart, and docs/config.md's list does not name it (as %s)", f.key, strings.Join(forms, " or "))
		}
	}
}
