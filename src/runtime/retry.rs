//! Waiting out Postgres or Redis while they are unreachable: infrastructure errors never fail a
//! message or a webhook job, the work waits for them. And deadline arithmetic that saturates
//! instead of panicking on a configured delay of centuries.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

/// `at` plus `delay`, saturating.
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

const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(5);

/// Runs `op` until it succeeds, logging each failure and waiting longer after each (100 ms up
/// to 5 s). Only dropping its task ends it: for work that must not be given up, such as
/// recording outcomes of messages the providers already took.
pub async fn until_ok<T, E, F, Fut>(what: &str, op: F) -> T
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let never = CancellationToken::new();
    match until_ok_or_stopped(what, &never, op).await {
        Some(value) => value,
        None => unreachable!("a token nobody holds is never cancelled"),
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
    let mut delay = FIRST_DELAY;
    loop {
        match op().await {
            Ok(value) => return Some(value),
            Err(error) => tracing::warn!(%error, retry_in = ?delay, "{what} failed"),
        }
        tokio::select! {
            () = stop.cancelled() => return None,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(MAX_DELAY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn deadlines_saturate() {
        let now = Utc::now();
        assert_eq!(after(now, Duration::MAX), DateTime::<Utc>::MAX_UTC);
        assert_eq!(before(now, Duration::MAX), DateTime::<Utc>::MIN_UTC);
        assert_eq!(after(now, Duration::from_secs(1)) - now, chrono::Duration::seconds(1));
    }
}
