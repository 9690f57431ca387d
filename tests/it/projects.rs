//! Projects: slugs, metadata, pagination and roles.

use crate::harness::TestApp;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projects_crud_with_slugs() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Owner").await;
    let (status, slug) =
        app.post_as(&owner.token, "/v1/projects/generate-slug", json!({"name": "Default"})).await;
    assert_eq!(status, 200);
    assert_eq!(slug["slug"], "default-2", "collides with the default project");

    let (status, project) = app
        .post_as(
            &owner.token,
            "/v1/projects",
            json!({"name": "Mobile App!", "metadata": {"team": "ios"}}),
        )
        .await;
    assert_eq!(status, 201, "{project}");
    assert_eq!(project["slug"], "mobile-app");
    assert_eq!(project["metadata"], json!({"team": "ios"}));
    assert_eq!(project["organizationId"], owner.org_id.as_str());
    let id = project["id"].as_str().unwrap();
    let (_, again) = app.post_as(&owner.token, "/v1/projects", json!({"name": "Mobile App"})).await;
    assert_eq!(again["slug"], "mobile-app-2");
    let (status, body) =
        app.post_as(&owner.token, "/v1/projects", json!({"name": "X", "slug": "mobile-app"})).await;
    assert_eq!(status, 409, "{body}");

    let (status, fetched) = app.get_as(&owner.token, &format!("/v1/projects/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(fetched, project);
    assert_eq!(app.get_as(&owner.token, "/v1/projects/mobile-app").await.1["id"], id);

    let (status, patched) = app
        .patch_as(
            &owner.token,
            &format!("/v1/projects/{id}"),
            json!({"name": "Mobile", "metadata": {}}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(patched["name"], "Mobile");
    assert_eq!(patched["slug"], "mobile-app");
    assert_eq!(patched["metadata"], json!({}));
    let (status, _) = app
        .patch_as(&owner.token, &format!("/v1/projects/{id}"), json!({"slug": "mobile-app-2"}))
        .await;
    assert_eq!(status, 409);

    // pages of 2, newest first, with no row twice
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/projects?limit=2&cursor={c}"),
            None => "/v1/projects?limit=2".to_owned(),
        };
        let (status, page) = app.get_as(&owner.token, &path).await;
        assert_eq!(status, 200);
        for p in page["data"].as_array().unwrap() {
            seen.push(p["slug"].as_str().unwrap().to_owned());
        }
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["mobile-app-2", "mobile-app", "default"]);

    let (status, _) = app.delete_as(&owner.token, &format!("/v1/projects/{id}")).await;
    assert_eq!(status, 204);
    assert_eq!(app.get_as(&owner.token, &format!("/v1/projects/{id}")).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_validation_names_fields() {
    let app = TestApp::spawn().await;
    let owner = app.sign_up("Owner").await;
    let big = "x".repeat(17 * 1024);
    let cases = [
        (json!({"name": ""}), vec!["name"]),
        (json!({"name": "a".repeat(101)}), vec!["name"]),
        (json!({"name": "P", "slug": "Not-OK"}), vec!["slug"]),
        (json!({"name": "P", "metadata": [1]}), vec!["metadata"]),
        (json!({"name": "P", "metadata": {"blob": big}}), vec!["metadata"]),
        (json!({"name": "P", "color": "red"}), vec!["color"]),
        (json!({"slug": "p"}), vec!["name"]),
    ];
    for (body, fields) in cases {
        let (status, answer) = app.post_as(&owner.token, "/v1/projects", body.clone()).await;
        assert_eq!(status, 400, "{answer}");
        let named: Vec<&str> = answer["error"]["details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["field"].as_str().unwrap())
            .collect();
        assert_eq!(named, fields);
    }
    for query in ["limit=0", "limit=101", "limit=abc", "cursor=zzz", "sort=asc"] {
        let (status, answer) = app.get_as(&owner.token, &format!("/v1/projects?{query}")).await;
        assert_eq!(status, 400, "{query}: {answer}");
        assert_eq!(answer["error"]["code"], "validation_failed");
    }
}

/// A statement that runs past `database.statement_timeout` (here an update waiting for a row
/// another session holds) is cancelled by Postgres and answered 503, not left to hold its
/// connection; the connection serves the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_past_the_timeout_is_answered_503() {
    use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
    let app = TestApp::spawn_with(|c| {
        c.database.statement_timeout = std::time::Duration::from_millis(300);
        // one connection: the request after the timeout gets the same one
        c.database.max_connections = 1;
    })
    .await;
    let owner = app.sign_up("Owner").await;
    let path = format!("/v1/projects/{}", owner.project_id);
    let mut holding = AsyncPgConnection::establish(&app.db.url).await.unwrap();
    let lock =
        format!("BEGIN; SELECT id FROM projects WHERE id = '{}' FOR UPDATE", owner.project_id);
    holding.batch_execute(&lock).await.unwrap();

    // the guard only keeps a regression from hanging the suite: without the timeout the
    // update waits for as long as the row is held
    let (status, body) = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        app.patch_as(&owner.token, &path, json!({"name": "Renamed"})),
    )
    .await
    .expect("the statement is cancelled");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(body["error"]["message"].as_str().unwrap().contains("too long"), "{body}");

    holding.batch_execute("ROLLBACK").await.unwrap();
    let (status, body) = app.patch_as(&owner.token, &path, json!({"name": "Renamed"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], "Renamed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_numbers_at_the_edges_of_a_double_come_back_as_sent() {
    // PostgreSQL gives 1.7976931348623157e308 back as a 309-digit integer; parsed without
    // exact rounding it overflowed, and every read of the project answered 500
    let app = crate::harness::TestApp::spawn().await;
    let owner = app.sign_up("Owner").await;
    let metadata = serde_json::json!({"max": f64::MAX, "tiny": 5e-324, "neg": -3.402823466e38});
    let body = serde_json::json!({"name": "Edges", "metadata": metadata});
    let (status, created) = app.post_as(&owner.token, "/v1/projects", body).await;
    assert_eq!(status, 201, "{created}");
    let (status, list) = app.get_as(&owner.token, "/v1/projects").await;
    assert_eq!(status, 200, "{list}");
    let stored = list["data"]
        .as_array()
        .and_then(|projects| projects.iter().find(|p| p["name"] == "Edges"))
        .expect("the project is listed");
    assert_eq!(stored["metadata"], metadata);
}
