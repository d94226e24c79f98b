-- Ends its own backend: the error of a server's shutdown (57P01), though
-- the server runs on.
SELECT pg_terminate_backend(pg_backend_pid());
