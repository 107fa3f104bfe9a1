-- events.me_file_bands_changed_sql: enqueue the platform's offer reconciliation, as its own
-- sync did, in snapline's transaction. $1 is the bigint[] of me_files whose band changed.
-- Unique per me_file for 60 s among waiting jobs, as the Oban worker declares
-- (unique: [period: 60, keys: [:me_file_id], states: [:available, :scheduled]]).
INSERT INTO oban_jobs (state, queue, worker, args, max_attempts)
SELECT 'available', 'offers', 'Qlarius.Jobs.ReconcileOffersForMeFileWorker',
       jsonb_build_object('me_file_id', m), 3
FROM unnest($1::bigint[]) AS m
WHERE NOT EXISTS (
    SELECT 1 FROM oban_jobs j
    WHERE j.worker = 'Qlarius.Jobs.ReconcileOffersForMeFileWorker'
      AND j.state IN ('available', 'scheduled')
      AND j.args @> jsonb_build_object('me_file_id', m)
      AND j.inserted_at > timezone('UTC', now()) - interval '60 seconds'
)
