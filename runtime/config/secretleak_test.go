package config

import (
	"fmt"
	"strings"
	"testing"
)

// A malformed ${ reference in database.connection or auth.jwt.jwks_url
// fails the substitution, which empties the value: its password was then
// in no secret list, and the error quoted the value whole, password,
// userinfo and query. The error quotes the value with its credentials
// [REDACTED], and not a malformed reference written inside one.
func TestMalformedReferenceHidesCredential(t *testing.T) {
	jwt := "[auth.jwt]\nissuer = \"i\"\naudience = \"a\"\njwks_url = %q\n"
	db := "[database]\nclient = \"pg\"\nconnection = %q\n"
	for _, tc := range []struct {
		name, format, value, want string
		leaks                     []string
	}{
		{"url password", db, "postgres://app:Pw9@db.internal/${app", `unclosed ${ in "postgres://[REDACTED]@db.internal/${app"`, []string{"Pw9", "app:"}},
		{"short password", db, "postgres://u:xy@h/${DB", `"postgres://[REDACTED]@h/${DB"`, []string{"xy"}},
		{"query password", db, "postgres://u@h/db?password=Qp1&sslpassword=Qs2&x=${", `"postgres://[REDACTED]@h/db?[REDACTED]"`, []string{"Qp1", "Qs2"}},
		{"reference in the password", db, "postgres://u:${P-W:-dflt}@h/db", "invalid variable reference in a credential of the value", []string{"dflt", "P-W"}},
		{"nested", db, "postgres://u:Ab1${X:-${Y}}@h/db", `nested ${ in "postgres://[REDACTED]@h/db"`, []string{"Ab1"}},
		{"keyword form", db, "host=h password=Kw1 sslpassword='S p' ${", `"host=h password=[REDACTED] sslpassword='[REDACTED]' ${"`, []string{"Kw1", "S p"}},
		{"jwks userinfo", jwt, "https://svc:Jp7@idp.example/${x", `"https://[REDACTED]@idp.example/${x"`, []string{"Jp7", "svc"}},
		{"jwks token user", jwt, "https://tok123@idp.example/jwks${", `"https://[REDACTED]@idp.example/jwks${"`, []string{"tok123"}},
		{"jwks query", jwt, "https://idp.example/jwks?access_token=Qt9&format=${x", `"https://idp.example/jwks?[REDACTED]"`, []string{"Qt9", "access_token"}},
		{"jwks reference in the query", jwt, "https://idp.example/jwks?k=${A B}", "invalid variable reference in a credential of the value", []string{"A B"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := read(t, fmt.Sprintf(tc.format, tc.value), nil)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error does not contain %q:\n%s", tc.want, msg)
			}
			for _, leak := range tc.leaks {
				if strings.Contains(msg, leak) {
					t.Errorf("error shows %q:\n%s", leak, msg)
				}
			}
		})
	}
	// Other keys still quote the value whole.
	_, err := read(t, "[log]\nlevel = \"de${bug\"\n", nil)
	if err == nil || !strings.Contains(err.Error(), `unclosed ${ in "de${bug"`) {
		t.Errorf("err = %v", err)
	}
}
