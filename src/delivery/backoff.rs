//! Waiting between tries, of two kinds: a message's next attempt after a provider failure
//! (exponential with jitter, from the `delivery.retry_*` settings), and the worker's own
//! retries of Postgres or Redis while they are unreachable (infrastructure errors never fail a
//! message; the work waits for them).

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

/// The delay after failed attempt number `attempt` (1 for the first): `base` doubled per
/// attempt, capped at `max`, with equal jitter: half of it fixed, half drawn from `random`
/// (0 to 1). The fixed half keeps retries from hammering a provider that is down; the random
/// half spreads out messages that failed together.
pub fn retry_delay(base: Duration, max: Duration, attempt: u32, random: f64) -> Duration {
    let doublings = attempt.saturating_sub(1).min(31);
    let full = base.saturating_mul(1 << doublings).min(max);
    let half = full / 2;
    half + (full - half).mul_f64(random.clamp(0.0, 1.0))
}

/// `at` plus `delay`, saturating (a configured delay of centuries must not panic).
pub fn after(at: DateTime<Utc>, delay: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(delay)
        .ok()
        .and_then(|d| at.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `at` minus `delay`, saturating.
pub fn before(at: DateTime<Utc>, delay: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(delay)
        .ok()
        .and_then(|d| at.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

const INFRA_FIRST_DELAY: Duration = Duration::from_millis(100);
const INFRA_MAX_DELAY: Duration = Duration::from_secs(5);

/// Runs `op` until it succeeds, logging each failure and waiting longer after each (100 ms up
/// to 5 s). Only dropping its task ends it: for work that must not be given up, such as
/// recording outcomes of messages the providers already took.
pub async fn until_ok<T, E, F, Fut>(what: &str, mut op: F) -> T
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut delay = INFRA_FIRST_DELAY;
    loop {
        match op().await {
            Ok(value) => return value,
            Err(error) => tracing::warn!(%error, retry_in = ?delay, "{what} failed"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(INFRA_MAX_DELAY);
    }
}

/// Like [`until_ok`], but gives up (`None`) once `stop` is cancelled; a try in progress then
/// still runs to its end.
pub async fn until_ok_or_stopped<T, E, F, Fut>(
    what: &str,
    stop: &CancellationToken,
    mut op: F,
) -> Option<T>
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut delay = INFRA_FIRST_DELAY;
    loop {
        match op().await {
            Ok(value) => return Some(value),
            Err(error) => tracing::warn!(%error, retry_in = ?delay, "{what} failed"),
        }
        tokio::select! {
            () = stop.cancelled() => return None,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(INFRA_MAX_DELAY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_secs(5);
    const MAX: Duration = Duration::from_secs(600);

    #[test]
    fn doubles_with_equal_jitter_and_caps() {
        assert_eq!(retry_delay(BASE, MAX, 1, 0.0), Duration::from_millis(2500));
        assert_eq!(retry_delay(BASE, MAX, 1, 1.0), BASE);
        assert_eq!(retry_delay(BASE, MAX, 3, 0.0), Duration::from_secs(10));
        assert_eq!(retry_delay(BASE, MAX, 3, 1.0), Duration::from_secs(20));
        let late = retry_delay(BASE, MAX, 30, 0.5);
        assert!(late >= MAX / 2 && late <= MAX, "{late:?}");
        assert_eq!(retry_delay(BASE, MAX, u32::MAX, 1.0), MAX);
        // the first attempt is number 1; 0 is treated alike
        assert_eq!(retry_delay(BASE, MAX, 0, 1.0), BASE);
    }

    #[tokio::test]
    async fn until_ok_retries_and_stops_when_asked() {
        let mut calls = 0;
        let value = until_ok("test", || {
            calls += 1;
            let ok = calls >= 3;
            async move { if ok { Ok(7) } else { Err("down") } }
        })
        .await;
        assert_eq!((value, calls), (7, 3));

        let stop = CancellationToken::new();
        stop.cancel();
        let value: Option<()> = until_ok_or_stopped("test", &stop, || async { Err("down") }).await;
        assert_eq!(value, None);
    }
}
