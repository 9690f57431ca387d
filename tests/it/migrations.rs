//! The schema: migrations apply on an empty database (creating it when missing), revert
//! cleanly, apply again, run safely from many processes at once, and the constraints hold.

use crate::harness::{TestDb, count};
use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

const TABLES: &[&str] = &[
    "users",
    "sessions",
    "accounts",
    "passkeys",
    "organizations",
    "members",
    "invitations",
    "projects",
    "api_keys",
    "provider_credentials",
    "webhook_endpoints",
    "messages",
    "message_events",
    "message_search",
    "idempotency_keys",
    "webhook_deliveries",
    "webhook_jobs",
    "held_receipts",
    "suppressions",
    "templates",
    "template_versions",
];

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

async fn tables(url: &str) -> Vec<String> {
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    let rows: Vec<Name> = diesel::sql_query(
        "SELECT table_name::text AS name FROM information_schema.tables
         WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations' ORDER BY 1",
    )
    .load(&mut conn)
    .await
    .unwrap();
    rows.into_iter().map(|r| r.name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_revert_and_apply_again() {
    let db = TestDb::empty().await;
    let applied = relayit::db::migrate(&db.url).await.expect("migrate");
    assert_eq!(applied.len(), crate::harness::migration_count());
    let mut expected: Vec<String> = TABLES.iter().map(|t| t.to_string()).collect();
    expected.sort();
    assert_eq!(tables(&db.url).await, expected);
    // idempotent
    assert!(relayit::db::migrate(&db.url).await.unwrap().is_empty());

    let reverted = relayit::db::revert_all(&db.url).await.expect("revert");
    assert_eq!(reverted.len(), crate::harness::migration_count());
    assert!(tables(&db.url).await.is_empty());

    assert_eq!(
        relayit::db::migrate(&db.url).await.unwrap().len(),
        crate::harness::migration_count()
    );
    assert_eq!(tables(&db.url).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_serialize_on_the_advisory_lock() {
    let db = TestDb::empty().await;
    let runs = futures::future::join_all((0..4).map(|_| relayit::db::migrate(&db.url))).await;
    let mut total = 0;
    for run in runs {
        total += run.expect("every concurrent migrate succeeds").len();
    }
    assert_eq!(total, crate::harness::migration_count(), "each migration applied exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_project_deletes_its_messages_and_their_events() {
    let (_db, mut conn) = two_projects().await;
    for sql in [
        "INSERT INTO messages (id, organization_id, project_id, channel, recipient, status, content, due_at)
         VALUES ('msg_a', 'org_a', 'prj_a', 'sms', '+14155550123', 'queued', '{}', now()),
                ('msg_b', 'org_a', 'prj_b', 'sms', '+14155550123', 'queued', '{}', now())",
        "INSERT INTO message_events (id, message_id, status) VALUES
            ('evt_a1', 'msg_a', 'received'), ('evt_a2', 'msg_a', 'queued'),
            ('evt_b1', 'msg_b', 'received')",
        "DELETE FROM projects WHERE id = 'prj_a'",
    ] {
        diesel::sql_query(sql).execute(&mut conn).await.unwrap();
    }
    assert_eq!(
        names(&mut conn, "SELECT id AS name FROM message_events ORDER BY id").await,
        ["evt_b1"],
        "only the other project's events are left"
    );

    diesel::sql_query("DELETE FROM organizations WHERE id = 'org_a'")
        .execute(&mut conn)
        .await
        .unwrap();
    let left: Vec<Name> = diesel::sql_query(
        "SELECT id AS name FROM messages UNION ALL SELECT id FROM message_events",
    )
    .load(&mut conn)
    .await
    .unwrap();
    assert!(left.is_empty(), "an organization takes its messages and events with it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_keeps_to_its_project_and_key() {
    let (db, mut conn) = two_projects().await;
    conn.batch_execute(
        "INSERT INTO api_keys (id, organization_id, project_id, name, key_hash, prefix, scopes)
         VALUES ('key_a', 'org_a', 'prj_a', 'n', decode(repeat('00', 32), 'hex'), 'rly_', ARRAY['send']);",
    )
    .await
    .unwrap();
    let insert = |id: &str, project: &str, key: &str| {
        format!(
            "INSERT INTO messages (id, organization_id, project_id, api_key_id, channel, recipient, status, content, due_at)
             VALUES ('{id}', 'org_a', '{project}', {key}, 'sms', '+14155550123', 'queued', '{{}}', now())"
        )
    };
    rejects(&mut conn, &insert("msg_1", "prj_a", "'key_missing'")).await;
    rejects(&mut conn, &insert("msg_1", "prj_missing", "NULL")).await;
    // one bad row fails the whole statement
    let two = format!(
        "{}, ('msg_2', 'org_a', 'prj_missing', NULL, 'sms', '+14155550123', 'queued', '{{}}', now())",
        insert("msg_1", "prj_a", "'key_a'")
    );
    rejects(&mut conn, &two).await;
    diesel::sql_query(insert("msg_1", "prj_a", "'key_a'")).execute(&mut conn).await.unwrap();
    diesel::sql_query(insert("msg_b", "prj_b", "NULL")).execute(&mut conn).await.unwrap();

    refuses_change(&mut conn, "UPDATE messages SET project_id = 'prj_b' WHERE id = 'msg_1'").await;
    refuses_change(&mut conn, "UPDATE messages SET api_key_id = 'key_missing' WHERE id = 'msg_1'")
        .await;

    // a key deleted by hand (the API only revokes them) stays named in its messages (000016)
    diesel::sql_query("DELETE FROM api_keys WHERE id = 'key_a'").execute(&mut conn).await.unwrap();
    assert_eq!(count(&mut conn, "messages WHERE api_key_id = 'key_a'").await, 1);
    assert_eq!(count(&mut conn, "messages").await, 2);

    // A project deleted while an insert into it is not yet committed waits for that insert
    // (its rows lock the project) and then takes its rows too: no message is left orphaned.
    conn.batch_execute(&format!("BEGIN; {}", insert("msg_3", "prj_a", "NULL"))).await.unwrap();
    let url = db.url.clone();
    let delete = tokio::spawn(async move {
        let mut other = AsyncPgConnection::establish(&url).await.unwrap();
        diesel::sql_query("DELETE FROM projects WHERE id = 'prj_a'").execute(&mut other).await
    });
    let mut watcher = AsyncPgConnection::establish(&db.url).await.unwrap();
    let mut waited = false;
    for _ in 0..200 {
        let waiting = "pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'";
        if count(&mut watcher, waiting).await > 0 {
            waited = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(waited, "the delete waits for the uncommitted insert");
    conn.batch_execute("COMMIT").await.unwrap();
    delete.await.unwrap().expect("the delete goes through once the insert committed");
    assert_eq!(names(&mut conn, "SELECT id AS name FROM messages").await, ["msg_b"]);
}

/// An insert naming a project that is being deleted gives up after a second (000017) rather
/// than wait for the deletion's purge of its messages, which would hold up every other
/// message of the same ingestion batch; an insert into another project does not wait at all,
/// and the caller's own lock_timeout is left as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_does_not_wait_out_a_project_deletion() {
    let (db, mut conn) = two_projects().await;
    let insert = |ids_and_projects: &[(&str, &str)]| {
        let rows: Vec<String> = ids_and_projects
            .iter()
            .map(|(id, project)| {
                format!(
                    "('{id}', 'org_a', '{project}', 'sms', '+14155550123', 'queued', '{{}}', now())"
                )
            })
            .collect();
        format!(
            "INSERT INTO messages (id, organization_id, project_id, channel, recipient, status, content, due_at)
             VALUES {}",
            rows.join(", ")
        )
    };
    let mut deleting = AsyncPgConnection::establish(&db.url).await.unwrap();
    deleting.batch_execute("BEGIN; DELETE FROM projects WHERE id = 'prj_a'").await.unwrap();

    // the guard only keeps a regression from hanging the suite: without 000017 the insert
    // waits for as long as the deletion is open, here for ever
    let both = insert(&[("msg_b1", "prj_b"), ("msg_a1", "prj_a")]);
    let refused =
        tokio::time::timeout(std::time::Duration::from_secs(60), conn.batch_execute(&both))
            .await
            .expect("the insert gives up on its own");
    let error = refused.expect_err("the project is being deleted").to_string();
    assert!(error.contains("lock timeout"), "{error}");

    conn.batch_execute("SET lock_timeout = '7s'; BEGIN").await.unwrap();
    conn.batch_execute(&insert(&[("msg_b1", "prj_b")])).await.unwrap();
    let setting = "SELECT current_setting('lock_timeout') AS name";
    assert_eq!(names(&mut conn, setting).await, ["7s"]);
    conn.batch_execute("COMMIT").await.unwrap();

    // a deletion rolled back leaves the project as it was, open to inserts
    deleting.batch_execute("ROLLBACK").await.unwrap();
    conn.batch_execute(&insert(&[("msg_a1", "prj_a")])).await.unwrap();
    assert_eq!(count(&mut conn, "messages").await, 2);
}

/// Deleting a project deletes its messages a batch per statement, each committed on its own,
/// before the project row (`messages::purge_project`): a message locked by a delivery holds up
/// only its own batch, and the batches before it are gone meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_is_deleted_a_batch_of_messages_at_a_time() {
    use relayit::db::messages::PURGE_BATCH;
    let (db, mut conn) = two_projects().await;
    // two full batches, then the message that comes last however they are read: inserted
    // last, and the oldest
    let columns = "id, organization_id, project_id, channel, recipient, status, content, due_at";
    conn.batch_execute(&format!(
        "INSERT INTO messages ({columns})
         SELECT 'msg_' || g, 'org_a', 'prj_a', 'sms', '+14155550123', 'queued', '{{}}', now()
         FROM generate_series(1, {}) g;
         INSERT INTO messages ({columns}, created_at) VALUES
            ('msg_last', 'org_a', 'prj_a', 'sms', '+14155550123', 'queued', '{{}}', now(),
             now() - interval '1 day'),
            ('msg_b', 'org_a', 'prj_b', 'sms', '+14155550123', 'queued', '{{}}', now(), now());
         INSERT INTO message_events (id, message_id, status)
         VALUES ('evt_last', 'msg_last', 'queued'), ('evt_b', 'msg_b', 'queued');",
        2 * PURGE_BATCH
    ))
    .await
    .unwrap();
    // a delivery claiming the last message, its transaction open
    let mut claiming = AsyncPgConnection::establish(&db.url).await.unwrap();
    claiming
        .batch_execute("BEGIN; SELECT id FROM messages WHERE id = 'msg_last' FOR UPDATE")
        .await
        .unwrap();

    let url = db.url.clone();
    let deletion = tokio::spawn(async move {
        let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
        relayit::db::projects::delete(&mut conn, "org_a", "prj_a").await
    });
    // in one statement, no message would be gone before the claim ends
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while count(&mut conn, "messages WHERE project_id = 'prj_a'").await > 1 {
        assert!(std::time::Instant::now() < deadline, "no batch was committed on its own");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!deletion.is_finished(), "the last batch waits for the claim");
    claiming.batch_execute("COMMIT").await.unwrap();
    assert!(deletion.await.unwrap().unwrap(), "the project is deleted");
    let left = "SELECT id AS name FROM messages UNION ALL SELECT id FROM message_events ORDER BY 1";
    assert_eq!(names(&mut conn, left).await, ["evt_b", "msg_b"]);
    assert_eq!(count(&mut conn, "projects").await, 1);
}

/// message_search holds each message's lowercased recipient and subject from its insert until
/// its deletion, and what it holds cannot drift from the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_search_table_follows_the_messages() {
    let (_db, mut conn) = two_projects().await;
    conn.batch_execute(
        "INSERT INTO messages (id, organization_id, project_id, channel, recipient, status, content, due_at)
         VALUES ('msg_a', 'org_a', 'prj_a', 'email', 'Alice@Example.com', 'queued', '{\"subject\": \"Your Invoice\"}', now()),
                ('msg_b', 'org_a', 'prj_b', 'sms', '+14155550123', 'queued', '{\"text\": \"Hi\"}', now());",
    )
    .await
    .unwrap();
    let rows =
        "SELECT concat_ws(' ', message_id, project_id, recipient, coalesce(subject, '-')) AS name
                FROM message_search ORDER BY message_id";
    assert_eq!(
        names(&mut conn, rows).await,
        ["msg_a prj_a alice@example.com your invoice", "msg_b prj_b +14155550123 -"]
    );

    refuses_change(&mut conn, "UPDATE messages SET recipient = 'b@example.com' WHERE id = 'msg_a'")
        .await;
    refuses_change(
        &mut conn,
        "UPDATE messages SET content = '{\"subject\": \"Other\"}' WHERE id = 'msg_a'",
    )
    .await;
    // other columns change freely
    diesel::sql_query("UPDATE messages SET status = 'sent', due_at = NULL WHERE id = 'msg_a'")
        .execute(&mut conn)
        .await
        .unwrap();

    diesel::sql_query("DELETE FROM projects WHERE id = 'prj_a'").execute(&mut conn).await.unwrap();
    assert_eq!(names(&mut conn, rows).await, ["msg_b prj_b +14155550123 -"]);
}

/// New search entries wait in the GIN pending lists, beyond the reach of the inserts' own
/// merging, until `merge_search_pending` merges them (one process at a time), and searches
/// find them before and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_entries_wait_for_the_merger() {
    use relayit::db::messages::merge_search_pending;
    let (db, mut conn) = two_projects().await;
    conn.batch_execute(
        "INSERT INTO messages (id, organization_id, project_id, channel, recipient, status, content, due_at)
         SELECT 'msg_' || g, 'org_a', 'prj_a', 'email', 'user' || g || '@example.com', 'queued',
                jsonb_build_object('subject', 'Order ' || g || ' shipped'), now()
         FROM generate_series(1, 2000) g;",
    )
    .await
    .unwrap();
    // through the trigram indexes only, so that what they hold is what is counted
    let found = "message_search WHERE recipient LIKE '%user17%' AND subject LIKE '%order 17%'";
    conn.batch_execute("SET enable_seqscan = off").await.unwrap();
    let before = count(&mut conn, found).await;
    assert_eq!(before, 111, "user17, user170-179, user1700-1799");

    // another process merging: this one leaves it to it
    let mut other = AsyncPgConnection::establish(&db.url).await.unwrap();
    other.batch_execute("BEGIN").await.unwrap();
    let merged = merge_search_pending(&mut other).await.unwrap();
    // all of it was left pending: more than the two indexes' lists held at 256 kB (000008)
    assert!(merged.is_some_and(|pages| pages > 64), "pending pages merged: {merged:?}");
    assert_eq!(merge_search_pending(&mut conn).await.unwrap(), None);
    other.batch_execute("COMMIT").await.unwrap();

    assert_eq!(merge_search_pending(&mut conn).await.unwrap(), Some(0), "nothing left pending");
    assert_eq!(count(&mut conn, found).await, before);
}

/// Ids compare as bytes (000012), all of them: an id column left under the database's
/// collation could not be compared with the others ("could not determine which collation").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_id_column_compares_as_bytes() {
    let db = TestDb::migrated().await;
    let mut conn = AsyncPgConnection::establish(&db.url).await.unwrap();
    let ids = "information_schema.columns
               WHERE table_schema = 'public' AND data_type = 'text'
                 AND (column_name = 'id' OR column_name LIKE '%\\_id')
                 AND table_name <> '__diesel_schema_migrations'";
    let other = format!(
        "SELECT table_name || '.' || column_name AS name FROM {ids}
                         AND collation_name IS DISTINCT FROM 'C'"
    );
    assert_eq!(names(&mut conn, &other).await, Vec::<String>::new());
    assert!(count(&mut conn, ids).await >= 40, "the id columns were found");
}

/// A migrated database with organization org_a and its projects prj_a and prj_b.
async fn two_projects() -> (TestDb, AsyncPgConnection) {
    let db = TestDb::migrated().await;
    let mut conn = AsyncPgConnection::establish(&db.url).await.unwrap();
    conn.batch_execute(
        "INSERT INTO organizations (id, name, slug) VALUES ('org_a', 'A', 'a');
         INSERT INTO projects (id, organization_id, name, slug) VALUES
            ('prj_a', 'org_a', 'A', 'a'), ('prj_b', 'org_a', 'B', 'b');",
    )
    .await
    .unwrap();
    (db, conn)
}

/// The `name` column of `sql`'s rows.
async fn names(conn: &mut AsyncPgConnection, sql: &str) -> Vec<String> {
    let rows: Vec<Name> = diesel::sql_query(sql).load(conn).await.unwrap();
    rows.into_iter().map(|r| r.name).collect()
}

/// Asserts that the update `sql` is refused: what it changes is fixed once written.
async fn refuses_change(conn: &mut AsyncPgConnection, sql: &str) {
    let error = diesel::sql_query(sql).execute(conn).await.expect_err(sql).to_string();
    assert!(error.contains("do not change"), "{sql}: {error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_database_is_created() {
    let name = crate::harness::unique("relayit_test");
    let db = TestDb { url: crate::harness::database_url(&name), name };
    relayit::db::migrate(&db.url).await.expect("creates and migrates");
    assert_eq!(tables(&db.url).await.len(), TABLES.len());
}

async fn rejects(conn: &mut AsyncPgConnection, sql: &str) {
    let result = diesel::sql_query(sql).execute(conn).await;
    let error = result.expect_err(sql).to_string();
    assert!(
        error.contains("violates check constraint")
            || error.contains("violates foreign key")
            || error.contains("violates unique constraint"),
        "{sql}: {error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constraints_guard_enums_tenancy_and_cascades() {
    let db = TestDb::migrated().await;
    let mut conn = AsyncPgConnection::establish(&db.url).await.unwrap();
    conn.batch_execute(
        "INSERT INTO users (id, email, name) VALUES ('usr_a', 'a@example.com', 'A');
         INSERT INTO organizations (id, name, slug) VALUES ('org_a', 'A', 'a'), ('org_b', 'B', 'b');
         INSERT INTO projects (id, organization_id, name, slug) VALUES
            ('prj_a', 'org_a', 'A', 'default'), ('prj_b', 'org_b', 'B', 'default');",
    )
    .await
    .expect("seed");
    diesel::sql_query(
        "INSERT INTO messages (id, organization_id, project_id, channel, recipient, status, content, due_at)
         VALUES ('msg_1', 'org_a', 'prj_a', 'email', 'a@example.com', 'queued', '{}', now())",
    )
    .execute(&mut conn)
    .await
    .expect("valid message");

    // enums
    rejects(&mut conn, "INSERT INTO messages (id, organization_id, project_id, channel, recipient, status, content, due_at)
        VALUES ('msg_2', 'org_a', 'prj_a', 'pigeon', 'x', 'queued', '{}', now())").await;
    rejects(&mut conn, "UPDATE messages SET status = 'lost' WHERE id = 'msg_1'").await;
    // only an unfinished message is due (the sweeper's index is over due_at)
    rejects(&mut conn, "UPDATE messages SET status = 'sent' WHERE id = 'msg_1'").await;
    rejects(&mut conn, "UPDATE messages SET due_at = NULL WHERE id = 'msg_1'").await;
    // final_status is derived from status: no writer sets it
    for sql in [
        "UPDATE messages SET final_status = 'queued' WHERE id = 'msg_1'",
        "UPDATE messages SET status = 'sent', due_at = NULL, final_status = 'failed' WHERE id = 'msg_1'",
    ] {
        let error = diesel::sql_query(sql).execute(&mut conn).await.expect_err(sql).to_string();
        assert!(error.contains("can only be updated to DEFAULT"), "{sql}: {error}");
    }
    rejects(&mut conn, "INSERT INTO members (id, organization_id, user_id, role) VALUES ('mem_1', 'org_a', 'usr_a', 'god')").await;
    rejects(&mut conn, "INSERT INTO provider_credentials (id, organization_id, name, slug, channel, provider_type, sealed_secrets, secrets_key_id)
        VALUES ('prv_1', 'org_a', 'n', 'n', 'sms', 'ses', '\\x00', 'k')").await;
    rejects(
        &mut conn,
        "INSERT INTO api_keys (id, organization_id, name, key_hash, prefix, scopes)
        VALUES ('key_1', 'org_a', 'n', decode(repeat('00', 32), 'hex'), 'rly_', ARRAY['admin'])",
    )
    .await;
    let held = "INSERT INTO held_receipts (organization_id, channel, provider_message_id,
        from_statuses, to_status, details, received_at) VALUES";
    diesel::sql_query(format!(
        "{held} ('org_a', 'email', 'ses-1', ARRAY['sent'], 'delivered', '{{}}', now())"
    ))
    .execute(&mut conn)
    .await
    .expect("valid held receipt");
    rejects(
        &mut conn,
        &format!("{held} ('org_a', 'email', 'ses-1', ARRAY['sent'], 'lost', '{{}}', now())"),
    )
    .await;
    rejects(
        &mut conn,
        &format!(
            "{held} ('org_a', 'email', 'ses-1', ARRAY['sent', NULL], 'failed', '{{}}', now())"
        ),
    )
    .await;
    rejects(
        &mut conn,
        &format!("{held} ('org_a', 'email', 'ses-1', ARRAY[]::text[], 'failed', '{{}}', now())"),
    )
    .await;
    // prefixed ids and slugs
    rejects(&mut conn, "INSERT INTO organizations (id, name, slug) VALUES ('x_c', 'C', 'c')").await;
    rejects(&mut conn, "INSERT INTO projects (id, organization_id, name, slug) VALUES ('prj_c', 'org_a', 'C', 'Not A Slug')").await;
    // slug unique per organization, not globally
    rejects(&mut conn, "INSERT INTO projects (id, organization_id, name, slug) VALUES ('prj_c', 'org_a', 'C', 'default')").await;
    // a row cannot pair one tenant's organization with another tenant's project
    rejects(&mut conn, "INSERT INTO messages (id, organization_id, project_id, channel, recipient, status, content, due_at)
        VALUES ('msg_3', 'org_a', 'prj_b', 'email', 'x', 'queued', '{}', now())").await;

    // deleting an organization removes everything it owns
    diesel::sql_query("DELETE FROM organizations WHERE id = 'org_a'")
        .execute(&mut conn)
        .await
        .unwrap();
    for left in ["messages", "held_receipts", "projects WHERE organization_id = 'org_a'"] {
        assert_eq!(count(&mut conn, left).await, 0, "{left}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_queries_use_their_indexes() {
    let db = TestDb::migrated().await;
    let mut conn = AsyncPgConnection::establish(&db.url).await.unwrap();
    diesel::sql_query("SET enable_seqscan = off").execute(&mut conn).await.unwrap();
    for (sql, index) in [
        (
            "SELECT id FROM messages WHERE project_id = 'p' AND (created_at, id) < (now(), 'msg_z')
             ORDER BY created_at DESC, id DESC LIMIT 50",
            "messages_project_list_idx",
        ),
        (
            // no index reads the status (migration 000014): an unfinished status walks the list
            // while it is short (and goes by what is due once it is not: see below)
            "SELECT id FROM messages WHERE project_id = 'p' AND status IN ('queued')
                 AND due_at IS NOT NULL
             ORDER BY created_at DESC, id DESC LIMIT 50",
            "messages_project_list_idx",
        ),
        (
            // and a final one has its own index (migration 000015)
            "SELECT id FROM messages WHERE project_id = 'p' AND status IN ('failed')
                 AND final_status = 'failed'
             ORDER BY created_at DESC, id DESC LIMIT 50",
            "messages_project_final_idx",
        ),
        (
            "SELECT message_id FROM message_search WHERE recipient LIKE '%alice%'",
            "message_search_recipient_trgm_idx",
        ),
        (
            "SELECT message_id FROM message_search WHERE subject LIKE '%invoice%'",
            "message_search_subject_trgm_idx",
        ),
        (
            "SELECT id FROM messages WHERE due_at < now() AND status IN ('received', 'queued')",
            "messages_due_idx",
        ),
        (
            "SELECT id FROM messages WHERE send_at IS NOT NULL AND due_at <= now()
                 AND status = 'received'",
            "messages_scheduled_idx",
        ),
        (
            "SELECT id FROM sessions WHERE user_id = 'u' AND (created_at, id) < (now(), 'ses_z')
             ORDER BY created_at DESC, id DESC LIMIT 50",
            "sessions_user_list_idx",
        ),
        // the retention duty's deletes (migration 000018), and what they cascade to
        (
            "DELETE FROM messages WHERE id = ANY (ARRAY (
                 SELECT id FROM messages
                 WHERE project_id = 'p' AND created_at < now() AND updated_at < now()
                   AND final_status = ANY ('{sent,delivered,failed,canceled}')
                 ORDER BY created_at LIMIT 1000 FOR UPDATE SKIP LOCKED))",
            "messages_project_list_idx",
        ),
        ("DELETE FROM message_events WHERE message_id = 'm'", "message_events_message_idx"),
        ("DELETE FROM message_search WHERE message_id = 'm'", "message_search_pkey"),
        (
            "DELETE FROM webhook_deliveries WHERE event_id = 'e'",
            "webhook_deliveries_event_endpoint_idx",
        ),
        // numbering an attempt (migration 000023)
        (
            "SELECT max(attempt) FROM webhook_deliveries WHERE event_id = 'e' AND webhook_endpoint_id = 'w'",
            "webhook_deliveries_event_endpoint_idx",
        ),
        (
            "DELETE FROM webhook_deliveries WHERE id = ANY (ARRAY (
                 SELECT id FROM webhook_deliveries
                 WHERE webhook_endpoint_id = 'w' AND created_at < now()
                 ORDER BY created_at LIMIT 1000 FOR UPDATE SKIP LOCKED))",
            "webhook_deliveries_endpoint_list_idx",
        ),
        (
            "DELETE FROM idempotency_keys WHERE ctid = ANY (ARRAY (
                 SELECT ctid FROM idempotency_keys WHERE expires_at <= now()
                 ORDER BY expires_at LIMIT 1000 FOR UPDATE SKIP LOCKED))",
            "idempotency_keys_expires_idx",
        ),
        (
            "DELETE FROM sessions WHERE id = ANY (ARRAY (
                 SELECT id FROM sessions WHERE expires_at <= now()
                 ORDER BY expires_at LIMIT 1000 FOR UPDATE SKIP LOCKED))",
            "sessions_expires_idx",
        ),
        (
            "DELETE FROM held_receipts WHERE id = ANY (ARRAY (
                 SELECT h.id FROM held_receipts h WHERE h.received_at < now()
                 ORDER BY h.received_at LIMIT 1000 FOR UPDATE OF h SKIP LOCKED))",
            "held_receipts_received_idx",
        ),
    ] {
        let plan = plan(&mut conn, sql).await;
        assert!(plan.iter().any(|l| l.contains(index)), "{sql}\n{}", plan.join("\n"));
    }
}

/// The lines of `sql`'s plan (EXPLAIN).
async fn plan(conn: &mut AsyncPgConnection, sql: &str) -> Vec<String> {
    #[derive(QueryableByName)]
    struct Plan {
        #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
        line: String,
    }
    let plan: Vec<Plan> = diesel::sql_query(format!("EXPLAIN {sql}")).load(conn).await.unwrap();
    plan.into_iter().map(|p| p.line).collect()
}

/// The log filtered on statuses not final, in a long log: by the index of what is due (due_at
/// is set exactly while a message is not final), since walking the list to find the few such
/// messages took 300 ms among a million (relayit-bench). The query is list_log's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_status_goes_by_what_is_due() {
    let (_db, mut conn) = two_projects().await;
    conn.batch_execute(
        "INSERT INTO messages (id, organization_id, project_id, channel, recipient, status,
             content, due_at, created_at)
         SELECT 'msg_' || lpad(g::text, 8, '0'), 'org_a', 'prj_a', 'sms', '+1555' || g,
                CASE WHEN g % 1000 = 0 THEN 'queued' ELSE 'delivered' END, '{}',
                CASE WHEN g % 1000 = 0 THEN now() END, now() - g * interval '1 second'
         FROM generate_series(1, 20000) g;
         ANALYZE messages;",
    )
    .await
    .unwrap();
    let sql = "SELECT id FROM messages
               WHERE organization_id = 'org_a' AND project_id = 'prj_a'
                 AND status = ANY ('{queued,retrying}') AND due_at IS NOT NULL
               ORDER BY created_at DESC, id DESC LIMIT 51";
    let plan = plan(&mut conn, sql).await;
    assert!(plan.iter().any(|l| l.contains("messages_due_idx")), "{}", plan.join("\n"));
}
