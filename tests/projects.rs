//! Projects: slugs, metadata, pagination and roles.

mod common;

use common::TestApp;
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
