//! An operator's reads and writes of the queue tables (`snapctl jobs`): find jobs, retry,
//! kill and purge them. apalis 1.0's own listing API (`ListTasks`) takes one status and no
//! payload filter, leaves the last error out of the task it returns and pages with OFFSET,
//! and it has no retry, kill or purge on PostgreSQL; so these statements read and write its
//! tables (`apalis.jobs`, SQLite's `Jobs`) the way its own queries do, and only in states
//! no worker holds.

use super::{LAST_ACTIVITY, QueueJob, QueueJobRow, QueueSql};
use crate::{Backend, Db, RepoError};
use sea_orm::{FromQueryResult, Value};
use serde::Serialize;

/// A job's state, as apalis names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum JobStatus {
    /// Waiting to be fetched (or scheduled for later).
    Pending,
    /// Fetched into a worker's buffer, about to run.
    Queued,
    Running,
    Done,
    /// Failed; tried again while attempts are left.
    Failed,
    /// Failed for good (a permanent error or no attempt left), or killed by an operator.
    Killed,
}

impl JobStatus {
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Pending,
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Done,
        JobStatus::Failed,
        JobStatus::Killed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "Pending",
            JobStatus::Queued => "Queued",
            JobStatus::Running => "Running",
            JobStatus::Done => "Done",
            JobStatus::Failed => "Failed",
            JobStatus::Killed => "Killed",
        }
    }

    /// Whether a worker holds the job now: nothing from outside may change it.
    pub fn is_held(self) -> bool {
        matches!(self, JobStatus::Queued | JobStatus::Running)
    }

    /// The statuses a retry takes a job from: finished ones.
    pub const RETRYABLE: [JobStatus; 3] = [JobStatus::Failed, JobStatus::Killed, JobStatus::Done];

    /// The statuses a kill takes a job from: waiting ones.
    pub const KILLABLE: [JobStatus; 2] = [JobStatus::Pending, JobStatus::Failed];

    /// The statuses a job may be deleted in: every one no worker holds.
    pub const DELETABLE: [JobStatus; 4] = [
        JobStatus::Pending,
        JobStatus::Done,
        JobStatus::Failed,
        JobStatus::Killed,
    ];
}

impl std::str::FromStr for JobStatus {
    type Err = String;

    /// Any case: `failed`, `Failed`, `FAILED`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| {
                format!(
                    "unknown job status `{text}`: one of {}",
                    JobStatus::ALL.map(JobStatus::as_str).join(", ")
                )
            })
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which jobs to list; every field narrows.
#[derive(Clone, Debug, Default)]
pub struct JobFilter {
    pub queue: Option<String>,
    pub status: Option<JobStatus>,
    /// Jobs whose payload names this me_file (`"me_file_id":N`).
    pub me_file_id: Option<i64>,
    /// Jobs whose payload names this target (`"target_id":N`).
    pub target_id: Option<i64>,
}

#[derive(FromQueryResult)]
struct IdRow {
    id: String,
}

#[derive(FromQueryResult)]
struct IdStatusRow {
    id: String,
    status: String,
}

/// What an action did to each id it was given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ActionOutcome {
    /// Ids changed.
    pub changed: Vec<String>,
    /// Ids left as they were, with their status (a worker holds them, or they are in a
    /// status the action does not take).
    pub skipped: Vec<(String, String)>,
    /// Ids no job has.
    pub not_found: Vec<String>,
}

/// What an operator does to jobs, by id or to every job matching a filter: the same change
/// either way, and never to a job a worker holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum JobChange {
    /// A finished job due again now with all its attempts.
    Retry,
    /// A waiting job no worker takes again.
    Kill,
    /// Any job no worker holds, row and record gone.
    Delete,
}

impl JobChange {
    pub const ALL: [JobChange; 3] = [JobChange::Retry, JobChange::Kill, JobChange::Delete];

    pub fn name(self) -> &'static str {
        match self {
            JobChange::Retry => "retry",
            JobChange::Kill => "kill",
            JobChange::Delete => "delete",
        }
    }

    /// The statuses it takes a job from.
    pub fn takes(self) -> &'static [JobStatus] {
        match self {
            JobChange::Retry => &JobStatus::RETRYABLE,
            JobChange::Kill => &JobStatus::KILLABLE,
            JobChange::Delete => &JobStatus::DELETABLE,
        }
    }

    /// Whether it applies to a job in `status`.
    pub fn applies_to(self, status: &str) -> bool {
        self.takes().iter().any(|s| s.as_str() == status)
    }
}

/// Jobs changed or deleted per statement by [`JobAdminRepo::change_matching`] and
/// [`JobAdminRepo::purge`]: short locks on a big table.
const BULK_CHUNK: u64 = 5_000;

/// The error an operator's kill leaves on the job, as apalis records results.
const KILLED_BY_OPERATOR: &str = r#"{"Err":"killed by an operator (snapctl jobs kill)"}"#;

/// Operator actions on the queue tables (see the module's comment for why not apalis's API).
pub struct JobAdminRepo<'a> {
    pub(crate) db: &'a Db,
}

impl JobAdminRepo<'_> {
    /// The newest `limit` jobs (by when they last finished, started or were due) matching
    /// each of `filters`, in no particular order (the caller sorts), read in one
    /// statement: one snapshot of the queue, so a job that changes status while they are
    /// read is listed once, under one status (read one filter after the other, a job taken
    /// between the `Pending` and the `Queued` read was listed twice, and one retried between
    /// the `Pending` and the `Failed` read not at all). Each filter stays an index range of
    /// its own (queue, status) with its own limit.
    pub async fn list_each(
        &self,
        filters: &[JobFilter],
        limit: u64,
        payloads_searched: Option<u64>,
    ) -> Result<Vec<QueueJob>, RepoError> {
        if filters.is_empty() {
            return Ok(Vec::new());
        }
        let mut values = Vec::new();
        let parts: Vec<String> = filters
            .iter()
            .enumerate()
            .map(|(i, filter)| {
                let payload = self.payload_conditions(filter, &mut values);
                match payloads_searched {
                    // The payloads of the newest `newest` jobs of the range only: a bounded
                    // read of the index range, then the filter over those rows.
                    Some(newest) if !payload.is_empty() => {
                        let index = self.index_conditions(filter, &mut values);
                        values.push(Value::from(newest as i64));
                        let newest_param = values.len();
                        values.push(Value::from(limit as i64));
                        // Only ids, payloads and activity are read for the search; the
                        // columns shown, for the matches alone.
                        format!(
                            "SELECT * FROM ({} WHERE id IN (SELECT id FROM \
                             (SELECT id, job, {LAST_ACTIVITY} AS activity FROM {} {} \
                              ORDER BY {LAST_ACTIVITY} DESC, id DESC LIMIT ${newest_param}) AS recent \
                             WHERE {} ORDER BY activity DESC, id DESC LIMIT ${})) AS part{i}",
                            self.sql().select_jobs(),
                            self.table(),
                            where_all(&index),
                            payload.join(" AND "),
                            values.len()
                        )
                    }
                    _ => {
                        let mut conditions = self.index_conditions(filter, &mut values);
                        conditions.extend(payload);
                        values.push(Value::from(limit as i64));
                        format!(
                            "SELECT * FROM ({} {} ORDER BY {} DESC, id DESC LIMIT ${}) AS part{i}",
                            self.sql().select_jobs(),
                            where_all(&conditions),
                            LAST_ACTIVITY,
                            values.len()
                        )
                    }
                }
            })
            .collect();
        let rows: Vec<QueueJobRow> = self
            .db
            .fetch_all(self.db.conn(), parts.join(" UNION ALL "), values)
            .await?;
        Ok(rows.into_iter().map(QueueJob::from).collect())
    }

    /// `WHERE ...` for `filter` (empty when it filters nothing), its values pushed onto
    /// `values`.
    fn conditions(&self, filter: &JobFilter, values: &mut Vec<Value>) -> String {
        let mut conditions = self.index_conditions(filter, values);
        conditions.extend(self.payload_conditions(filter, values));
        where_all(&conditions)
    }

    /// The filter's queue and status: what the `(job_type, status, ...)` index serves.
    fn index_conditions(&self, filter: &JobFilter, values: &mut Vec<Value>) -> Vec<String> {
        let mut conditions = Vec::new();
        if let Some(queue) = &filter.queue {
            values.push(Value::from(queue.clone()));
            conditions.push(format!("job_type = ${}", values.len()));
        }
        if let Some(status) = filter.status {
            values.push(Value::from(status.as_str()));
            conditions.push(format!("status = ${}", values.len()));
        }
        conditions
    }

    /// The filter's me_file and target: read in each job's payload.
    fn payload_conditions(&self, filter: &JobFilter, values: &mut Vec<Value>) -> Vec<String> {
        let mut conditions = Vec::new();
        for (key, id) in [
            ("me_file_id", filter.me_file_id),
            ("target_id", filter.target_id),
        ] {
            if let Some(id) = id {
                conditions.push(self.payload_names(key, id, values));
            }
        }
        conditions
    }

    /// The job with this id, if any.
    pub async fn get(&self, id: &str) -> Result<Option<QueueJob>, RepoError> {
        let sql = format!("{} WHERE id = $1", self.sql().select_jobs());
        let row: Option<QueueJobRow> = self
            .db
            .fetch_optional(self.db.conn(), sql, vec![Value::from(id)])
            .await?;
        Ok(row.map(QueueJob::from))
    }

    /// Jobs of `queue` in `status` (that finished or were due before `older_than_secs`
    /// ago, when given).
    pub async fn count(
        &self,
        queue: &str,
        status: JobStatus,
        older_than_secs: Option<u64>,
    ) -> Result<i64, RepoError> {
        let table = self.table();
        let (age, mut values) = self.older_than(older_than_secs, 3);
        values.insert(0, Value::from(queue));
        values.insert(1, Value::from(status.as_str()));
        let row: crate::rows::Count = self
            .db
            .fetch_one(
                self.db.conn(),
                "job count",
                format!(
                    "SELECT COUNT(*) AS count FROM {table} WHERE job_type = $1 AND status = $2{age}"
                ),
                values,
            )
            .await?;
        Ok(row.count)
    }

    /// Applies `change` to each of `ids` whose status it takes (never a job a worker holds),
    /// then says what became of each id.
    pub async fn change(
        &self,
        change: JobChange,
        ids: &[String],
    ) -> Result<ActionOutcome, RepoError> {
        if ids.is_empty() {
            return Ok(ActionOutcome::default());
        }
        let table = self.table();
        let ids_in = self.db.in_id_list("id", 1);
        let from = quoted_statuses(change.takes());
        let changed: Vec<IdRow> = self
            .db
            .fetch_all(
                self.db.conn(),
                format!(
                    "{} WHERE {ids_in} AND status IN ({from}) RETURNING id",
                    self.change_sql(change)
                ),
                vec![self.text_list(ids)],
            )
            .await?;
        let changed: Vec<String> = changed.into_iter().map(|r| r.id).collect();
        let rest: Vec<String> = ids
            .iter()
            .filter(|id| !changed.contains(id))
            .cloned()
            .collect();
        let found: Vec<IdStatusRow> = if rest.is_empty() {
            Vec::new()
        } else {
            self.db
                .fetch_all(
                    self.db.conn(),
                    format!("SELECT id, status FROM {table} WHERE {ids_in}"),
                    vec![self.text_list(&rest)],
                )
                .await?
        };
        let mut outcome = ActionOutcome {
            changed,
            ..ActionOutcome::default()
        };
        for id in rest {
            match found.iter().find(|r| r.id == id) {
                Some(row) => outcome.skipped.push((id, row.status.clone())),
                None => outcome.not_found.push(id),
            }
        }
        Ok(outcome)
    }

    /// Jobs matching `filter` that `change` would take, counted up to `cap`.
    pub async fn count_matching(
        &self,
        change: JobChange,
        filter: &JobFilter,
        cap: u64,
    ) -> Result<i64, RepoError> {
        let table = self.table();
        let mut values = Vec::new();
        let condition = self.matching(change, filter, &mut values);
        values.push(Value::from(cap as i64));
        let row: crate::rows::Count = self
            .db
            .fetch_one(
                self.db.conn(),
                "jobs matching",
                format!(
                    "SELECT COUNT(*) AS count FROM (SELECT 1 FROM {table} {condition} LIMIT ${}) capped",
                    values.len()
                ),
                values,
            )
            .await?;
        Ok(row.count)
    }

    /// Applies `change` to every job matching `filter` whose status it takes, in statements
    /// of [`BULK_CHUNK`] jobs (short locks on a big table); returns how many it changed. A
    /// changed job no longer matches (its status left the change's), so the chunks end.
    pub async fn change_matching(
        &self,
        change: JobChange,
        filter: &JobFilter,
    ) -> Result<u64, RepoError> {
        let table = self.table();
        let mut values = Vec::new();
        let condition = self.matching(change, filter, &mut values);
        let sql = format!(
            "{} WHERE id IN (SELECT id FROM {table} {condition} LIMIT {BULK_CHUNK})",
            self.change_sql(change)
        );
        self.until_a_chunk_falls_short(&sql, values).await
    }

    /// Runs `sql` (a change of at most [`BULK_CHUNK`] jobs that no longer match once
    /// changed) again until one run changes fewer; returns the jobs changed in all.
    async fn until_a_chunk_falls_short(
        &self,
        sql: &str,
        values: Vec<Value>,
    ) -> Result<u64, RepoError> {
        let mut changed = 0;
        loop {
            let n = self
                .db
                .execute(self.db.conn(), sql.to_owned(), values.clone())
                .await?;
            changed += n;
            if n < BULK_CHUNK {
                return Ok(changed);
            }
        }
    }

    /// `WHERE` of the jobs matching `filter` in a status `change` takes.
    fn matching(&self, change: JobChange, filter: &JobFilter, values: &mut Vec<Value>) -> String {
        let takes = format!("status IN ({})", quoted_statuses(change.takes()));
        match self.conditions(filter, values) {
            conditions if conditions.is_empty() => format!("WHERE {takes}"),
            conditions => format!("{conditions} AND {takes}"),
        }
    }

    /// The statement head of `change` on the job table, for a `WHERE` to follow.
    fn change_sql(&self, change: JobChange) -> String {
        let table = self.table();
        let now = self.sql().now();
        match change {
            // due again now with all its attempts (its last error kept until it runs)
            JobChange::Retry => format!(
                "UPDATE {table} SET status = 'Pending', attempts = 0, run_at = {now}, \
                 lock_by = NULL, lock_at = NULL, done_at = NULL"
            ),
            JobChange::Kill => format!(
                "UPDATE {table} SET status = 'Killed', done_at = {now}, last_result = {}",
                match self.db.backend() {
                    Backend::Postgres => format!("'{KILLED_BY_OPERATOR}'::jsonb"),
                    Backend::Sqlite => format!("'{KILLED_BY_OPERATOR}'"),
                }
            ),
            JobChange::Delete => format!("DELETE FROM {table}"),
        }
    }

    /// Deletes the jobs of `queue` in `status` (not one a worker holds) that finished, or
    /// were due, more than `older_than_secs` ago; returns how many.
    pub async fn purge(
        &self,
        queue: &str,
        status: JobStatus,
        older_than_secs: u64,
    ) -> Result<u64, RepoError> {
        if status.is_held() {
            return Ok(0);
        }
        let table = self.table();
        let (age, mut values) = self.older_than(Some(older_than_secs), 3);
        values.insert(0, Value::from(queue));
        values.insert(1, Value::from(status.as_str()));
        let sql = format!(
            "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} \
             WHERE job_type = $1 AND status = $2{age} LIMIT {BULK_CHUNK})"
        );
        self.until_a_chunk_falls_short(&sql, values).await
    }

    /// ` AND COALESCE(done_at, run_at) <= (now - $param seconds)`, or nothing.
    fn older_than(&self, secs: Option<u64>, param: usize) -> (String, Vec<Value>) {
        match secs {
            None => (String::new(), vec![]),
            Some(secs) => (
                format!(
                    " AND COALESCE(done_at, run_at) <= {}",
                    self.sql().secs_ago(param)
                ),
                vec![self.sql().secs(secs)],
            ),
        }
    }

    /// A condition: the payload holds `"key":id` (as snapline and the platform's plain SQL
    /// write it, without spaces), matched on the bytes so that a payload that is not valid
    /// text or JSON cannot fail the whole listing.
    fn payload_names(&self, key: &str, id: i64, values: &mut Vec<Value>) -> String {
        let mut any = Vec::new();
        let job = self.sql().payload();
        for end in [",", "}"] {
            values.push(Value::from(format!("\"{key}\":{id}{end}")));
            let param = values.len();
            any.push(match self.db.backend() {
                Backend::Postgres => format!("position(convert_to(${param}, 'UTF8') in {job}) > 0"),
                Backend::Sqlite => format!("instr({job}, CAST(${param} AS BLOB)) > 0"),
            });
        }
        format!("({})", any.join(" OR "))
    }

    fn sql(&self) -> QueueSql {
        QueueSql::of(self.db)
    }

    fn text_list(&self, items: &[String]) -> Value {
        match self.db.backend() {
            Backend::Postgres => Value::from(items.to_vec()),
            Backend::Sqlite => Value::from(serde_json::to_string(items).unwrap_or_default()),
        }
    }

    fn table(&self) -> &'static str {
        self.sql().jobs()
    }
}

/// `'Failed', 'Killed'`: statuses as an SQL list (constants, never input).
fn quoted_statuses(statuses: &[JobStatus]) -> String {
    statuses
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `WHERE` and `conditions` joined with `AND`; empty for none.
fn where_all(conditions: &[String]) -> String {
    if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    }
}
