//! Change capture and the bridge install code that runs as the migration role (SECURITY
//! DEFINER) in the platform's database. No other login may borrow that role's rights: not by shadowing a
//! relation the code names with a temporary table of its own, not by calling the code
//! directly, not by hanging it on a trigger of its own. Run as the roles a deployment has
//! (`deploy/postgres/roles.sql` and `grants.sql`), the platform's application role and a
//! login with no rights at all.

use super::{as_role, assert_ok, run};
use snapline_tests::{TestDb, TestRoles, execute, scalar};
use sqlx::Connection;

/// The platform's database as deployed: its roles beside it.
struct Deployment {
    // Before `test`: the roles' rights in the database go before the database.
    _roles: TestRoles,
    test: TestDb,
    service: String,
    app: String,
    stranger: String,
}

impl Deployment {
    /// The platform's schema and data, snapline's roles and grants, targets 1, 2, 3 and 5
    /// populated, capture enabled by the migration role; an application role that writes the
    /// platform's tags and bands (as the platform's own code does, owning nothing), and a
    /// login with no right granted.
    async fn new() -> Deployment {
        let test = TestDb::platform().await;
        let (roles, migration_url) = super::deployed(&test, &["app", "stranger"]).await;
        let deployment = Deployment {
            service: roles.name("service").to_owned(),
            app: roles.name("app").to_owned(),
            stranger: roles.name("stranger").to_owned(),
            _roles: roles,
            test,
        };
        let url = deployment.test.url.clone();
        for target in ["1", "2", "3", "5"] {
            assert_ok(
                &run("populator", &url, &["run", "--target", target]),
                "populate",
            );
        }
        assert_ok(
            &run("snapctl", &migration_url, &["capture", "enable"]),
            "capture enable as the migration role",
        );
        assert_ok(
            &run("snapctl", &migration_url, &["bridge", "enable"]),
            "bridge enable as the migration role",
        );
        execute(
            &deployment.test.db,
            &format!(
                "CREATE ROLE \"{app}\" LOGIN; CREATE ROLE \"{stranger}\" LOGIN; \
                 GRANT SELECT, INSERT, UPDATE, DELETE ON me_files, me_file_tags, target_bands, \
                   target_band_trait_groups, trait_group_traits, traits TO \"{app}\"; \
                 GRANT INSERT ON oban_jobs TO \"{app}\"; \
                 GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO \"{app}\"",
                app = deployment.app,
                stranger = deployment.stranger
            ),
        )
        .await;
        execute(&deployment.test.db, "DELETE FROM apalis.jobs").await;
        deployment
    }

    /// A session of `role`, alone, as the platform's code or an attacker would open it.
    async fn session(&self, role: &str) -> sqlx::PgConnection {
        sqlx::PgConnection::connect(&as_role(&self.test.url, role))
            .await
            .unwrap_or_else(|e| panic!("connect as {role}: {e}"))
    }

    /// Every relation and function outside the temporary schemas, with its owner.
    async fn objects(&self) -> Vec<(String, String)> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT n.nspname || '.' || c.relname, pg_get_userbyid(c.relowner)::text \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname NOT LIKE 'pg\\_temp%' AND n.nspname NOT LIKE 'pg\\_toast%' \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
             UNION ALL \
             SELECT p.oid::regprocedure::text, pg_get_userbyid(p.proowner)::text \
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
             WHERE n.nspname NOT LIKE 'pg\\_temp%' \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
        )
        .fetch_all(self.test.db.pg_pool().unwrap())
        .await
        .expect("catalog");
        rows
    }

    /// Whether `role` holds a right the escalation hands out: DELETE on the platform's
    /// offers, ad_events or campaigns (no role of a deployment has it but the owner).
    async fn holds_escalated_rights(&self, role: &str) -> bool {
        scalar(
            &self.test.db,
            &format!(
                "SELECT COUNT(*) FROM unnest(ARRAY['public.offers', 'public.ad_events', 'public.campaigns']) AS t \
                 WHERE has_table_privilege('{role}', t, 'DELETE') \
                    OR has_table_privilege('{role}', t, 'TRUNCATE')"
            ),
        )
        .await
            > 0
    }
}

/// In `session`: temporary tables `targets` and `jobs` (names the capture code uses) open to
/// everyone, whose writes run a trigger that hands its session's login the
/// platform's tables and creates a table, as whoever happens to be running it.
async fn lay_the_trap(session: &mut sqlx::PgConnection) {
    sqlx::raw_sql(
        "CREATE FUNCTION pg_temp.escalate() RETURNS trigger LANGUAGE plpgsql AS $f$ \
         BEGIN \
           EXECUTE format('GRANT DELETE, TRUNCATE ON public.offers, public.ad_events, public.campaigns TO %I', session_user); \
           EXECUTE format('CREATE TABLE IF NOT EXISTS public.%I (who text)', 'escalated_by_' || session_user); \
           RETURN NULL; \
         END $f$; \
         CREATE TEMP TABLE targets (id bigint, population_status text); \
         INSERT INTO targets VALUES (424242, 'populated'), (1, 'populated'), (2, 'populated'); \
         CREATE TEMP TABLE jobs (id text); \
         GRANT ALL ON targets, jobs TO PUBLIC; \
         CREATE TRIGGER escalate AFTER INSERT OR UPDATE OR DELETE ON pg_temp.targets \
           FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.escalate(); \
         CREATE TRIGGER escalate AFTER INSERT OR UPDATE OR DELETE ON pg_temp.jobs \
           FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.escalate()",
    )
    .execute(session)
    .await
    .expect("a temporary table and trigger of the session's own");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_login_borrows_the_migration_roles_rights_through_capture() {
    let deployment = Deployment::new().await;
    let db = &deployment.test.db;
    let before = deployment.objects().await;
    let statuses =
        "SELECT string_agg(id || ':' || population_status, ',' ORDER BY id) FROM targets";
    let statuses_before: (String,) = sqlx::query_as(statuses)
        .fetch_one(db.pg_pool().unwrap())
        .await
        .unwrap();
    let capture_functions: Vec<(String,)> = sqlx::query_as(
        "SELECT p.oid::regprocedure::text FROM pg_proc p \
         WHERE p.proname LIKE 'snapline\\_capture\\_v%' OR p.proname LIKE 'snapline\\_bridge\\_v%' \
         ORDER BY 1",
    )
    .fetch_all(db.pg_pool().unwrap())
    .await
    .unwrap();
    assert!(capture_functions.len() > 4, "{capture_functions:?}");

    // Every role but the owner calls every capture function directly, and hangs each trigger
    // function on a table of its own, from a session with the trap laid. What each attempt
    // answered is judged below, after what matters most: whether anything was borrowed.
    let mut answers = Vec::new();
    for role in [&deployment.stranger, &deployment.service, &deployment.app] {
        let mut session = deployment.session(role).await;
        lay_the_trap(&mut session).await;
        for (function,) in &capture_functions {
            let name = function.split('(').next().unwrap();
            let args = if function.contains("()") {
                "".to_owned()
            } else if function.contains("bytea") {
                "'sync_me_file', convert_to('{\"me_file_id\":1}', 'UTF8')".to_owned()
            } else {
                "ARRAY[424242, 1, 2, 5]::bigint[]".to_owned()
            };
            let mut attempts = vec![format!("SELECT {name}({args})")];
            if function.contains("()") {
                attempts.push(format!(
                    "CREATE TRIGGER borrowed AFTER INSERT ON pg_temp.jobs \
                     FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
                ));
            }
            for sql in attempts {
                let answer = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
                    .execute(&mut session)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                answers.push((role.to_owned(), sql, answer));
            }
        }
        session.close().await.unwrap();
    }

    // The platform's own writes, from a session with the trap laid, still push their jobs,
    // and run nothing of the session's as the migration role.
    let mut app = deployment.session(&deployment.app).await;
    lay_the_trap(&mut app).await;
    sqlx::raw_sql(
        "UPDATE target_bands SET updated_at = now() WHERE id = 101; \
         INSERT INTO me_file_tags (me_file_id, trait_id, tag_value, modified_date, modified_by, added_date, added_by) \
         VALUES (7, 32, 'Tennis', now(), 1, now(), 1); \
         INSERT INTO oban_jobs (queue, worker, args) VALUES \
           ('targets', 'Qlarius.Jobs.SyncMeFileToTargetPopulationsWorker', '{\"me_file_id\": 7}'), \
           ('targets', 'Qlarius.Jobs.PopulateTargetWorker', '{\"target_id\": 1}')",
    )
    .execute(&mut app)
    .await
    .expect("the platform's writes succeed with capture on");
    app.close().await.unwrap();
    let after = deployment.objects().await;
    let created: Vec<_> = after.iter().filter(|o| !before.contains(o)).collect();
    let gone: Vec<_> = before.iter().filter(|o| !after.contains(o)).collect();
    assert!(
        created.is_empty() && gone.is_empty(),
        "no relation or function was created, dropped or changed owner: created {created:?}, gone {gone:?}"
    );
    for role in [&deployment.stranger, &deployment.service, &deployment.app] {
        assert!(
            !deployment.holds_escalated_rights(role).await,
            "{role} was granted the platform's tables"
        );
    }
    let pushed: Vec<(String, String)> =
        sqlx::query_as("SELECT job_type, convert_from(job, 'UTF8') FROM apalis.jobs ORDER BY 1, 2")
            .fetch_all(db.pg_pool().unwrap())
            .await
            .unwrap();
    assert_eq!(
        pushed,
        [
            (
                "populate_target".to_owned(),
                r#"{"target_id":1}"#.to_owned()
            ),
            ("sync_me_file".to_owned(), r#"{"me_file_id":7}"#.to_owned()),
        ],
        "the platform's writes pushed their jobs, nothing else was pushed"
    );

    let statuses_after: (String,) = sqlx::query_as(statuses)
        .fetch_one(db.pg_pool().unwrap())
        .await
        .unwrap();
    assert_eq!(
        statuses_after.0,
        statuses_before.0.replace("1:populated", "1:populating"),
        "only the edited band's target is repopulating"
    );

    // Each direct call and borrowed trigger was refused for want of the right to execute.
    for (role, sql, answer) in answers {
        match answer {
            Err(err) if err.contains("permission denied for function") => {}
            other => panic!("{role}: {sql}: {other:?}"),
        }
    }

    // Every SECURITY DEFINER function capture installs fixes its search_path, pg_temp last.
    let definers: Vec<(String, Option<Vec<String>>)> = sqlx::query_as(
        "SELECT p.oid::regprocedure::text, p.proconfig FROM pg_proc p \
         WHERE (p.proname LIKE 'snapline\\_capture\\_v%' OR p.proname LIKE 'snapline\\_bridge\\_v%') \
           AND p.prosecdef",
    )
    .fetch_all(db.pg_pool().unwrap())
    .await
    .unwrap();
    assert!(!definers.is_empty());
    for (function, config) in definers {
        let path = config
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.starts_with("search_path="))
            .unwrap_or_default();
        assert_eq!(path, "search_path=pg_catalog, pg_temp", "{function}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_status_names_an_installed_unsafe_version() {
    let test = TestDb::platform().await;
    assert_ok(&run("migration", &test.url, &["up"]), "migration up");
    // What version 2 installed, in the shape that matters: a pushing function anyone could
    // call, running as its owner with the caller's temporary schema first.
    execute(
        &test.db,
        "CREATE FUNCTION snapline_capture_v2_push_syncs(me_file_ids bigint[]) RETURNS void \
         LANGUAGE sql SECURITY DEFINER AS $f$ SELECT $f$; \
         CREATE FUNCTION snapline_capture_v2_tags_ins() RETURNS trigger LANGUAGE plpgsql \
         AS $f$ BEGIN PERFORM snapline_capture_v2_push_syncs(ARRAY[]::bigint[]); RETURN NULL; END $f$; \
         CREATE TRIGGER snapline_capture_v2_tags_ins AFTER INSERT ON me_file_tags \
         FOR EACH STATEMENT EXECUTE FUNCTION snapline_capture_v2_tags_ins()",
    )
    .await;
    let out = run("snapctl", &test.url, &["capture", "status"]);
    let stdout = assert_ok(&out, "capture status");
    assert!(
        stdout.contains("UNSAFE") && stdout.contains("snapctl capture enable"),
        "{stdout}"
    );
    assert_ok(&run("snapctl", &test.url, &["capture", "enable"]), "enable");
    let stdout = assert_ok(&run("snapctl", &test.url, &["capture", "status"]), "status");
    assert!(!stdout.contains("UNSAFE"), "{stdout}");
    assert_eq!(
        scalar(
            &test.db,
            "SELECT COUNT(*) FROM pg_proc WHERE proname LIKE 'snapline\\_capture\\_v2\\_%'"
        )
        .await,
        0,
        "enable replaced version 2"
    );
}
