//! Liveness and readiness for orchestrators and load balancers.
//!
//! `/healthz` answers as long as the process serves HTTP; `/readyz` also checks that Postgres and
//! Redis answer, and names the ones that do not, so a probe (or an operator) sees which
//! dependency is down. Neither needs authentication.
//!
//! A replica (`database.read_url`) is reported but does not make the process unready: only
//! lag-tolerant reads (message lists, dashboard overviews) use it, and taking every process out
//! of rotation for it would stop sending too. Those reads answer 503 while it is down;
//! `checks.postgresReplica` says why, and `status` is `degraded`.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::db;
use crate::domain::validate::FieldError;
use crate::error::ApiError;
use crate::state::AppState;

/// How long a readiness probe waits for each dependency.
const READY_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
    pub version: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ok` when every dependency answers; `degraded` when all but the replica do.
    pub status: &'static str,
    pub checks: Checks,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Checks {
    pub postgres: &'static str,
    pub redis: &'static str,
    /// The replica of `database.read_url` (`ok` or `unreachable`); absent without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres_replica: Option<&'static str>,
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "alive", body = Health)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok", version: env!("CARGO_PKG_VERSION") })
}

/// Postgres and Redis both answer (a replica's outage is reported, see `checks`).
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "ready", body = Readiness),
        (status = 503, description = "a dependency is down; `details` names it", body = crate::error::ErrorBody),
    ))]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let replica = async {
        match &state.db_replica {
            Some(pool) => Some(db::ping(pool, READY_TIMEOUT).await),
            None => None,
        }
    };
    let (postgres, redis, replica) =
        tokio::join!(db::ping(&state.db, READY_TIMEOUT), state.redis.ping(), replica);
    let mut down = Vec::new();
    // The cause goes to the log, not to whoever can reach the probe: driver errors name
    // hosts, ports and users.
    for (name, result) in [("postgres", postgres), ("redis", redis)] {
        if let Err(error) = result {
            tracing::warn!(dependency = name, %error, "not ready");
            down.push(FieldError::new(name, "unreachable"));
        }
    }
    if down.is_empty() {
        let postgres_replica = replica.map(|result| match result {
            Ok(()) => "ok",
            Err(error) => {
                tracing::warn!(dependency = "postgres_replica", %error, "replica unreachable");
                "unreachable"
            }
        });
        let status = if postgres_replica == Some("unreachable") { "degraded" } else { "ok" };
        return Ok(HttpResponse::Ok().json(Readiness {
            status,
            checks: Checks { postgres: "ok", redis: "ok", postgres_replica },
        }));
    }
    let names: Vec<&str> = down.iter().map(|d| d.field.as_str()).collect();
    Err(ApiError::unavailable(format!("not ready: {} down", names.join(" and ")))
        .with_details(down))
}
