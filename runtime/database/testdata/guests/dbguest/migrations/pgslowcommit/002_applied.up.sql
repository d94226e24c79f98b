CREATE TABLE applied (name TEXT NOT NULL);
INSERT INTO applied (name) VALUES ('002');
