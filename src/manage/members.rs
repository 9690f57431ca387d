//! An organization's people: changing a member's role, removing a member (or leaving),
//! inviting by email, canceling an invitation, and accepting one with its token. The role
//! rules (owners manage owners, admins the rest) and the last-owner rule live here, for
//! `/v1/organizations/{orgId}/members`, `/v1/.../invitations` and the dashboard's members and
//! invitation pages alike.

use actix_web::http::StatusCode;
use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection};

use crate::auth::accounts::unique_violation_on;
use crate::auth::{Access, Action, Role, tokens};
use crate::db::invitations::{self, Invitation, NewInvitation};
use crate::db::organizations::{self, Member, MemberUser, NewMember, Organization};
use crate::db::users::{self, User};
use crate::domain::ids;
use crate::domain::recipient::normalize_email;
use crate::domain::validate::Validator;
use crate::error::ApiError;
use crate::state::AppState;

/// How long an invitation can be accepted.
const VALID_FOR: chrono::Duration = chrono::Duration::days(7);

/// The refusal of a change that would leave the organization without an owner (409).
const LAST_OWNER: &str = "an organization must keep at least one owner";

/// Whether `error` is the last-owner refusal, which a page explains with what to do instead.
pub fn is_last_owner(error: &ApiError) -> bool {
    error.code() == "conflict" && error.message() == LAST_OWNER
}

const ROLE_MESSAGE: &str = "must be owner, admin or member";

/// Whether the access may change `target`'s role or remove them (a page shows its controls
/// only then): owners for an owner, admins for the rest.
pub fn may_manage(access: &Access, target: &Member) -> bool {
    member_change_allowed(access, target, Some(Role::Member)).is_ok()
}

/// What a change to a member needs: any change to an owner, or making one, is for owners;
/// other changes for admins. Leaving (removing oneself) needs nothing.
fn member_change_allowed(
    access: &Access,
    target: &Member,
    new_role: Option<Role>,
) -> Result<(), ApiError> {
    let leaving = new_role.is_none() && access.user().is_some_and(|u| u.id == target.user_id);
    if leaving {
        return Ok(());
    }
    let touches_owner = target.role == "owner" || new_role == Some(Role::Owner);
    access.require(if touches_owner { Action::Own } else { Action::Write })
}

/// Within the caller's transaction: refuses (409) when `target` is the last owner and is about
/// to stop being one.
async fn keep_an_owner(
    conn: &mut AsyncPgConnection,
    org_id: &str,
    target: &Member,
    new_role: Option<Role>,
) -> Result<(), ApiError> {
    if target.role != "owner" || new_role == Some(Role::Owner) {
        return Ok(());
    }
    organizations::lock(conn, org_id).await?;
    if organizations::count_owners(conn, org_id).await? <= 1 {
        return Err(ApiError::conflict(LAST_OWNER));
    }
    Ok(())
}

async fn find_member(
    conn: &mut AsyncPgConnection,
    org_id: &str,
    member_id: &str,
) -> Result<(Member, MemberUser), ApiError> {
    organizations::find_member(conn, org_id, member_id)
        .await?
        .ok_or_else(|| ApiError::not_found("member"))
}

/// Gives member `member_id` of the access's organization the role `role`. Admins change
/// non-owners; owners also make and unmake owners; the last owner keeps the role (409).
pub async fn set_role(
    state: &AppState,
    access: &Access,
    member_id: &str,
    role: &str,
) -> Result<(Member, MemberUser), ApiError> {
    access.require_org_wide()?;
    access.require(Action::Write)?;
    let role = Role::parse(role).ok_or_else(|| ApiError::invalid_field("role", ROLE_MESSAGE))?;
    let mut conn = state.db.get().await?;
    let (target, user) = find_member(&mut conn, &access.org.id, member_id).await?;
    member_change_allowed(access, &target, Some(role))?;
    let org_id = access.org.id.clone();
    let updated = conn
        .transaction::<_, ApiError, _>(async |conn| {
            keep_an_owner(conn, &org_id, &target, Some(role)).await?;
            Ok(organizations::set_role(conn, &target.id, role.as_str()).await?)
        })
        .await?;
    Ok((updated, user))
}

/// Removes member `member_id` from the access's organization, or lets members remove
/// themselves (leave); the last owner stays (409). Returns who was removed.
pub async fn remove(
    state: &AppState,
    access: &Access,
    member_id: &str,
) -> Result<Member, ApiError> {
    access.require_org_wide()?;
    let mut conn = state.db.get().await?;
    let (target, _) = find_member(&mut conn, &access.org.id, member_id).await?;
    member_change_allowed(access, &target, None)?;
    let org_id = access.org.id.clone();
    conn.transaction::<_, ApiError, _>(async |conn| {
        keep_an_owner(conn, &org_id, &target, None).await?;
        Ok(organizations::delete_member(conn, &target.id).await?)
    })
    .await?;
    Ok(target)
}

/// Invites `email` to the access's organization with `role` (admins; only owners invite
/// owners). Returns the invitation and its token, which exists only here: the inviter passes
/// it on, and only its hash is stored.
pub async fn invite(
    state: &AppState,
    access: &Access,
    email: &str,
    role: &str,
) -> Result<(Invitation, String), ApiError> {
    access.require_org_wide()?;
    access.require(Action::Write)?;
    let email = normalize_email(email);
    let mut check = Validator::new();
    check.email("email", &email);
    let role = Role::parse(role);
    if role.is_none() {
        check.error("role", ROLE_MESSAGE);
    }
    check.finish()?;
    let role = role.ok_or_else(|| ApiError::internal("role checked above"))?;
    if role == Role::Owner {
        access.require(Action::Own)?;
    }
    let mut conn = state.db.get().await?;
    if let Some(user) = users::find_by_email(&mut conn, &email).await?
        && organizations::is_member(&mut conn, &access.org.id, &user.id).await?
    {
        return Err(ApiError::conflict("this person is already a member"));
    }
    let token = tokens::new_token();
    let hash = tokens::hash(&token);
    let id = ids::new_id(ids::INVITATION);
    let new = NewInvitation {
        id: &id,
        organization_id: &access.org.id,
        email: &email,
        role: role.as_str(),
        token_hash: &hash,
        inviter_id: access.user().map(|u| u.id.as_str()),
        expires_at: Utc::now() + VALID_FOR,
    };
    match invitations::insert(&mut conn, new).await {
        Ok(invitation) => Ok((invitation, token)),
        Err(e) if unique_violation_on(&e, "invitations_pending_email_idx") => {
            Err(ApiError::conflict("a pending invitation for this email exists; cancel it first"))
        }
        Err(e) => Err(e.into()),
    }
}

/// Cancels pending invitation `invitation_id` of the access's organization (admins); 409 once
/// it was accepted or canceled.
pub async fn cancel_invitation(
    state: &AppState,
    access: &Access,
    invitation_id: &str,
) -> Result<(), ApiError> {
    access.require_org_wide()?;
    access.require(Action::Write)?;
    let mut conn = state.db.get().await?;
    let org_id = access.org.id.clone();
    let canceled = conn
        .transaction::<_, ApiError, _>(async |conn| {
            Ok(invitations::cancel(conn, &org_id, invitation_id).await?)
        })
        .await?;
    match canceled {
        None => Err(ApiError::not_found("invitation")),
        Some(false) => Err(ApiError::conflict("the invitation is no longer pending")),
        Some(true) => Ok(()),
    }
}

/// Whether `user` may accept `invitation` now: pending (409 otherwise), not expired (410),
/// sent to their email (403), and they are not a member already (409).
async fn acceptable(
    conn: &mut AsyncPgConnection,
    invitation: &Invitation,
    user: &User,
) -> Result<(), ApiError> {
    match invitation.status.as_str() {
        "pending" => {}
        "accepted" => return Err(ApiError::conflict("the invitation was already accepted")),
        _ => return Err(ApiError::conflict("the invitation was canceled")),
    }
    if invitation.expires_at <= Utc::now() {
        return Err(ApiError::new(StatusCode::GONE, "gone", "the invitation has expired"));
    }
    if invitation.email != user.email {
        return Err(ApiError::forbidden("the invitation was sent to another email address"));
    }
    if organizations::is_member(conn, &invitation.organization_id, &user.id).await? {
        return Err(ApiError::conflict("you are already a member of this organization"));
    }
    Ok(())
}

/// The invitation with `token` and its organization, when `user` could accept it now; the
/// error accepting would give otherwise (404 for an unknown token). For a page that asks
/// before accepting.
pub async fn invitation_for(
    state: &AppState,
    user: &User,
    token: &str,
) -> Result<(Invitation, Organization), ApiError> {
    let mut conn = state.db.get().await?;
    let not_found = || ApiError::not_found("invitation");
    let invitation =
        invitations::find_by_token(&mut conn, &tokens::hash(token)).await?.ok_or_else(not_found)?;
    acceptable(&mut conn, &invitation, user).await?;
    let org =
        organizations::find(&mut conn, &invitation.organization_id).await?.ok_or_else(not_found)?;
    Ok((invitation, org))
}

/// Accepts the invitation with `token` as `user`, who becomes a member with its role.
pub async fn accept(state: &AppState, user: &User, token: &str) -> Result<Member, ApiError> {
    let hash = tokens::hash(token);
    let mut conn = state.db.get().await?;
    conn.transaction::<_, ApiError, _>(async |conn| {
        let invitation = invitations::find_by_token_for_update(conn, &hash)
            .await?
            .ok_or_else(|| ApiError::not_found("invitation"))?;
        acceptable(conn, &invitation, user).await?;
        let id = ids::new_id(ids::MEMBER);
        let member = organizations::insert_member(
            conn,
            NewMember {
                id: &id,
                organization_id: &invitation.organization_id,
                user_id: &user.id,
                role: &invitation.role,
            },
        )
        .await?;
        invitations::mark_accepted(conn, &invitation.id).await?;
        Ok(member)
    })
    .await
}
