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
		// The words BEGIN and ATOMIC open a function's body only there:
		// not as two column names, nor as a parameter and its type.
		"SELECT 1 FROM (VALUES (1, 2)) v(begin, atomic); COMMIT; CREATE TABLE b (x int)":               "COMMIT",
		"SELECT begin, atomic FROM t; COMMIT":                                                          "COMMIT",
		"CREATE FUNCTION f(begin atomic) RETURNS int LANGUAGE sql AS 'SELECT 1'; COMMIT":               "COMMIT",
		"CREATE TABLE t (begin int, atomic int); ROLLBACK":                                             "ROLLBACK",
		"CREATE OR REPLACE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC INSERT INTO t VALUES (1); END; END": "END",
		// An empty body closes where it opens.
		"CREATE FUNCTION f() RETURNS void LANGUAGE sql BEGIN ATOMIC END; COMMIT; CREATE TABLE b (x int)": "COMMIT",
		"CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC /* nothing */ END;\nROLLBACK":                    "ROLLBACK",
	} {
		if got := transactionControl(q); got != want {
			t.Errorf("transactionControl(%q) = %q, want %q", q, got, want)
		}
	}
}
