-- xact: see the PostgreSQL variant. SQLite has no transaction ids to ask
-- about; the column is always NULL here.
ALTER TABLE plugin_migrations ADD COLUMN xact TEXT;
