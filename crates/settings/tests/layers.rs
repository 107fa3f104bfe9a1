//! The configuration layers and their errors. `figment::Jail` gives each test its own
//! working directory and environment.

#![allow(clippy::result_large_err)] // figment::Jail closures return figment::Error by design

use figment::Jail;
use settings::{LogFormat, Settings, SettingsError, Sources};

fn load(jail_config_file: Option<&str>) -> Result<Settings, SettingsError> {
    Settings::load(&Sources::from_env(jail_config_file.map(Into::into)))
}

#[test]
fn without_files_or_env_the_embedded_default_is_sqlite() {
    Jail::expect_with(|_| {
        let settings = load(None).expect("defaults load");
        assert_eq!(settings.database.url, "sqlite://snapline.db");
        assert_eq!(settings.log.format, LogFormat::Pretty);
        assert!(settings.database.migrate_on_start);
        assert_eq!(settings.profile, "default");
        Ok(())
    });
}

/// `Settings::defaults()` (what the jobs' options default to) is the embedded default file
/// alone, the same as loading without files or environment, and passes validation.
#[test]
fn the_defaults_are_the_embedded_default_file_alone() {
    Jail::expect_with(|jail| {
        // neither a file nor the environment reaches them
        jail.create_dir("config")?;
        jail.create_file("config/default.toml", "[populator]\nbatch_size = 7\n")?;
        jail.set_env("SNAPLINE_POPULATOR__BATCH_SIZE", "9");
        let defaults = Settings::defaults();
        assert_eq!(defaults.populator.batch_size, 5_000);
        assert_eq!(defaults.profile, "default");
        Ok(())
    });
    Jail::expect_with(|_| {
        let loaded = load(None).expect("defaults load");
        let defaults = Settings::defaults();
        assert_eq!(format!("{defaults:?}"), format!("{loaded:?}"));
        Ok(())
    });
}

#[test]
fn profile_file_then_env_then_database_url_override_in_order() {
    Jail::expect_with(|jail| {
        jail.create_dir("config")?;
        jail.create_file(
            "config/staging.toml",
            "[database]\nurl = \"postgres://staging/db\"\nmax_connections = 5\n[log]\nformat = \"json\"\nfilter = \"debug\"\n",
        )?;
        jail.set_env("SNAPLINE_PROFILE", "staging");
        let settings = load(None).expect("staging loads");
        assert_eq!(settings.database.url, "postgres://staging/db");
        assert_eq!(settings.database.max_connections, 5);
        assert_eq!(settings.log.format, LogFormat::Json);

        jail.set_env("SNAPLINE_DATABASE__MAX_CONNECTIONS", "3");
        jail.set_env("SNAPLINE_LOG__FORMAT", "pretty");
        let settings = load(None).expect("env overrides");
        assert_eq!(settings.database.max_connections, 3);
        assert_eq!(settings.log.format, LogFormat::Pretty);

        jail.set_env("DATABASE_URL", "postgres://override/db");
        let settings = load(None).expect("DATABASE_URL overrides");
        assert_eq!(settings.database.url, "postgres://override/db");
        Ok(())
    });
}

#[test]
fn a_config_file_layers_over_the_profile() {
    Jail::expect_with(|jail| {
        jail.create_file("local.toml", "[database]\nmax_connections = 2\n")?;
        let settings = load(Some("local.toml")).expect("loads");
        assert_eq!(settings.database.max_connections, 2);
        assert_eq!(settings.database.url, "sqlite://snapline.db");

        let err = load(Some("missing.toml")).expect_err("missing file");
        assert!(err.to_string().contains("missing.toml"), "{err}");
        Ok(())
    });
}

#[test]
fn a_typo_names_the_key_and_the_file() {
    Jail::expect_with(|jail| {
        jail.create_dir("config")?;
        jail.create_file(
            "config/default.toml",
            "[database]\nurll = \"sqlite://x.db\"\n",
        )?;
        let message = load(None).expect_err("unknown key").to_string();
        assert!(message.contains("urll"), "{message}");
        assert!(message.contains("default.toml"), "{message}");
        Ok(())
    });
}

#[test]
fn a_wrong_type_in_env_names_the_key_and_the_variable() {
    Jail::expect_with(|jail| {
        jail.set_env("SNAPLINE_DATABASE__MAX_CONNECTIONS", "many");
        let message = load(None).expect_err("not a number").to_string();
        assert!(
            message.to_lowercase().contains("database.max_connections"),
            "{message}"
        );
        assert!(message.contains("SNAPLINE_"), "{message}");
        Ok(())
    });
}

#[test]
fn production_without_database_url_says_which_variable_to_set() {
    Jail::expect_with(|jail| {
        jail.set_env("SNAPLINE_PROFILE", "production");
        let message = load(None).expect_err("no url").to_string();
        assert!(message.contains("DATABASE_URL"), "{message}");
        assert!(message.contains("production"), "{message}");

        jail.set_env("DATABASE_URL", "sqlite://prod.db");
        let message = load(None).expect_err("sqlite in production").to_string();
        assert!(message.contains("PostgreSQL"), "{message}");

        jail.set_env("DATABASE_URL", "postgres://app@db/snapline");
        let settings = load(None).expect("production with PostgreSQL");
        assert!(settings.is_production());
        assert!(!settings.database.migrate_on_start);
        assert_eq!(settings.log.format, LogFormat::Json);
        Ok(())
    });
}

#[test]
fn unknown_profiles_and_urls_are_refused() {
    Jail::expect_with(|jail| {
        jail.set_env("SNAPLINE_PROFILE", "prodution");
        let message = load(None).expect_err("typo in profile").to_string();
        assert!(message.contains("prodution"), "{message}");

        jail.set_env("SNAPLINE_PROFILE", "default");
        jail.set_env("DATABASE_URL", "mysql://x/y");
        let message = load(None).expect_err("unsupported").to_string();
        assert!(message.contains("mysql://x/y"), "{message}");
        Ok(())
    });
}

#[test]
fn queue_concurrency_comes_from_env() {
    Jail::expect_with(|jail| {
        jail.set_env("SNAPLINE_QUEUES__SYNC_ME_FILE__CONCURRENCY", "16");
        let settings = load(None).expect("loads");
        assert_eq!(settings.queues.sync_me_file.concurrency, 16);
        assert_eq!(settings.queues.populate_target.concurrency, 1);
        Ok(())
    });
}

#[test]
fn synchronous_commit_is_unset_by_default_and_checked_when_set() {
    Jail::expect_with(|jail| {
        assert_eq!(load(None).expect("loads").database.synchronous_commit, None);
        jail.set_env("SNAPLINE_DATABASE__SYNCHRONOUS_COMMIT", "off");
        let level = load(None).expect("loads").database.synchronous_commit;
        assert_eq!(level.map(|l| l.as_sql()), Some("off"));
        jail.set_env("SNAPLINE_DATABASE__SYNCHRONOUS_COMMIT", "offf");
        let message = load(None).expect_err("not a level").to_string();
        assert!(
            message.contains("offf") && message.to_lowercase().contains("synchronous_commit"),
            "{message}"
        );
        Ok(())
    });
}

#[test]
fn zero_and_nonsense_values_are_refused_naming_the_key() {
    for (var, key) in [
        (
            "SNAPLINE_DATABASE__MAX_CONNECTIONS",
            "database.max_connections",
        ),
        (
            "SNAPLINE_DATABASE__ACQUIRE_TIMEOUT_SECS",
            "database.acquire_timeout_secs",
        ),
        ("SNAPLINE_POPULATOR__BATCH_SIZE", "populator.batch_size"),
        (
            "SNAPLINE_POPULATOR__LEASE_TTL_SECS",
            "populator.lease_ttl_secs",
        ),
        ("SNAPLINE_BACKFILLER__BATCH_SIZE", "backfiller.batch_size"),
        (
            "SNAPLINE_BACKFILLER__LEASE_TTL_SECS",
            "backfiller.lease_ttl_secs",
        ),
        (
            "SNAPLINE_QUEUES__SYNC_ME_FILE__CONCURRENCY",
            "queues.sync_me_file.concurrency",
        ),
        (
            "SNAPLINE_QUEUES__POPULATE_TARGET__MAX_ATTEMPTS",
            "queues.populate_target.max_attempts",
        ),
        (
            "SNAPLINE_QUEUES__BACKFILL__TIMEOUT_SECS",
            "queues.backfill.timeout_secs",
        ),
        (
            "SNAPLINE_SYNCER__ME_FILES_PER_TRANSACTION",
            "syncer.me_files_per_transaction",
        ),
        (
            "SNAPLINE_POPULATOR__CHUNKS_AT_ONCE",
            "populator.chunks_at_once",
        ),
    ] {
        Jail::expect_with(|jail| {
            jail.set_env(var, "0");
            let err = load(None).expect_err(var).to_string();
            assert!(
                err.contains(key) && err.contains("at least 1"),
                "{var}: {err}"
            );
            Ok(())
        });
    }
    for (var, key, value, max) in [
        (
            "SNAPLINE_SYNCER__ME_FILES_PER_TRANSACTION",
            "syncer.me_files_per_transaction",
            "101",
            "at most 100",
        ),
        (
            "SNAPLINE_POPULATOR__CHUNKS_AT_ONCE",
            "populator.chunks_at_once",
            "65",
            "at most 64",
        ),
    ] {
        Jail::expect_with(|jail| {
            jail.set_env(var, value);
            let err = load(None).expect_err(var).to_string();
            assert!(
                err.contains(&format!("{key} = {value} is not allowed"))
                    && err.contains(max)
                    && err.contains(var),
                "{var}: {err}"
            );
            Ok(())
        });
    }
    Jail::expect_with(|jail| {
        jail.set_env("SNAPLINE_LOG__FILTER", "info,[[[");
        let err = load(None).expect_err("bad filter").to_string();
        assert!(err.contains("log.filter"), "{err}");
        Ok(())
    });
    Jail::expect_with(|jail| {
        jail.set_env("RUST_LOG", "warn,=x=y");
        let err = load(None).expect_err("bad RUST_LOG").to_string();
        assert!(err.contains("RUST_LOG"), "{err}");
        Ok(())
    });
}

#[test]
fn board_credentials_empty_are_none_and_allowed_hosts_come_from_the_environment() {
    Jail::expect_with(|jail| {
        jail.set_env("SNAPLINE_BOARD__USER", "");
        jail.set_env("SNAPLINE_BOARD__PASSWORD", "");
        jail.set_env(
            "SNAPLINE_BOARD__ALLOWED_HOSTS",
            "[board.example.com, \"ops.example.com:9180\"]",
        );
        let settings = load(None).expect("loads");
        assert_eq!(settings.board.basic_auth().expect("both empty"), None);
        assert_eq!(
            settings.board.allowed_hosts,
            ["board.example.com", "ops.example.com:9180"]
        );
        jail.set_env("SNAPLINE_BOARD__USER", "ops");
        let half = load(None).expect("loads").board.basic_auth().unwrap_err();
        assert!(matches!(half, SettingsError::HalfBoardAuth), "{half}");
        jail.set_env("SNAPLINE_BOARD__PASSWORD", "s3cret");
        assert_eq!(
            load(None).expect("loads").board.basic_auth().unwrap(),
            Some(("ops".to_owned(), "s3cret".to_owned()))
        );
        Ok(())
    });
}

#[test]
fn bridged_workers_default_to_the_platforms_and_a_bad_queue_is_refused_naming_the_worker() {
    Jail::expect_with(|jail| {
        let settings = load(None).expect("loads");
        assert_eq!(
            settings.bridge.workers["Qlarius.Jobs.SyncMeFileToTargetPopulationsWorker"],
            "sync_me_file"
        );
        assert_eq!(settings.bridge.workers.len(), 4);
        jail.create_file(
            "renamed.toml",
            "[bridge.workers]\n\"Qlarius.Jobs.SyncWorker\" = \"sync_me_files\"\n",
        )?;
        let err = load(Some("renamed.toml")).unwrap_err();
        assert!(
            matches!(&err, SettingsError::BadBridgedWorker { worker, .. } if worker == "Qlarius.Jobs.SyncWorker"),
            "{err}"
        );
        Ok(())
    });
}
