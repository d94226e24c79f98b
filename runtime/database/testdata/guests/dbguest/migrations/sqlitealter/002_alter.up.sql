-- ALTER TABLE's column forms, which the SQLite authorizer must let through.
CREATE TABLE items (a TEXT, b TEXT, c TEXT);
ALTER TABLE items DROP COLUMN c;
ALTER TABLE items RENAME COLUMN b TO bb;
ALTER TABLE items ADD COLUMN d TEXT;
