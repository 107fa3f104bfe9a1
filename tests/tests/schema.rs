//! Migrations on both backends: up, down, up again, on an empty database and on one that
//! already holds the platform's tables (which `down` must never drop).

use migration::{Migrator, MigratorTrait};
use repo::Db;
use sea_orm::{ConnectionTrait, Statement};
use snapline_tests::{Backend, TestDb, both_backends};

const TABLES: [&str; 12] = [
    "traits",
    "me_files",
    "me_file_tags",
    "targets",
    "target_bands",
    "trait_groups",
    "trait_group_traits",
    "target_band_trait_groups",
    "campaigns",
    "target_populations",
    "offers",
    "ad_events",
];

/// The SQL that created `name` (table or index), or `None` when it does not exist.
async fn definition(db: &Db, name: &str) -> Option<String> {
    let conn = db.conn();
    let backend = conn.get_database_backend();
    let sql = match db.backend() {
        repo::Backend::Postgres => {
            "SELECT COALESCE((SELECT indexdef FROM pg_indexes WHERE indexname = $1), \
             (SELECT 'table ' || tablename FROM pg_tables WHERE tablename = $1))"
        }
        repo::Backend::Sqlite => "SELECT sql FROM sqlite_master WHERE name = $1",
    };
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(backend, sql, [name.into()]))
        .await
        .expect("catalog query")?;
    row.try_get_by_index::<Option<String>>(0).expect("text")
}

async fn up_down_up_on_an_empty_database(backend: Backend) {
    let test = TestDb::empty(backend).await;
    let db = &test.db;
    Migrator::up(db.conn(), None).await.expect("up");
    for table in TABLES {
        assert!(definition(db, table).await.is_some(), "{table} created");
    }
    assert!(
        definition(db, "target_populations_null_snapshot_idx")
            .await
            .is_some()
    );

    Migrator::down(db.conn(), None).await.expect("down");
    for table in TABLES {
        assert!(
            definition(db, table).await.is_none(),
            "{table} dropped by down"
        );
    }
    assert!(definition(db, "snapline_schema_objects").await.is_none());

    Migrator::up(db.conn(), None).await.expect("up again");
    assert!(
        definition(db, "ad_events_null_snapshot_idx")
            .await
            .is_some()
    );
}

/// Makes the database look like the platform's: every table and the NULL-snapshot and GIN
/// indexes already exist, created by someone else (no ledger, no migration history), with a
/// column snapline does not know and a row of data; snapline's own hot-query indexes are
/// missing.
async fn create_platform_tables(db: &Db) {
    Migrator::up(db.conn(), None)
        .await
        .expect("build the platform's schema");
    let conn = db.conn();
    for sql in [
        "DROP TABLE snapline_schema_objects",
        "DROP TABLE seaql_migrations",
        "DROP INDEX me_file_tags_trait_me_file_idx",
        "DROP INDEX me_file_tags_me_file_idx",
        "ALTER TABLE target_populations ADD COLUMN inserted_by TEXT",
        "INSERT INTO target_populations (target_band_id, me_file_id, inserted_by) \
         VALUES (7, 11, 'platform')",
    ] {
        conn.execute_unprepared(sql).await.expect(sql);
    }
}

async fn down_never_drops_what_the_platform_created(backend: Backend) {
    let test = TestDb::empty(backend).await;
    let db = &test.db;
    create_platform_tables(db).await;

    Migrator::up(db.conn(), None)
        .await
        .expect("up over platform tables");
    assert!(
        definition(db, "me_file_tags_trait_me_file_idx")
            .await
            .is_some()
    );
    Migrator::down(db.conn(), None).await.expect("down");
    Migrator::up(db.conn(), None).await.expect("up again");
    Migrator::down(db.conn(), None).await.expect("down again");

    for table in TABLES {
        assert!(
            definition(db, table).await.is_some(),
            "platform table {table} kept"
        );
    }
    assert!(
        definition(db, "target_populations_null_snapshot_idx")
            .await
            .is_some(),
        "the platform's own index is kept"
    );
    assert!(
        definition(db, "me_file_tags_trait_me_file_idx")
            .await
            .is_none(),
        "snapline's own index is removed"
    );
    if backend == Backend::Postgres {
        assert!(
            definition(db, "offers_matching_tags_snapshot_idx")
                .await
                .is_some()
        );
    }
    let row = db
        .conn()
        .query_one_raw(Statement::from_string(
            db.conn().get_database_backend(),
            "SELECT inserted_by FROM target_populations WHERE me_file_id = 11",
        ))
        .await
        .expect("query")
        .expect("the platform's row is still there");
    assert_eq!(row.try_get_by_index::<String>(0).unwrap(), "platform");
}

async fn partial_and_gin_indexes_have_the_fixed_names_and_predicates(backend: Backend) {
    let test = TestDb::migrated(backend).await;
    let db = &test.db;
    for (index, columns) in [
        ("target_populations_null_snapshot_idx", "(id)"),
        ("offers_null_snapshot_idx", "(me_file_id, target_band_id)"),
        (
            "ad_events_null_snapshot_idx",
            "(me_file_id, target_band_id)",
        ),
    ] {
        let sql = definition(db, index).await.expect("index exists");
        assert!(sql.contains(columns), "{index}: {sql}");
        assert!(
            sql.contains("WHERE (matching_tags_snapshot IS NULL)")
                || sql.contains("WHERE matching_tags_snapshot IS NULL"),
            "{index}: {sql}"
        );
    }
    if backend == Backend::Postgres {
        for table in ["target_populations", "offers", "ad_events"] {
            let sql = definition(db, &format!("{table}_matching_tags_snapshot_idx"))
                .await
                .expect("GIN index exists");
            assert!(sql.contains("USING gin (matching_tags_snapshot)"), "{sql}");
        }
    }
    let unique = definition(db, "target_populations_band_me_file_key")
        .await
        .unwrap();
    assert!(unique.contains("UNIQUE"), "{unique}");
}

both_backends! {
    up_down_up_on_empty_database => up_down_up_on_an_empty_database;
    platform_objects_survive_down => down_never_drops_what_the_platform_created;
    snapshot_indexes_exist => partial_and_gin_indexes_have_the_fixed_names_and_predicates;
}
