//! The suppression list's routes: adding by hand, listing with filters and search, reading,
//! removing; validation naming each field, roles, and another tenant's ids (404). What the
//! list does to sending is tested with the providers (aws.rs: receipts through moto and SNS;
//! here: a manual entry stops a sandbox send).

use crate::harness::{TestApp, validation_fields};
use serde_json::{Value, json};

fn list_path(project: &str) -> String {
    format!("/v1/projects/{project}/suppressions")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_are_added_listed_filtered_and_removed() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Owner").await;
    let path = list_path(&owner.project_id);
    let add = |body: Value| {
        let (app, token, path) = (&app, owner.token.clone(), path.clone());
        async move { app.post_as(&token, &path, body).await }
    };

    let (status, first) = add(json!({"channel": "email", "address": "Alice <Alice@Example.com>",
                                     "note": " asked by phone "}))
    .await;
    assert_eq!(status, 201, "{first}");
    assert!(first["id"].as_str().unwrap().starts_with("sup_"));
    assert_eq!(first["address"], "alice@example.com");
    assert_eq!(
        (first["reason"].as_str(), first["note"].as_str()),
        (Some("manual"), Some("asked by phone"))
    );
    assert_eq!(first["projectId"], owner.project_id.as_str());
    assert!(first["messageId"].is_null());
    let (status, _) = add(json!({"channel": "sms", "address": "+14155550123"})).await;
    assert_eq!(status, 201);
    let (status, _) = add(json!({"channel": "email", "address": "bob_1@example.com"})).await;
    assert_eq!(status, 201);

    // the same address again, in another spelling: 409 naming the entry
    let (status, again) = add(json!({"channel": "email", "address": "ALICE@example.com"})).await;
    assert_eq!(status, 409, "{again}");
    assert_eq!(again["error"]["details"][0]["field"], "address");
    assert!(again["error"]["message"].as_str().unwrap().contains(first["id"].as_str().unwrap()));

    // filters and search (LIKE wildcards taken literally)
    let addresses = |body: &Value| -> Vec<String> {
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["address"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, all) = app.get_as(&owner.token, &path).await;
    assert_eq!(addresses(&all), ["bob_1@example.com", "+14155550123", "alice@example.com"]);
    let (_, email) = app.get_as(&owner.token, &format!("{path}?channel=email")).await;
    assert_eq!(addresses(&email), ["bob_1@example.com", "alice@example.com"]);
    let (_, found) = app.get_as(&owner.token, &format!("{path}?search=ALICE")).await;
    assert_eq!(addresses(&found), ["alice@example.com"]);
    let (_, literal) = app.get_as(&owner.token, &format!("{path}?search=b_1")).await;
    assert_eq!(addresses(&literal), ["bob_1@example.com"]);
    let (_, none) = app.get_as(&owner.token, &format!("{path}?search=_%25")).await;
    assert_eq!(addresses(&none), Vec::<String>::new());
    let (_, manual) = app.get_as(&owner.token, &format!("{path}?reason=manual&limit=2")).await;
    assert_eq!(manual["data"].as_array().unwrap().len(), 2);
    let cursor = manual["nextCursor"].as_str().expect("a second page");
    let (_, rest) =
        app.get_as(&owner.token, &format!("{path}?reason=manual&limit=2&cursor={cursor}")).await;
    assert_eq!(addresses(&rest), ["alice@example.com"]);
    let (_, bounced) = app.get_as(&owner.token, &format!("{path}?reason=hard_bounce")).await;
    assert_eq!(addresses(&bounced), Vec::<String>::new());

    // one, then removed: gone
    let one = format!("{path}/{}", first["id"].as_str().unwrap());
    let (status, got) = app.get_as(&owner.token, &one).await;
    assert_eq!((status, &got["address"]), (200, &json!("alice@example.com")));
    let (status, _) = app.delete_as(&owner.token, &one).await;
    assert_eq!(status, 204);
    let (status, _) = app.get_as(&owner.token, &one).await;
    assert_eq!(status, 404);
    let (status, _) = app.delete_as(&owner.token, &one).await;
    assert_eq!(status, 404);
    // and may be added again
    let (status, _) = add(json!({"channel": "email", "address": "alice@example.com"})).await;
    assert_eq!(status, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_naming_the_field() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Owner").await;
    let path = list_path(&owner.project_id);
    for (body, field) in [
        (json!({"channel": "email", "address": "not an address"}), "address"),
        (json!({"channel": "sms", "address": "0800 123"}), "address"),
        (json!({"channel": "discord", "address": "general"}), "address"),
        (json!({"channel": "fax", "address": "+14155550123"}), "channel"),
        (json!({"address": "a@example.com"}), "channel"),
        (json!({"channel": "email"}), "address"),
        (json!({"channel": "email", "address": "a@example.com", "note": "x".repeat(501)}), "note"),
        (json!({"channel": "email", "address": "a@example.com", "reason": "complaint"}), "reason"),
    ] {
        let (status, answer) = app.post_as(&owner.token, &path, body.clone()).await;
        assert_eq!(validation_fields(status, &answer), [field], "{body}");
    }
    let long = format!("search={}", "x".repeat(101));
    for (query, field) in [
        ("channel=fax", "channel"),
        ("reason=bounced", "reason"),
        (long.as_str(), "search"),
        ("limit=0", "limit"),
        ("cursor=nope", "cursor"),
    ] {
        let (status, answer) = app.get_as(&owner.token, &format!("{path}?{query}")).await;
        assert_eq!(validation_fields(status, &answer), [field], "{query}");
    }
    assert_eq!(app.count("suppressions").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_project_and_entries_are_not_found_and_members_only_read() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Owner").await;
    let mallory = app.sign_up("Mallory").await;
    let path = list_path(&owner.project_id);
    let (status, entry) = app
        .post_as(&owner.token, &path, json!({"channel": "sms", "address": "+14155550123"}))
        .await;
    assert_eq!(status, 201, "{entry}");
    let id = entry["id"].as_str().unwrap();

    // Mallory: the owner's project does not exist for her, nor the entry under her own
    let body = json!({"channel": "sms", "address": "+14155550199"});
    for (status, answer) in [
        app.get_as(&mallory.token, &path).await,
        app.post_as(&mallory.token, &path, body.clone()).await,
        app.get_as(&mallory.token, &format!("{path}/{id}")).await,
        app.delete_as(&mallory.token, &format!("{path}/{id}")).await,
        app.get_as(&mallory.token, &format!("{}/{id}", list_path(&mallory.project_id))).await,
        app.delete_as(&mallory.token, &format!("{}/{id}", list_path(&mallory.project_id))).await,
    ] {
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (404, Some("not_found")),
            "{answer}"
        );
    }
    let (_, hers) = app.get_as(&mallory.token, &list_path(&mallory.project_id)).await;
    assert_eq!(hers["data"], json!([]));

    // a member reads, but neither adds nor removes
    let member = app.add_member(&owner, "Member", "member").await;
    let (status, _) = app.get_as(&member.token, &format!("{path}/{id}")).await;
    assert_eq!(status, 200);
    let (status, _) = app.post_as(&member.token, &path, body).await;
    assert_eq!(status, 403);
    let (status, _) = app.delete_as(&member.token, &format!("{path}/{id}")).await;
    assert_eq!(status, 403);
    assert_eq!(app.count("suppressions").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suppressed_recipient_is_not_sent_to_nor_dead_lettered() {
    let app = TestApp::spawn().await;
    let (owner, key) = app.sender("Sender").await;
    app.create_provider(&owner.token, crate::harness::sandbox_provider("Sandbox", "sms")).await;
    let path = list_path(&owner.project_id);
    let (status, entry) = app
        .post_as(&owner.token, &path, json!({"channel": "sms", "address": "+14155550123"}))
        .await;
    assert_eq!(status, 201, "{entry}");
    let sms = |to: &str| json!({"channel": "sms", "to": to, "content": {"text": "hi"}});

    let stopped = app.send_message(&key, sms("+14155550123")).await;
    let other = app.send_message(&key, sms("+14155550124")).await;
    app.wait_for_status(&key, &other, "sent").await;
    let message = app.wait_for_status(&key, &stopped, "failed").await;
    assert_eq!(message["attempts"], 0);
    let last = message["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["details"]["suppression"]["id"], entry["id"], "{last}");
    assert_eq!(last["details"]["tries"], json!([]));
    // a decision, not a delivery failure: nothing on the dead-letter stream
    let dead = app.running().state().redis.keys().deliveries_dead();
    let length: u64 =
        fred::prelude::StreamsInterface::xlen(app.running().state().redis.pool(), dead)
            .await
            .unwrap();
    assert_eq!(length, 0);
}
