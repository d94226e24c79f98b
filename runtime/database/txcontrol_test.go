package database

import "testing"

func TestTransactionControl(t *testing.T) {
	for q, want := range map[string]string{
		"CREATE TABLE a (x int); COMMIT; CREATE TABLE b (x int)": "COMMIT",
		"begin; create table a (x int)":                          "BEGIN",
		"START TRANSACTION":                                      "START TRANSACTION",
		"end":                                                    "END",
		"Abort;":                                                 "ABORT",
		"ROLLBACK":                                               "ROLLBACK",
		"ROLLBACK WORK":                                          "ROLLBACK",
		"COMMIT PREPARED 'x'":                                    "COMMIT",
		"SAVEPOINT s; ROLLBACK TO SAVEPOINT s; RELEASE s":                                                 "",
		"ROLLBACK TO s; ROLLBACK TRANSACTION TO s; ROLLBACK WORK TO s":                                    "",
		"INSERT INTO t VALUES ('commit; begin')":                                                          "",
		"-- COMMIT\nSELECT 1":                                                                             "",
		"CREATE FUNCTION f() RETURNS int AS $$ BEGIN RETURN 1; END $$ LANGUAGE plpgsql":                   "",
		"SELECT CASE WHEN true THEN 1 END":                                                                "",
		"CREATE TABLE commits (x int)":                                                                    "",
		"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END; CREATE TABLE t (x int)": "",
		"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END; COMMIT":       "COMMIT",
		`SELECT 'x\''; COMMIT; --'`:                                                                       "COMMIT", // as read with standard_conforming_strings off
	} {
		if got := transactionControl(q); got != want {
			t.Errorf("transactionControl(%q) = %q, want %q", q, got, want)
		}
	}
}
