-- Semicolons in a dollar quote, a function's BEGIN ATOMIC body, strings,
-- quoted names and comments end no statement; a constraint violated
-- names no position: the failing INSERT begins on line 19.
DO $body$ BEGIN INSERT INTO notes VALUES ('a;b'); END $body$;
CREATE FUNCTION two() RETURNS int LANGUAGE sql
BEGIN ATOMIC
  SELECT 1;
  SELECT 2;
END;
SELECT 'x;y' AS "a;b", E'it\'s;' /* a /* nested; */ comment; */ ;;
INSERT INTO notes VALUES ('one');
  ;
-- INSERT INTO notes VALUES ('one');
SELECT note FROM notes
  WHERE note <> 'q;'
  ORDER BY note;
/* a comment
   over lines; */ INSERT INTO notes VALUES ('two');
INSERT INTO notes VALUES ('three'), ('four'); INSERT INTO notes
  VALUES ('one');
INSERT INTO notes VALUES ('never');
