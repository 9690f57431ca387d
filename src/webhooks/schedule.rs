//! When a webhook job's next attempt is due: `webhooks.retry_schedule` holds the delay before
//! each attempt (the first one's included), each varied by +-20% so that the retries of events
//! that failed together (an endpoint down) do not all come back at the same instant. A
//! receiver's `Retry-After` is honoured, but only within [delay, 2 x delay]: it can slow the
//! schedule down, never speed it up or stall it.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// How much a delay varies either way.
const JITTER: f64 = 0.2;

/// The delay before attempt number `index` (0-based), with `jitter` in [-1, 1] scaling the
/// variation; `None` past the end of the schedule.
pub fn delay(schedule: &[Duration], index: usize, jitter: f64) -> Option<Duration> {
    let base = schedule.get(index)?;
    Some(base.mul_f64(1.0 + JITTER * jitter.clamp(-1.0, 1.0)))
}

/// The delay before the next attempt once `tries` attempts have failed, honouring the
/// receiver's `retry_after` within [delay, 2 x delay]; `None` when the schedule is exhausted.
pub fn next_delay(
    schedule: &[Duration],
    tries: usize,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Option<Duration> {
    let base = delay(schedule, tries, jitter)?;
    Some(match retry_after {
        Some(asked) => asked.clamp(base, base * 2),
        None => base,
    })
}

/// A uniformly random jitter in [-1, 1].
pub fn random_jitter() -> f64 {
    fastrand::f64() * 2.0 - 1.0
}

/// A `Retry-After` value: delay-seconds or an HTTP-date (RFC 9110, 10.2.3), as a delay from
/// `now`; `None` when it is neither.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_schedule_gives_one_delay_per_attempt_within_twenty_percent() {
        let schedule = [ms(0), ms(1000), ms(5000)];
        assert_eq!(next_delay(&schedule, 1, None, 0.0), Some(ms(1000)));
        assert_eq!(next_delay(&schedule, 1, None, 1.0), Some(ms(1200)));
        assert_eq!(next_delay(&schedule, 2, None, -1.0), Some(ms(4000)));
        assert_eq!(next_delay(&schedule, 3, None, 0.0), None, "three attempts in all");
        for _ in 0..1000 {
            let d = next_delay(&schedule, 1, None, random_jitter()).unwrap();
            assert!((ms(800)..=ms(1200)).contains(&d), "{d:?}");
        }
    }

    #[test]
    fn retry_after_is_honoured_between_the_delay_and_twice_it() {
        let schedule = [ms(0), ms(1000)];
        assert_eq!(next_delay(&schedule, 1, Some(ms(1500)), 0.0), Some(ms(1500)));
        assert_eq!(next_delay(&schedule, 1, Some(ms(10)), 0.0), Some(ms(1000)));
        assert_eq!(next_delay(&schedule, 1, Some(ms(60_000)), 0.0), Some(ms(2000)));
        assert_eq!(next_delay(&schedule, 2, Some(ms(10)), 0.0), None);
    }

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let now = DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z").unwrap().to_utc();
        assert_eq!(parse_retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Fri, 27 Nov 2026 10:01:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(parse_retry_after("Fri, 27 Nov 2026 09:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
