//! Organizations (tenants) and their members.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::Cursor;
use crate::db::schema::{members, organizations, projects, users};

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = organizations, check_for_backend(diesel::pg::Pg))]
pub struct Organization {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub logo: Option<String>,
    pub metadata: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = organizations)]
pub struct NewOrganization<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub slug: &'a str,
}

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = members, check_for_backend(diesel::pg::Pg))]
pub struct Member {
    pub id: String,
    pub organization_id: String,
    pub user_id: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = members)]
pub struct NewMember<'a> {
    pub id: &'a str,
    pub organization_id: &'a str,
    pub user_id: &'a str,
    pub role: &'a str,
}

#[derive(Debug, AsChangeset, Default)]
#[diesel(table_name = organizations)]
pub struct OrganizationChanges {
    pub name: Option<String>,
    pub slug: Option<String>,
    pub updated_at: Option<DateTime<Utc>>,
}

pub async fn insert(
    conn: &mut AsyncPgConnection,
    org: NewOrganization<'_>,
) -> QueryResult<Organization> {
    diesel::insert_into(organizations::table)
        .values(org)
        .returning(Organization::as_returning())
        .get_result(conn)
        .await
}

pub async fn insert_member(
    conn: &mut AsyncPgConnection,
    member: NewMember<'_>,
) -> QueryResult<Member> {
    diesel::insert_into(members::table)
        .values(member)
        .returning(Member::as_returning())
        .get_result(conn)
        .await
}

/// Creates an organization owned by `owner_id`, with a `default` project, inside the caller's
/// transaction. Without a slug, one is derived from the name (with a numeric suffix when taken).
pub async fn create_with_owner(
    conn: &mut AsyncPgConnection,
    name: &str,
    slug: Option<&str>,
    owner_id: &str,
) -> QueryResult<(Organization, Member)> {
    let slug = match slug {
        Some(slug) => slug.to_owned(),
        None => {
            let base = crate::domain::slug::slugify(name, "org");
            let taken: Vec<String> = organizations::table
                .filter(
                    organizations::slug.eq(&base).or(organizations::slug.like(format!("{base}-%"))),
                )
                .select(organizations::slug)
                .load(conn)
                .await?;
            crate::domain::slug::first_free(&base, &taken)
        }
    };
    let id = crate::domain::ids::new_id(crate::domain::ids::ORGANIZATION);
    let org = insert(conn, NewOrganization { id: &id, name, slug: &slug }).await?;
    let member_id = crate::domain::ids::new_id(crate::domain::ids::MEMBER);
    let member = insert_member(
        conn,
        NewMember { id: &member_id, organization_id: &org.id, user_id: owner_id, role: "owner" },
    )
    .await?;
    let project_id = crate::domain::ids::new_id(crate::domain::ids::PROJECT);
    crate::db::projects::insert(
        conn,
        crate::db::projects::NewProject {
            id: &project_id,
            organization_id: &org.id,
            name: "Default",
            slug: "default",
            metadata: &serde_json::json!({}),
            message_retention_days: None,
            one_click_unsubscribe: false,
            unsubscribe_mailto: None,
        },
    )
    .await?;
    Ok((org, member))
}

/// An organization by id or slug together with `user_id`'s membership of it.
pub async fn find_membership(
    conn: &mut AsyncPgConnection,
    id_or_slug: &str,
    user_id: &str,
) -> QueryResult<Option<(Organization, Member)>> {
    organizations::table
        .inner_join(members::table)
        .filter(organizations::id.eq(id_or_slug).or(organizations::slug.eq(id_or_slug)))
        .filter(members::user_id.eq(user_id))
        .select((Organization::as_select(), Member::as_select()))
        .first(conn)
        .await
        .optional()
}

pub async fn find(
    conn: &mut AsyncPgConnection,
    id_or_slug: &str,
) -> QueryResult<Option<Organization>> {
    organizations::table
        .filter(organizations::id.eq(id_or_slug).or(organizations::slug.eq(id_or_slug)))
        .select(Organization::as_select())
        .first(conn)
        .await
        .optional()
}

/// The user's organizations with their role in each, newest first.
pub async fn list_for_user(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    after: Option<&Cursor>,
    limit: i64,
) -> QueryResult<Vec<(Organization, Member)>> {
    let query = organizations::table
        .inner_join(members::table)
        .filter(members::user_id.eq(user_id))
        .select((Organization::as_select(), Member::as_select()))
        .order((organizations::created_at.desc(), organizations::id.desc()))
        .limit(limit)
        .into_boxed();
    after_cursor!(query, organizations::created_at, organizations::id, after).load(conn).await
}

/// The first organization the user joined (the default active organization).
pub async fn first_for_user(
    conn: &mut AsyncPgConnection,
    user_id: &str,
) -> QueryResult<Option<(Organization, Member)>> {
    organizations::table
        .inner_join(members::table)
        .filter(members::user_id.eq(user_id))
        .select((Organization::as_select(), Member::as_select()))
        .order((members::created_at.asc(), members::id.asc()))
        .first(conn)
        .await
        .optional()
}

pub async fn update(
    conn: &mut AsyncPgConnection,
    id: &str,
    changes: OrganizationChanges,
) -> QueryResult<Organization> {
    diesel::update(organizations::table.find(id))
        .set(changes)
        .returning(Organization::as_returning())
        .get_result(conn)
        .await
}

/// Deletes the organization and all it owns; its projects' messages first, in batches
/// (`messages::purge_project`), so that the deletion itself is short.
pub async fn delete(conn: &mut AsyncPgConnection, id: &str) -> QueryResult<()> {
    let owned: Vec<String> = projects::table
        .filter(projects::organization_id.eq(id))
        .select(projects::id)
        .load(conn)
        .await?;
    for project in owned {
        crate::db::messages::purge_project(conn, id, &project).await?;
    }
    diesel::delete(organizations::table.find(id)).execute(conn).await.map(drop)
}

/// A member with the user's email and name, for member lists.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct MemberUser {
    pub email: String,
    pub name: String,
}

pub async fn list_members(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    after: Option<&Cursor>,
    limit: i64,
) -> QueryResult<Vec<(Member, MemberUser)>> {
    let query = members::table
        .inner_join(users::table)
        .filter(members::organization_id.eq(organization_id))
        .select((Member::as_select(), MemberUser::as_select()))
        .order((members::created_at.desc(), members::id.desc()))
        .limit(limit)
        .into_boxed();
    after_cursor!(query, members::created_at, members::id, after).load(conn).await
}

pub async fn find_member(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    member_id: &str,
) -> QueryResult<Option<(Member, MemberUser)>> {
    members::table
        .inner_join(users::table)
        .filter(members::organization_id.eq(organization_id))
        .filter(members::id.eq(member_id))
        .select((Member::as_select(), MemberUser::as_select()))
        .first(conn)
        .await
        .optional()
}

/// Locks the organization row, serializing changes to its set of owners (so two concurrent
/// demotions cannot leave it without one).
pub async fn lock(conn: &mut AsyncPgConnection, id: &str) -> QueryResult<()> {
    organizations::table
        .find(id)
        .select(organizations::id)
        .for_update()
        .first::<String>(conn)
        .await
        .map(drop)
}

pub async fn count_owners(conn: &mut AsyncPgConnection, organization_id: &str) -> QueryResult<i64> {
    members::table
        .filter(members::organization_id.eq(organization_id))
        .filter(members::role.eq("owner"))
        .count()
        .get_result(conn)
        .await
}

pub async fn set_role(
    conn: &mut AsyncPgConnection,
    member_id: &str,
    role: &str,
) -> QueryResult<Member> {
    diesel::update(members::table.find(member_id))
        .set((members::role.eq(role), members::updated_at.eq(diesel::dsl::now)))
        .returning(Member::as_returning())
        .get_result(conn)
        .await
}

pub async fn delete_member(conn: &mut AsyncPgConnection, member_id: &str) -> QueryResult<()> {
    diesel::delete(members::table.find(member_id)).execute(conn).await.map(drop)
}

pub async fn is_member(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    user_id: &str,
) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        members::table
            .filter(members::organization_id.eq(organization_id))
            .filter(members::user_id.eq(user_id)),
    ))
    .get_result(conn)
    .await
}
