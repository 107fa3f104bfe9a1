//! OpenTelemetry traces, opt-in: a `syncer serve` started with `OTEL_EXPORTER_OTLP_ENDPOINT`
//! sends its spans to an OTLP/HTTP receiver started here (a job span with its queue, id and
//! attempt; the sync's span and the spans of its statements' phases beneath it, in one
//! trace), and its JSON log lines carry that trace id.

use jobs::sync_me_file;
use snapline_tests::{Backend, TestDb, binary, wait_for};
use std::sync::{Arc, Mutex};
use synth::SeedOptions;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// The JSON bodies POSTed to `/v1/traces`.
type Received = Arc<Mutex<Vec<serde_json::Value>>>;

/// A minimal OTLP/HTTP receiver (JSON bodies, HTTP/1.1 with keep-alive) on a free port.
async fn otlp_receiver() -> (u16, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received: Received = Arc::default();
    let bodies = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let bodies = bodies.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(socket);
                loop {
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let mut length = 0usize;
                    loop {
                        let mut header = String::new();
                        reader.read_line(&mut header).await.unwrap();
                        let header = header.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = header.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).await.unwrap();
                    if request_line.contains("/v1/traces")
                        && let Ok(json) = serde_json::from_slice(&body)
                    {
                        bodies.lock().unwrap().push(json);
                    }
                    reader
                        .get_mut()
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
                        .await
                        .unwrap();
                }
            });
        }
    });
    (port, received)
}

/// One exported span: (trace id, span id, parent span id, name, attributes as text).
#[derive(Debug, Clone)]
struct Span {
    trace: String,
    id: String,
    parent: String,
    name: String,
    attributes: Vec<(String, String)>,
}

impl Span {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Every span of the received bodies, with the `service.name` of its resource.
fn spans(received: &Received) -> Vec<(String, Span)> {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut spans = Vec::new();
    for body in received.lock().unwrap().iter() {
        for resource in body["resourceSpans"].as_array().into_iter().flatten() {
            let service = resource["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["key"] == "service.name")
                .map(|a| text(&a["value"]["stringValue"]))
                .unwrap_or_default();
            for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                for span in scope["spans"].as_array().into_iter().flatten() {
                    let attributes = span["attributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|a| {
                            let value = a["value"]
                                .as_object()
                                .and_then(|v| v.values().next())
                                .map(text)
                                .unwrap_or_default();
                            (text(&a["key"]), value)
                        })
                        .collect();
                    spans.push((
                        service.clone(),
                        Span {
                            trace: text(&span["traceId"]),
                            id: text(&span["spanId"]),
                            parent: text(&span["parentSpanId"]),
                            name: text(&span["name"]),
                            attributes,
                        },
                    ));
                }
            }
        }
    }
    spans
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_spans_reach_the_collector_and_its_log_lines_name_the_trace() {
    let test = TestDb::populated(Backend::Postgres, &SeedOptions::sized(200, 6)).await;
    let (port, received) = otlp_receiver().await;
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut syncer = std::process::Command::new(binary("syncer"))
        .arg("serve")
        .env("SNAPLINE_PROFILE", "test")
        .env("DATABASE_URL", &test.url)
        .env("RUST_LOG", "info")
        .env("SNAPLINE_LOG__FORMAT", "json")
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{port}"),
        )
        // export each batch at once rather than every 5 s
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .stdout(std::process::Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    // A me_file with populations, and then one that does not exist (its sync logs a line);
    // one after the other, so that neither joins the other's group (a group's phases are
    // traced under its first job's sync, linked to the others').
    sync_me_file::enqueue(&test.db, domain::MeFileId(7))
        .await
        .unwrap();
    wait_for("the first sync's span exported", || async {
        spans(&received)
            .iter()
            .any(|(_, s)| s.name == "sync_me_file")
    })
    .await;
    sync_me_file::enqueue(&test.db, domain::MeFileId(999_999))
        .await
        .unwrap();
    wait_for("the spans of both syncs exported", || async {
        spans(&received)
            .iter()
            .filter(|(_, s)| s.name == "sync_me_file")
            .count()
            == 2
    })
    .await;
    let _ = syncer.kill();
    let _ = syncer.wait();

    let all = spans(&received);
    assert!(
        all.iter().all(|(service, _)| service == "snapline-syncer"),
        "{all:?}"
    );
    let all: Vec<Span> = all.into_iter().map(|(_, s)| s).collect();
    let sync = all
        .iter()
        .find(|s| s.name == "sync_me_file" && s.attribute("me_file_id") == Some("7"))
        .expect("the sync's span");
    let job = all
        .iter()
        .find(|s| s.id == sync.parent)
        .expect("the sync's parent span");
    assert_eq!(job.name, "job");
    assert_eq!(job.attribute("queue"), Some("sync_me_file"));
    assert_eq!(job.attribute("attempt"), Some("1"));
    assert_eq!(job.attribute("job_id").map(str::len), Some(26), "{job:?}");
    assert_eq!(job.trace, sync.trace);
    assert!(
        job.parent.is_empty(),
        "the job span is the trace's root: {job:?}"
    );
    for phase in ["sync.lock_and_scope", "sync.read_state", "sync.commit"] {
        let span = all
            .iter()
            .find(|s| s.name == phase && s.trace == sync.trace)
            .unwrap_or_else(|| panic!("{phase} in the sync's trace: {all:?}"));
        assert_eq!(span.parent, sync.id, "{phase} is a child of the sync");
    }

    // The log line of the other sync names its trace.
    let gone = all
        .iter()
        .find(|s| s.name == "sync_me_file" && s.attribute("me_file_id") == Some("999999"))
        .expect("the second sync's span");
    let lines = std::fs::read_to_string(log.path()).unwrap();
    let line = lines
        .lines()
        .find(|l| l.contains("me_file no longer exists"))
        .unwrap_or_else(|| panic!("no log line of the second sync:\n{lines}"));
    let line: serde_json::Value = serde_json::from_str(line).unwrap();
    let trace_ids: Vec<&str> = line["spans"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["trace_id"].as_str())
        .collect();
    assert_eq!(trace_ids, [gone.trace.as_str()], "{line}");
}

/// A collector address this build cannot send to (`https://`: no TLS client) is refused at
/// start, naming the variable, instead of every span vanishing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_collector_is_refused_at_start() {
    let test = TestDb::migrated(Backend::Sqlite).await;
    for var in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ] {
        let out = std::process::Command::new(binary("backfiller"))
            .args(["run", "--dry-run"])
            .env("SNAPLINE_PROFILE", "test")
            .env("DATABASE_URL", &test.url)
            .env(var, "https://collector.example:4318")
            .output()
            .expect("backfiller runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "{var}=https://collector.example:4318 is not supported"
            )) && stderr.contains("http://"),
            "{stderr}"
        );
    }
}
