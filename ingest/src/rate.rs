//! A token bucket per user: `rate` sends a second, bursts up to `burst`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets kept before refilled ones are swept out.
const SWEEP_ABOVE: usize = 100_000;
/// At most one sweep this often, so that more active users than
/// `SWEEP_ABOVE` do not make every check a scan.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<Buckets>,
}

#[derive(Default)]
struct Buckets {
    by_key: HashMap<String, (f64, Instant)>,
    last_sweep: Option<Instant>,
}

impl RateLimiter {
    pub fn new(rate: f64, burst: f64) -> Self {
        RateLimiter {
            rate,
            burst,
            buckets: Mutex::default(),
        }
    }

    /// Takes a token, or says in how many seconds one is back.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        let now = Instant::now();
        let due = buckets
            .last_sweep
            .is_none_or(|t| now.duration_since(t) >= SWEEP_EVERY);
        if buckets.by_key.len() > SWEEP_ABOVE && due {
            // Forget users whose bucket has refilled: they are at burst anyway.
            let (rate, burst) = (self.rate, self.burst);
            buckets.by_key.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
            buckets.last_sweep = Some(now);
        }
        let (tokens, at) = buckets
            .by_key
            .entry(key.to_owned())
            .or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_burst_then_limits() {
        let r = RateLimiter::new(1.0, 3.0);
        assert!(r.check("a").is_ok() && r.check("a").is_ok() && r.check("a").is_ok());
        assert_eq!(r.check("a"), Err(1));
        assert!(r.check("b").is_ok(), "buckets are per user");
    }
}

/// One typing signal per user and conversation per this long; clients show
/// "typing" for `TYPING_SHOWN` (frames) after a signal.
pub const TYPING_EVERY: Duration = Duration::from_secs(3);
const TYPING_KEYS: usize = 100_000;

/// When each (user, conversation) last sent a typing signal.
#[derive(Default)]
pub struct TypingThrottle {
    last: Mutex<HashMap<(String, String), Instant>>,
}

impl TypingThrottle {
    /// True when this signal should go out.
    pub fn admit(&self, user_id: &str, conversation_id: &str) -> bool {
        let Ok(mut last) = self.last.lock() else {
            return false;
        };
        let now = Instant::now();
        if last.len() > TYPING_KEYS {
            last.retain(|_, at| now.duration_since(*at) < TYPING_EVERY);
        }
        let key = (user_id.to_owned(), conversation_id.to_owned());
        match last.get(&key) {
            Some(at) if now.duration_since(*at) < TYPING_EVERY => false,
            _ => {
                last.insert(key, now);
                true
            }
        }
    }
}
