-- What snapline's service role may do on the platform's database: read the platform's
-- tables, and write only what snapline owns. Run after `migration up`, as the migration role
-- (it owns snapline's tables and, through the platform's owner role, can grant on the
-- platform's), and again after any `migration up` that adds a table:
--
--   psql "$MIGRATION_URL" -v ON_ERROR_STOP=1 -v service_role=snapline_service \
--        -f deploy/postgres/grants.sql
--
-- Everything else is refused by PostgreSQL: no other column of offers or ad_events (read or
-- written), no other column of targets written, nothing of campaigns, no write to tags,
-- me_files or bands, no DDL.

GRANT USAGE ON SCHEMA public TO :"service_role";

-- Read: the platform's tables the jobs read.
GRANT SELECT ON traits, me_files, me_file_tags, targets, target_bands, trait_groups,
    trait_group_traits, target_band_trait_groups, target_populations TO :"service_role";
-- Of offers and ad_events only the columns that say where a snapshot is missing and which
-- population it comes from: their amounts, media and payment flags are none of snapline's
-- business. campaigns: nothing (no job reads it).
GRANT SELECT (id, me_file_id, target_band_id, matching_tags_snapshot) ON offers, ad_events
    TO :"service_role";

-- Write: populations are snapline's rows.
GRANT INSERT, UPDATE, DELETE ON target_populations TO :"service_role";
SELECT format('GRANT USAGE ON SEQUENCE %s TO %I',
              pg_get_serial_sequence('target_populations', 'id'), :'service_role')
WHERE pg_get_serial_sequence('target_populations', 'id') IS NOT NULL \gexec

-- Write: a NULL snapshot of an offer or ad_event (and its updated_at), nothing else.
GRANT UPDATE (matching_tags_snapshot, updated_at) ON offers, ad_events TO :"service_role";

-- Write: a target's population status and when it was last populated.
GRANT UPDATE (population_status, last_populated_at) ON targets TO :"service_role";

-- snapline's own tables: the leases that keep two runs of one job apart, and the count of
-- populates started per target (what syncs compare their cached bands with), the chunks of
-- a run, the queues an operator paused or scaled, the targets whose populate failed for good, and the
-- last audit.
GRANT SELECT, INSERT, UPDATE, DELETE ON snapline_leases, snapline_populate_runs, snapline_populate_chunks, snapline_queue_pauses,
    snapline_queue_scales, snapline_populate_failures, snapline_audits TO :"service_role";

-- Every attempt that did not end a job done, written by a trigger on the queue table as the
-- role that changed the job (a worker's acknowledgement, an operator's kill), and the jobs
-- done and failed per minute that the services roll up; both pruned with the finished jobs.
GRANT SELECT, INSERT, DELETE ON snapline_job_attempts TO :"service_role";
GRANT SELECT, INSERT, DELETE ON snapline_queue_minutes TO :"service_role";

-- The changes capture's triggers leave for the syncers: taken with SELECT ... FOR UPDATE SKIP
-- LOCKED (which PostgreSQL lets only a role with UPDATE do) and deleted; the triggers write
-- them as the role that enabled capture.
GRANT SELECT, UPDATE, DELETE ON snapline_capture_outbox TO :"service_role";

-- The queues.
GRANT USAGE ON SCHEMA apalis TO :"service_role";
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA apalis TO :"service_role";
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA apalis TO :"service_role";
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA apalis TO :"service_role";
