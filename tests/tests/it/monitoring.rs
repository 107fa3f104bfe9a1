//! The shipped monitoring (`deploy/prometheus/alerts.yaml`, `deploy/grafana/snapline.json`)
//! against a live `/metrics`: every series they query is one a serving process exposes.

use jobs::populate_target;
use snapline_tests::{Backend, Served, TestDb, binary, free_port, http_get, wait_for};
use std::collections::BTreeSet;
use synth::SeedOptions;

/// The workspace's root directory.
fn workspace_file(path: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The `snapline_*` series names in `text` (an expression, a file).
fn series_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("snapline_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// The series names a Prometheus text exposition holds (histograms by their `_bucket`,
/// `_sum` and `_count` series).
fn exposed(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or_default().to_owned())
        .collect()
}

/// Every PromQL expression of the dashboard.
fn dashboard_expressions() -> Vec<String> {
    let dashboard: serde_json::Value =
        serde_json::from_str(&workspace_file("deploy/grafana/snapline.json")).expect("JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8, "{} panels", panels.len());
    panels
        .iter()
        .flat_map(|p| p["targets"].as_array().expect("targets").clone())
        .map(|t| t["expr"].as_str().expect("expr").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_the_alerts_query_only_series_that_metrics_exposes() {
    let test = TestDb::seeded(Backend::Postgres, &SeedOptions::sized(500, 6)).await;
    let port = free_port();
    let _populator = Served::start(
        &binary("populator"),
        &test.url,
        &[
            (
                "SNAPLINE_SERVE__POPULATOR_HTTP",
                format!("127.0.0.1:{port}"),
            ),
            ("RUST_LOG", "error".to_owned()),
        ],
    );
    // A populate that writes rows: its duration and rows written exist from then on.
    populate_target::enqueue(&test.db, domain::TargetId(1))
        .await
        .unwrap();
    wait_for("a populate done", || async {
        http_get(port, "/metrics").is_some_and(|(_, body)| {
            body.contains("snapline_jobs_succeeded_total{queue=\"populate_target\"} 1")
        })
    })
    .await;
    // The gauges read from the database are read at most every 15 s.
    wait_for("the queue gauges read after the populate", || async {
        http_get(port, "/metrics").is_some_and(|(_, body)| {
            body.contains("snapline_queue_jobs{queue=\"populate_target\",status=\"done\"} 1")
        })
    })
    .await;
    let (status, scrape) = http_get(port, "/metrics").expect("/metrics answers");
    assert_eq!(status, 200);
    let exposed = exposed(&scrape);

    let with_histograms = |name: &String| {
        exposed.contains(name)
            || ["_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| name.ends_with(suffix) && exposed.contains(name))
    };
    let dashboard: BTreeSet<String> = dashboard_expressions()
        .iter()
        .flat_map(|e| series_in(e))
        .collect();
    let alerts = series_in(&workspace_file("deploy/prometheus/alerts.yaml"));
    assert!(dashboard.len() >= 10, "{dashboard:?}");
    assert!(alerts.len() >= 6, "{alerts:?}");
    for name in dashboard.iter().chain(&alerts) {
        assert!(
            with_histograms(name),
            "{name} is queried but /metrics does not expose it:\n{scrape}"
        );
    }
    // What the alerts read, with the values this database gives them.
    for line in [
        "snapline_queue_jobs{queue=\"populate_target\",status=\"done\"} 1",
        "snapline_queue_oldest_waiting_seconds{queue=\"sync_me_file\"} 0",
        "snapline_backfill_last_success_timestamp_seconds 0",
        "snapline_jobs_failed_total{queue=\"populate_target\",reason=\"permanent\"} 0",
        "snapline_queue_paused{queue=\"populate_target\"} 0",
        &format!(
            "snapline_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        ),
    ] {
        assert!(scrape.contains(line), "{line} not in:\n{scrape}");
    }
    assert!(
        scrape.contains("snapline_db_pool_connections{state=\"idle\"}")
            && scrape.contains("snapline_db_pool_max_connections "),
        "{scrape}"
    );
}
