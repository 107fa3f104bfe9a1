-- Only when snapline's events insert into the platform's Oban queue
-- (`events.me_file_bands_changed_sql` = deploy/events/oban_reconcile_offers.sql): what that
-- statement needs of `oban_jobs`, as the service role, and nothing more. Run after
-- grants.sql, as the migration role (a member of the platform's owner role, which owns
-- `oban_jobs`):
--
--   psql "$MIGRATION_URL" -v ON_ERROR_STOP=1 -v service_role=snapline_service \
--        -f deploy/postgres/grants_events.sql
--
-- The recipe reads four columns (its uniqueness check) and inserts five; every other
-- column takes Oban's default. No update or delete of the platform's jobs.

GRANT SELECT (worker, state, args, inserted_at),
      INSERT (state, queue, worker, args, max_attempts)
    ON oban_jobs TO :"service_role";
SELECT format('GRANT USAGE ON SEQUENCE %s TO %I',
              pg_get_serial_sequence('oban_jobs', 'id'), :'service_role')
WHERE pg_get_serial_sequence('oban_jobs', 'id') IS NOT NULL \gexec
