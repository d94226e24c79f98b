-- An error raised in a DO block names no position in the file: the DO
-- begins on line 4.
INSERT INTO notes VALUES ('before');
DO $$
DECLARE n int;
BEGIN
  SELECT count(*) INTO n FROM notes;
  RAISE EXCEPTION 'found % notes; too many', n;
END
$$;
INSERT INTO notes VALUES ('after');
