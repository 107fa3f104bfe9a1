# snapline's daily commands. `cargo install just --locked` adds `just`; every recipe is plain
# cargo underneath, so nothing here is required.

set dotenv-load := false

# PostgreSQL used by benchmarks (tests create their own databases)
bench_pg := env_var_or_default("SNAPLINE_BENCH_PG", "postgres://postgres@127.0.0.1:5432")

default:
    @just --list

# Run the demo on the embedded SQLite default
demo *ARGS:
    cargo run -p snapctl -- demo {{ARGS}}

# The whole test suite (PostgreSQL at 127.0.0.1:5432 and SQLite)
test:
    cargo test --workspace

# The ignored tests, one at a time: the suite that restarts the local PostgreSQL server
# under the three services, and the web board in headless Chromium (Debian's chromium and
# chromium-driver)
chaos:
    cargo test --workspace -- --ignored --test-threads=1 --skip pooler::

# The populate, sync, backfill, capture and queue-admin tests through PgBouncer in
# transaction mode (started by .ci/pgbouncer on 127.0.0.1:6432), as .ci/run runs them
test-pooler:
    bash .ci/pgbouncer
    POOLER_FOR_TESTS=127.0.0.1:6432 SNAPLINE_DATABASE__POOLER=transaction SNAPLINE_DATABASE__MIGRATE_ON_START=false \
      cargo test --workspace --test it -- --include-ignored populate:: sync:: backfill:: platform::capture:: operator:: pooler:: \
      --skip sqlite --skip purge_refuses_an_age_out_of_range --skip idle_workers_wait_instead_of_polling

# The board in headless Chromium alone, writing its screenshots to docs/screenshots
screenshots:
    cargo build -p populator -p syncer
    BOARD_SCREENSHOTS_DIR="{{justfile_directory()}}/docs/screenshots" cargo test -p snapline-tests --test it browser -- --ignored

# Format check and clippy, as CI runs them
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# Apply migrations to the configured database (DATABASE_URL or config/)
migrate *ARGS="up":
    cargo run -p migration -- {{ARGS}}

# Seed the configured database: just seed --me-files 100000
seed *ARGS:
    cargo run --release -p snapctl -- seed {{ARGS}}

# Time seeding 1M me_files into a fresh PostgreSQL database
bench-seed n="1000000":
    psql "{{bench_pg}}/postgres" -qc "DROP DATABASE IF EXISTS snapline_bench" -c "CREATE DATABASE snapline_bench"
    cargo build --release -p snapctl
    DATABASE_URL="{{bench_pg}}/snapline_bench" RUST_LOG=warn ./target/release/snapctl seed --me-files {{n}}

# NULL snapshots, targets by status, queue backlogs and the last runs: just status --json
status *ARGS:
    cargo run -p snapctl -- status {{ARGS}}

# Populate a target inline on the configured database: just populate 1
populate target:
    cargo run -p populator -- run --target {{target}}

# Sync one me_file inline on the configured database: just sync 42
sync me_file:
    cargo run -p syncer -- run --me-file {{me_file}}

# Backfill NULL snapshots on the configured database: just backfill --dry-run
backfill *ARGS:
    cargo run -p backfiller -- run {{ARGS}}

# Run all three consumers (and the backfill cron) on the configured database until Ctrl-C;
# /healthz, /readyz and /metrics on ports 9181 (populator), 9182 (syncer), 9183 (backfiller)
serve:
    cargo build -p populator -p syncer -p backfiller
    ./target/debug/populator serve & ./target/debug/syncer serve & ./target/debug/backfiller serve & wait

# Time populator run against one set-based INSERT ... SELECT at 100K and 1M me_files
bench-populate *ARGS="--me-files 100000 --me-files 1000000":
    cargo build --release -p bench -p populator
    SNAPLINE_BENCH_PG="{{bench_pg}}" ./target/release/bench populate {{ARGS}}

# syncer serve: throughput of 10,000 waiting syncs and push-to-commit latency at 200/s,
# with 100 populated targets and 1M me_files
bench-sync *ARGS="--me-files 1000000 --targets 100 --syncs 10000 --paced 2000 --rate 200":
    cargo build --release -p bench -p syncer
    SNAPLINE_BENCH_PG="{{bench_pg}}" ./target/release/bench sync {{ARGS}}

# backfiller run on ~2.2M legacy NULL rows against set-based SQL UPDATEs, with EXPLAINs
bench-backfill *ARGS="--me-files 1000000":
    cargo build --release -p bench -p backfiller
    SNAPLINE_BENCH_PG="{{bench_pg}}" ./target/release/bench backfill {{ARGS}}

# A whole snapctl audit against populating every target (1M me_files, 100 targets), clean
# and with planted drift it must count exactly
bench-audit *ARGS="--me-files 1000000 --targets 100":
    cargo build --release -p bench -p populator -p snapctl
    SNAPLINE_BENCH_PG="{{bench_pg}}" ./target/release/bench audit {{ARGS}}

# The soak under faults on PostgreSQL, judged by the audit: just soak --minutes 30 --seed 7
soak *ARGS="--minutes 2":
    cargo build -p bench -p populator -p syncer -p backfiller -p snapctl
    SNAPLINE_BENCH_PG="{{bench_pg}}" ./target/debug/bench soak {{ARGS}}

# All benchmarks
bench: bench-seed bench-populate bench-sync bench-backfill bench-audit
