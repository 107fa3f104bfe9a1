//! `snapctl doctor` on the platform's database as deployed: it names each miss of the
//! switch-over with what to do, exits 1 while any remains, and 0 once every step is done.

use super::{as_role, assert_ok, run, run_with};

/// The services never migrate (the migration role does).
const NO_MIGRATE: [(&str, &str); 1] = [("SNAPLINE_DATABASE__MIGRATE_ON_START", "false")];
use snapline_tests::{TestDb, execute};

/// `snapctl doctor --json` as `url`'s role: its exit code and checks by name.
fn doctor(url: &str, service: &str) -> (Option<i32>, serde_json::Map<String, serde_json::Value>) {
    let out = run(
        "snapctl",
        url,
        &[
            "doctor",
            "--json",
            "--service-role",
            service,
            "--replicas",
            "1",
        ],
    );
    let checks: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let by_name = checks
        .into_iter()
        .map(|c| (c["name"].as_str().unwrap().to_owned(), c))
        .collect();
    (out.status.code(), by_name)
}

fn misses(checks: &serde_json::Map<String, serde_json::Value>) -> Vec<String> {
    checks
        .iter()
        .filter(|(_, c)| c["ok"] == false)
        .map(|(name, _)| name.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_each_miss_and_passes_once_the_switch_is_ready() {
    let test = TestDb::platform().await;
    let (roles, migration_url) = super::deployed(&test, &[]).await;
    let service = roles.name("service");
    // The platform's own hourly backfill ran an hour ago, in its own worker.
    execute(
        &test.db,
        "INSERT INTO oban_jobs (state, queue, worker, args, inserted_at) VALUES \
         ('completed', 'maintenance', 'Qlarius.Jobs.BackfillMissingSnapshotsWorker', '{}', \
          timezone('UTC', now()) - interval '1 hour')",
    )
    .await;
    // A right the service role must not hold.
    execute(
        &test.db,
        &format!("GRANT UPDATE ON me_file_tags TO \"{service}\""),
    )
    .await;

    let (code, checks) = doctor(&migration_url, service);
    assert_eq!(code, Some(1), "{checks:?}");
    let mut missed = misses(&checks);
    missed.sort();
    assert!(
        [
            "bridge",
            "capture",
            "platform's hourly backfill",
            "service role"
        ]
        .iter()
        .all(|m| missed.contains(&m.to_string())),
        "{missed:?}"
    );
    for ok in [
        "migrations",
        "indexes",
        "connections",
        "lock table",
        "idle in transaction",
    ] {
        assert_eq!(checks[ok]["ok"], true, "{ok}: {}", checks[ok]);
    }
    assert!(
        checks["service role"]["found"]
            .as_str()
            .unwrap()
            .contains("UPDATE ON me_file_tags"),
        "{}",
        checks["service role"]
    );
    assert!(
        checks["capture"]["fix"]
            .as_str()
            .unwrap()
            .contains("snapctl capture enable")
    );

    // Every step it asked for.
    execute(
        &test.db,
        &format!("REVOKE UPDATE ON me_file_tags FROM \"{service}\""),
    )
    .await;
    assert_ok(
        &run("snapctl", &migration_url, &["capture", "enable"]),
        "capture enable",
    );
    assert_ok(
        &run("snapctl", &migration_url, &["bridge", "enable"]),
        "bridge enable",
    );
    let service_url = as_role(&test.url, service);
    for target in ["1", "2", "3", "5"] {
        assert_ok(
            &run_with(
                "populator",
                &service_url,
                &["run", "--target", target],
                &NO_MIGRATE,
            ),
            "populate",
        );
    }
    // Legacy rows without a snapshot: named until the backfill has run.
    execute(
        &test.db,
        "UPDATE target_populations SET matching_tags_snapshot = NULL WHERE me_file_id % 3 = 0",
    )
    .await;
    let (code, checks) = doctor(&migration_url, service);
    assert_eq!(
        (code, misses(&checks)),
        (Some(1), vec!["NULL snapshots".to_owned()])
    );
    assert!(
        checks["NULL snapshots"]["fix"]
            .as_str()
            .unwrap()
            .contains("backfiller")
    );
    assert_ok(
        &run_with("backfiller", &service_url, &["run"], &NO_MIGRATE),
        "backfill",
    );
    let (code, checks) = doctor(&migration_url, service);
    assert_eq!(misses(&checks), Vec::<String>::new(), "{checks:?}");
    assert_eq!(code, Some(0));
    let text = assert_ok(
        &run(
            "snapctl",
            &migration_url,
            &["doctor", "--service-role", service, "--replicas", "1"],
        ),
        "doctor",
    );
    assert!(text.contains("ready to switch over"), "{text}");
}
