//! `relayit admin`: set up users, organizations and API keys without the HTTP API, for
//! headless installs (a fresh server with sign-up disabled, provisioning scripts).
//!
//! The same validation as the API applies; results go to stdout (ids, or the key) so scripts
//! can capture them.

use std::io::BufRead;

use anyhow::{Context, bail};
use diesel_async::AsyncConnection;

use crate::auth::keys::KeySpec;
use crate::auth::password;
use crate::db::{self, organizations, projects, users};
use crate::domain::ids;
use crate::domain::recipient::normalize_email;
use crate::domain::validate::Validator;

/// Reads the password from the first line of standard input.
pub fn read_password(input: impl BufRead) -> anyhow::Result<String> {
    let line = input.lines().next().context("no password on standard input")??;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

pub async fn create_user(
    pool: &db::Pool,
    email: &str,
    name: &str,
    secret: String,
) -> anyhow::Result<String> {
    let email = normalize_email(email);
    let mut check = Validator::new();
    check.email("email", &email);
    check.name("name", name);
    password::check(&mut check, "password", &secret);
    check.finish()?;
    // one hash in a process of its own: a single slot, and no reason to give up waiting
    let hash = password::Hasher::new(1, std::time::Duration::from_secs(3600)).hash(secret).await?;
    let mut conn = pool.get().await?;
    if users::find_by_email(&mut conn, &email).await?.is_some() {
        bail!("a user with email {email} exists already");
    }
    let id = ids::new_id(ids::USER);
    users::insert(
        &mut conn,
        users::NewUser {
            id: &id,
            email: &email,
            name: name.trim(),
            password_hash: Some(&hash),
            email_verified: false,
        },
    )
    .await?;
    Ok(id)
}

/// Creates an organization owned by the user with `owner_email`; returns its id.
pub async fn create_org(
    pool: &db::Pool,
    owner_email: &str,
    name: &str,
    slug: Option<&str>,
) -> anyhow::Result<String> {
    let mut check = Validator::new();
    check.name("name", name);
    if let Some(slug) = slug {
        check.slug("slug", slug);
    }
    check.finish()?;
    let mut conn = pool.get().await?;
    let owner = users::find_by_email(&mut conn, &normalize_email(owner_email))
        .await?
        .with_context(|| {
            format!("no user with email {owner_email}; create it with `relayit admin create-user`")
        })?;
    let (org, _) = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            organizations::create_with_owner(conn, name.trim(), slug, &owner.id).await
        })
        .await
        .context("cannot create the organization (is the slug taken?)")?;
    Ok(org.id)
}

/// Creates an API key in organization `org` (id or slug), optionally bound to `project` (id or
/// slug); returns the full key.
pub async fn create_api_key(
    pool: &db::Pool,
    org: &str,
    project: Option<&str>,
    name: &str,
    scopes: Vec<String>,
) -> anyhow::Result<String> {
    let spec = KeySpec::check(name, Some(scopes), None, None)?;
    let mut conn = pool.get().await?;
    let org = organizations::find(&mut conn, org)
        .await?
        .with_context(|| format!("no organization {org}"))?;
    let project_id = match project {
        Some(p) => Some(
            projects::find(&mut conn, &org.id, p)
                .await?
                .with_context(|| format!("no project {p} in {}", org.slug))?
                .id,
        ),
        None => None,
    };
    let (_, key) = spec.create(&mut conn, &org.id, project_id.as_deref(), None).await?;
    Ok(key)
}
