-- A trigger's body holds statements of its own, each ended by a
-- semicolon: SQLite ends the CREATE TRIGGER at its "; END;".
CREATE TABLE notes (note TEXT);
CREATE TABLE note_log (note TEXT);
CREATE TRIGGER log_note AFTER INSERT ON notes BEGIN
  INSERT INTO note_log VALUES (new.note);
  INSERT INTO note_log VALUES ('end; of trigger');
END;
INSERT INTO notes VALUES ('x'); /* a comment; with a semicolon */ INSERT INTO notes VALUES ('y;z');
