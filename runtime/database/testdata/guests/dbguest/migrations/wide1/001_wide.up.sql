CREATE TABLE wide (id int PRIMARY KEY, a text NOT NULL);
INSERT INTO wide VALUES (1, 'x');
