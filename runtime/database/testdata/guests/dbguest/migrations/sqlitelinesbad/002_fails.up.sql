-- The failing statement begins on line 6, after a trigger on the same line.
CREATE TABLE after_trigger (x TEXT);
/* a comment
   over lines */ CREATE TRIGGER t2 AFTER INSERT ON after_trigger BEGIN
  SELECT 1;
END; INSERT INTO no_such_table VALUES (1);
