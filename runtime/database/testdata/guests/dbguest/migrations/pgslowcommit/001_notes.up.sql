-- Its COMMIT takes 3 s (a deferred constraint trigger): long enough for a
-- test to kill the replica while it commits.
CREATE TABLE notes (note TEXT NOT NULL);
CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(3); RETURN NULL; END $$;
CREATE CONSTRAINT TRIGGER slow_commit_t AFTER INSERT ON notes DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit();
INSERT INTO notes VALUES ('committed');
