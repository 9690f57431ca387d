//! A message's next attempt after a provider failure: exponential with jitter, from the
//! `delivery.retry_*` settings. (Retries of Postgres or Redis themselves are
//! `crate::runtime::retry`'s.)

use std::time::Duration;

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
}
