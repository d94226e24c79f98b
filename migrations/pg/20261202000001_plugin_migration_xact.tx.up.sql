-- xact is the id (xid8, as text) of the plugin's transaction that applied a
-- migration while that transaction's COMMIT is not yet confirmed: the row is
-- written (on the runtime's connection) before the plugin's transaction
-- commits, and xact cleared once it has. A row left with one (a replica
-- stopped, or the connection was lost, during the COMMIT) is settled by the
-- plugin's next load with pg_xact_status: kept if the transaction committed,
-- deleted (and the migration applied again) if it did not.
ALTER TABLE plugin_migrations ADD COLUMN xact text;
