-- Runs, then fails at COMMIT (a deferred constraint trigger): the
-- migration's row, written before the COMMIT, must not stay.
CREATE TABLE a (x int);
CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused at commit'; END $$;
CREATE CONSTRAINT TRIGGER refuse_t AFTER INSERT ON a DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse();
INSERT INTO a VALUES (1);
