INSERT INTO applied (name) VALUES ('003');
