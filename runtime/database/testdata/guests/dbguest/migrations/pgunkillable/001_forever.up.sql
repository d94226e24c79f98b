-- Never ends, whatever cancels it: it turns off the server's statement
-- timeout and its check for a gone client, and its loop catches the
-- cancel. limits.migration_timeout gives it up; the runtime must then end
-- its backend, or each load would leave one more running.
DO $$ BEGIN
	PERFORM set_config('client_connection_check_interval', '0', true);
	PERFORM set_config('statement_timeout', '0', true);
	LOOP BEGIN PERFORM pg_sleep(0.2); EXCEPTION WHEN query_canceled THEN NULL; END; END LOOP;
END $$;
