INSERT INTO notes VALUES ('before');
INSERT INTO notes
SELECT (1 / (count(*) - 1))::text FROM notes;
