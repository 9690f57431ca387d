//! Durable acknowledgement with group commit.
//!
//! `/v1/send` answers 2xx only once its message rows are committed. Committing each request on
//! its own would cost a transaction per message, so requests hand their prepared rows to the
//! committer task, which gathers what arrives within a short window (bounded by count), writes
//! it all in one transaction (idempotency records, messages, events), answers each request
//! with its own outcome, and then puts the queued ids on the delivery stream in one pipelined
//! round trip: a committed message is accepted, the stream append is not worth waiting for.
//!
//! A commit mostly waits for the WAL flush, so a few run at once (`api.ingest_commits`): while
//! they wait, the next batch gathers, and Postgres flushes concurrent commits together. When
//! all are busy, requests queue in the channel and the next batch takes them all at once, so
//! batches grow with the load instead of the latency.
//!
//! If the stream append fails after the commit, the messages stay `queued` in Postgres and the
//! worker's sweeper enqueues them later: nothing committed is lost. If Postgres fails, every
//! request of the batch is answered `unavailable` and nothing was accepted; if the connection
//! broke with the commit on its way, they are answered that the outcome is unknown (the
//! commit may have happened), to be retried with the same `Idempotency-Key`.
//!
//! A batch holds many tenants' requests, so one request must not hold up the rest. A failed
//! batch is committed again request by request, and a project locked for long (a deletion that
//! deletes many messages in its transaction) makes an insert give up after a second (migration
//! 000017) rather than wait. Its requests are then refused at once for a few
//! seconds ([`Held`]), so that neither the batches nor the request-by-request pass keep paying
//! that second while the deletion runs.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use diesel_async::AsyncConnection;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::db::idempotency::{self, NewRecord};
use crate::db::messages::{self, Event, NewMessage};
use crate::db::{self, DbError};
use crate::metrics::Metrics;
use crate::queue::{Redis, deliveries};

/// Rows of one request, to be committed together.
#[derive(Debug, Clone, Default)]
pub struct Submission {
    pub messages: Vec<NewMessage>,
    pub events: Vec<Event>,
    /// Ids to put on the delivery stream once committed (not the scheduled ones).
    pub enqueue: Vec<String>,
    pub idempotency: Option<NewRecord>,
}

/// What became of a submission.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Committed,
    /// The idempotency key was used before with the same request: answer what it got then.
    Replay {
        status: u16,
        body: serde_json::Value,
    },
    /// The idempotency key was used before with another request.
    Mismatch,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The connection broke while the commit was on its way: it may have taken effect.
    #[error("the database connection broke during the commit: {0}")]
    OutcomeUnknown(String),
    /// The project is locked by a change that takes long (its deletion): retry.
    #[error("the project is being deleted or changed")]
    ProjectBusy,
    #[error("the ingestion committer has stopped")]
    Stopped,
}

type Reply = oneshot::Sender<Result<Outcome, IngestError>>;

/// The handle requests submit through; cheap to clone.
#[derive(Debug, Clone)]
pub struct Ingest {
    tx: mpsc::Sender<(Submission, Reply)>,
}

/// Batching bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long to wait for more requests once one arrived.
    pub window: Duration,
    /// Messages per transaction at most.
    pub max_messages: usize,
    /// Transactions in flight at once.
    pub commits: usize,
}

impl Ingest {
    /// A handle and the committer's receiving end; `run` the latter in a task.
    pub fn channel() -> (Ingest, Committer) {
        // bounded: under overload, requests wait here rather than piling up in memory
        let (tx, rx) = mpsc::channel(8192);
        (Ingest { tx }, Committer { rx })
    }

    pub async fn submit(&self, submission: Submission) -> Result<Outcome, IngestError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send((submission, reply)).await.map_err(|_| IngestError::Stopped)?;
        answer.await.map_err(|_| IngestError::Stopped)?
    }
}

pub struct Committer {
    rx: mpsc::Receiver<(Submission, Reply)>,
}

impl Committer {
    /// Commits batches until `stop` is cancelled and nothing is left to commit.
    pub async fn run(
        mut self,
        pool: db::Pool,
        redis: Redis,
        metrics: Arc<Metrics>,
        limits: Limits,
        stop: CancellationToken,
    ) {
        let slots = Arc::new(Semaphore::new(limits.commits.max(1)));
        let held = Arc::new(Held::default());
        let mut commits = JoinSet::new();
        loop {
            while commits.try_join_next().is_some() {}
            // wait for a free transaction before gathering, so that what arrives meanwhile
            // joins the next batch
            let Ok(slot) = slots.clone().acquire_owned().await else { break };
            let first = tokio::select! {
                biased;
                item = self.rx.recv() => item,
                () = stop.cancelled() => {
                    // no new requests arrive after the HTTP server stopped; commit what waits
                    self.rx.close();
                    self.rx.recv().await
                }
            };
            let Some(first) = first else { break };
            let mut batch = vec![first];
            let mut count = batch[0].0.messages.len();
            let deadline = tokio::time::Instant::now() + limits.window;
            while count < limits.max_messages {
                let next = match self.rx.try_recv() {
                    Ok(item) => Some(item),
                    Err(mpsc::error::TryRecvError::Empty) => {
                        tokio::time::timeout_at(deadline, self.rx.recv()).await.ok().flatten()
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                };
                let Some(item) = next else { break };
                count += item.0.messages.len();
                batch.push(item);
            }
            metrics.ingest_batch.observe(count as f64);
            let (pool, redis, metrics, held) =
                (pool.clone(), redis.clone(), metrics.clone(), held.clone());
            commits.spawn(async move {
                commit_and_reply(&pool, &redis, &metrics, &held, batch).await;
                drop(slot);
            });
        }
        // every accepted request is answered before the committer ends
        while commits.join_next().await.is_some() {}
    }
}

/// How long a project's requests are refused after an insert gave up waiting for it.
const HOLD_FOR: Duration = Duration::from_secs(5);

/// Projects whose messages could not be committed because the project stayed locked (being
/// deleted), until when their requests are refused without trying.
#[derive(Debug, Default)]
struct Held(std::sync::Mutex<HashMap<String, tokio::time::Instant>>);

impl Held {
    /// Whether `submission` names a held project; counts it refused if so.
    fn refuses(&self, submission: &Submission, metrics: &Metrics) -> bool {
        let refused = self.holds(submission);
        if refused {
            metrics.ingest_refused.with_label_values(&["project_held"]).inc();
        }
        refused
    }

    fn holds(&self, submission: &Submission) -> bool {
        let Ok(mut held) = self.0.lock() else { return false };
        if held.is_empty() {
            return false;
        }
        let now = tokio::time::Instant::now();
        held.retain(|_, until| *until > now);
        submission.messages.iter().any(|m| held.contains_key(&m.project_id))
    }

    /// Holds the project of `submission`, which gave up waiting for a lock. Only a request of
    /// one project says which project was locked; one of several is not held.
    fn hold(&self, submission: &Submission) {
        let mut projects = submission.messages.iter().map(|m| &m.project_id);
        let Some(first) = projects.next() else { return };
        if projects.all(|p| p == first)
            && let Ok(mut held) = self.0.lock()
        {
            held.insert(first.clone(), tokio::time::Instant::now() + HOLD_FOR);
        }
    }
}

async fn commit_and_reply(
    pool: &db::Pool,
    redis: &Redis,
    metrics: &Metrics,
    held: &Held,
    batch: Vec<(Submission, Reply)>,
) {
    let (refused, batch): (Vec<_>, Vec<_>) =
        batch.into_iter().partition(|(s, _)| held.refuses(s, metrics));
    for (_, reply) in refused {
        let _ = reply.send(Err(IngestError::ProjectBusy));
    }
    if batch.is_empty() {
        return;
    }
    let (submissions, replies): (Vec<Submission>, Vec<Reply>) = batch.into_iter().unzip();
    let timer = metrics.ingest_commit.start_timer();
    let committed = commit(pool, &submissions).await;
    timer.observe_duration();
    let outcomes = match committed {
        Ok(outcomes) => outcomes,
        // Committed or not, nobody can tell: not committed again one by one (what did commit
        // would collide with itself and be reported as refused), and not "nothing accepted".
        Err(DbError::Query(e)) if db::connection_broke(&e) => {
            let message = e.to_string();
            submissions.iter().map(|_| Err(IngestError::OutcomeUnknown(message.clone()))).collect()
        }
        // One bad submission (say, its project deleted meanwhile) must not fail the others:
        // try them one by one. Not after a timeout: each alone could take as long again.
        Err(DbError::Query(e)) if submissions.len() > 1 && !db::timed_out(&e) => {
            tracing::warn!(error = %e, "batch commit failed; committing one by one");
            let mut outcomes = Vec::with_capacity(submissions.len());
            for submission in &submissions {
                // held by an earlier request of this pass
                if held.refuses(submission, metrics) {
                    outcomes.push(Err(IngestError::ProjectBusy));
                    continue;
                }
                outcomes.push(match commit(pool, std::slice::from_ref(submission)).await {
                    Ok(mut one) => one.remove(0),
                    Err(e) => Err(failed(held, metrics, submission, e)),
                });
            }
            outcomes
        }
        Err(e) if submissions.len() == 1 => vec![Err(failed(held, metrics, &submissions[0], e))],
        Err(e) => {
            let message = e.to_string();
            submissions.iter().map(|_| Err(IngestError::Unavailable(message.clone()))).collect()
        }
    };
    let queued: Vec<String> = submissions
        .into_iter()
        .zip(&outcomes)
        .filter(|(_, o)| matches!(o, Ok(Outcome::Committed)))
        .flat_map(|(s, _)| s.enqueue)
        .collect();
    // Committed is accepted: answer now rather than after the stream append too.
    for (reply, outcome) in replies.into_iter().zip(outcomes) {
        // the request may have given up (client gone); its rows are committed regardless
        let _ = reply.send(outcome);
    }
    if let Err(e) = deliveries::enqueue(redis, &queued).await {
        // committed and `queued` in Postgres: the sweeper will enqueue them
        tracing::warn!(error = %e, messages = queued.len(), "could not enqueue; the sweeper will");
    }
}

/// Merges the search indexes' pending entries every `every` until `stop`: ingestion only
/// appends to the pending lists, and merging them in bulk, beside the commits, costs less and
/// stalls none of them (`messages::merge_search_pending`). Their size limit (migration
/// 000011) is a backstop for when no merger runs.
pub async fn merge_search(pool: db::Pool, every: Duration, stop: CancellationToken) {
    // A failure that lasts (a database user that does not own the indexes, say) is warned
    // about once, not every interval, and its end is told.
    let failing = AtomicBool::new(false);
    // a merge cut off by shutdown is rolled back; the next one, in any process, does it all
    crate::runtime::duties::every(every, stop, || async {
        let merged = match pool.get().await {
            Ok(mut conn) => {
                messages::merge_search_pending(&mut conn).await.map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        match merged {
            Ok(pages) => {
                if failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("merging the search indexes' pending entries again");
                }
                tracing::debug!(?pages, "merged the search indexes' pending entries")
            }
            Err(error) if failing.swap(true, Ordering::Relaxed) => {
                tracing::debug!(%error, "could not merge the search indexes' pending entries")
            }
            Err(error) => tracing::warn!(%error,
                "could not merge the search indexes' pending entries; retrying quietly"),
        }
    })
    .await
}

fn unavailable(error: DbError) -> IngestError {
    IngestError::Unavailable(error.to_string())
}

/// The answer to a request whose own commit failed with `error`; one that gave up waiting for
/// its project holds the project.
fn failed(held: &Held, metrics: &Metrics, submission: &Submission, error: DbError) -> IngestError {
    if let DbError::Query(e) = &error
        && db::connection_broke(e)
    {
        return IngestError::OutcomeUnknown(e.to_string());
    }
    if matches!(&error, DbError::Query(e) if db::gave_up_waiting(e)) {
        held.hold(submission);
        metrics.ingest_refused.with_label_values(&["project_locked"]).inc();
        IngestError::ProjectBusy
    } else {
        unavailable(error)
    }
}

/// One transaction for all `submissions`; returns each one's outcome in order.
async fn commit(
    pool: &db::Pool,
    submissions: &[Submission],
) -> Result<Vec<Result<Outcome, IngestError>>, DbError> {
    let mut conn = pool.get().await.map_err(|e| DbError::Pool(e.to_string()))?;
    // The first submission with a given key claims it; later ones in the same batch are
    // answered from the record after the commit, like any repeat.
    let mut seen = HashSet::new();
    let first_with_key: Vec<bool> = submissions
        .iter()
        .map(|s| {
            s.idempotency
                .as_ref()
                .is_some_and(|r| seen.insert((r.project_id.clone(), r.key.clone())))
        })
        .collect();
    let claims: Vec<NewRecord> = submissions
        .iter()
        .zip(&first_with_key)
        .filter(|(_, first)| **first)
        .filter_map(|(s, _)| s.idempotency.clone())
        .collect();

    let proceeds_all = claims.is_empty();
    let won: HashSet<(String, String)> = if proceeds_all {
        // nothing to claim: one statement, atomic on its own, saves a transaction's round trips
        let rows: Vec<&NewMessage> = submissions.iter().flat_map(|s| &s.messages).collect();
        let events: Vec<&Event> = submissions.iter().flat_map(|s| &s.events).collect();
        messages::insert_all(&mut conn, &rows, &events).await?;
        HashSet::new()
    } else {
        conn.transaction::<_, diesel::result::Error, _>(async |conn| {
            let won: HashSet<(String, String)> = idempotency::claim(conn, &claims)
                .await?
                .into_iter()
                .map(|c| (c.project_id, c.key))
                .collect();
            let proceeds = |s: &Submission| match &s.idempotency {
                None => true,
                Some(r) => won.contains(&(r.project_id.clone(), r.key.clone())),
            };
            let mut rows: Vec<&NewMessage> = Vec::new();
            let mut events: Vec<&Event> = Vec::new();
            for (s, first) in submissions.iter().zip(&first_with_key) {
                if proceeds(s) && (s.idempotency.is_none() || *first) {
                    rows.extend(&s.messages);
                    events.extend(&s.events);
                }
            }
            messages::insert_all(conn, &rows, &events).await?;
            Ok(won)
        })
        .await?
    };

    let mut stored = HashMap::new();
    let mut outcomes = Vec::with_capacity(submissions.len());
    for (s, first) in submissions.iter().zip(&first_with_key) {
        let Some(record) = &s.idempotency else {
            outcomes.push(Ok(Outcome::Committed));
            continue;
        };
        let id = (record.project_id.clone(), record.key.clone());
        if *first && won.contains(&id) {
            outcomes.push(Ok(Outcome::Committed));
            continue;
        }
        if !stored.contains_key(&id) {
            let found = idempotency::find(&mut conn, &record.project_id, &record.key).await?;
            stored.insert(id.clone(), found);
        }
        outcomes.push(match stored.get(&id).cloned().flatten() {
            Some(found) if found.request_hash == record.request_hash => Ok(Outcome::Replay {
                status: found.response_status.and_then(|s| u16::try_from(s).ok()).unwrap_or(202),
                body: found.response_body.unwrap_or_default(),
            }),
            Some(_) => Ok(Outcome::Mismatch),
            // expired between the claim and this read: vanishingly rare, and a retry succeeds
            None => {
                Err(IngestError::Unavailable("the idempotency record expired meanwhile".into()))
            }
        });
    }
    Ok(outcomes)
}
