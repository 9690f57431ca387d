//! The delivery worker role: reads `{relayit}:deliveries` as a member of the `workers` consumer
//! group on a dedicated connection, routes each message to its provider connector, and records
//! the outcome; alongside, it runs the queue's background duties.
//!
//! - `worker`: what a batch of entries becomes (claim, deliver, record, acknowledge);
//! - `deliver` and `routing`: one message's attempt over its credentials, in routing order;
//! - `limits`: per-credential rate limits, checked before each provider call;
//! - one organization's bound on a worker's slots, so a slow tenant cannot hold them all, is
//!   `crate::runtime::shares`;
//! - the connectors it calls are in `crate::providers`;
//! - `queue`: the consuming side of the queue contract (`crate::queue::deliveries`);
//! - `unsubscribe`: the one-click unsubscribe header fields of a project's emails;
//! - `recovery`: the sweeper;
//! - `retention`: the deletion of what has outlived its use (old messages, expired sessions...);
//! - `backoff`: the delays between a message's attempts.
//!
//! Reading the stream, taking over what dead workers left, and shutting down are the shared
//! runtime's (`crate::runtime`).

pub mod backoff;
pub mod deliver;
pub mod limits;
pub mod queue;
pub mod recovery;
pub mod retention;
pub mod routing;
pub mod unsubscribe;
pub mod worker;

use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::queue::Keys;
use crate::queue::deliveries::MESSAGE_FIELD;
use crate::runtime::{self, Liveness, Stream, duties};
use crate::state::AppState;

pub async fn run(state: AppState, shutdown: CancellationToken) -> anyhow::Result<()> {
    let config = &state.config.delivery;
    let stream = Stream {
        role: "delivery",
        key: Keys::deliveries,
        concurrency: config.concurrency,
        visibility_timeout: config.visibility_timeout,
    };
    let mut duties = JoinSet::new();
    duties.spawn(duties::move_due(
        state.redis.clone(),
        Keys::deliveries_delayed,
        Keys::deliveries,
        MESSAGE_FIELD,
        recovery::MOVE_EVERY,
        shutdown.clone(),
    ));
    duties.spawn(recovery::sweep(state.clone(), shutdown.clone()));
    duties.spawn(retention::run(state.clone(), shutdown.clone()));
    let liveness =
        Arc::new(Liveness::new(runtime::consumer_name(), state.config.server.liveness_timeout));
    let (dispatch, tasks) = worker::Worker::start(state.clone(), liveness.clone());
    runtime::run(&state, stream, liveness, dispatch, tasks, duties, shutdown).await
}
