//! Client-side token buckets mirroring EC2's request throttling: calls wait
//! for a token here instead of being refused by EC2 with
//! `RequestLimitExceeded`, which would cost a round trip and a backoff in the
//! middle of a failover. One budget per process, shared by every caller.

use std::str::FromStr;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// A bucket's shape: it holds at most `burst` tokens and refills at `rate`
/// tokens per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketSize {
    pub burst: u32,
    pub rate: f64,
}

// Sound: parsing admits only finite rates.
impl Eq for BucketSize {}

impl FromStr for BucketSize {
    type Err = String;

    /// `BURST/RATE`, e.g. `50/5`.
    fn from_str(text: &str) -> Result<Self, String> {
        let (burst, rate) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?}: expected BURST/RATE, e.g. 50/5"))?;
        let burst: u32 = burst
            .trim()
            .parse()
            .map_err(|_| format!("{text:?}: the burst must be a whole number"))?;
        let rate: f64 = rate
            .trim()
            .parse()
            .map_err(|_| format!("{text:?}: the rate must be a number of calls per second"))?;
        if burst == 0 || !(rate.is_finite() && rate > 0.0) {
            return Err(format!("{text:?}: burst and rate must be above 0"));
        }
        Ok(Self { burst, rate })
    }
}

impl std::fmt::Display for BucketSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.burst, self.rate)
    }
}

/// EC2's own buckets for an account (documented defaults): mutating calls
/// burst 50 at 5/s, describe calls burst 100 at 20/s.
pub const EC2_MUTATING: BucketSize = BucketSize {
    burst: 50,
    rate: 5.0,
};
pub const EC2_DESCRIBE: BucketSize = BucketSize {
    burst: 100,
    rate: 20.0,
};

pub struct TokenBucket {
    size: BucketSize,
    /// Tokens at `at`. Callers queue on the lock, so waiting is first come,
    /// first served.
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    pub fn new(size: BucketSize) -> Self {
        Self {
            size,
            state: Mutex::new((size.burst as f64, Instant::now())),
        }
    }

    /// Wait for one token and take it.
    pub async fn take(&self) {
        let mut state = self.state.lock().await;
        let mut tokens = self.refilled(&state, Instant::now());
        if tokens < 1.0 {
            let wait = Duration::from_secs_f64((1.0 - tokens) / self.size.rate);
            tokio::time::sleep(wait).await;
            tokens = 1.0;
        }
        *state = (tokens - 1.0, Instant::now());
    }

    pub fn size(&self) -> BucketSize {
        self.size
    }

    /// Tokens available now.
    pub async fn level(&self) -> f64 {
        let state = self.state.lock().await;
        self.refilled(&state, Instant::now())
    }

    fn refilled(&self, &(tokens, at): &(f64, Instant), now: Instant) -> f64 {
        let earned = now.saturating_duration_since(at).as_secs_f64() * self.size.rate;
        (tokens + earned).min(self.size.burst as f64)
    }
}

/// The process-wide EC2 call budget, one bucket per call class.
pub struct Budget {
    pub mutating: TokenBucket,
    pub describe: TokenBucket,
}

impl Budget {
    pub fn new(mutating: BucketSize, describe: BucketSize) -> Self {
        Self {
            mutating: TokenBucket::new(mutating),
            describe: TokenBucket::new(describe),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_from_burst_slash_rate() {
        assert_eq!(
            "50/5".parse::<BucketSize>(),
            Ok(BucketSize {
                burst: 50,
                rate: 5.0
            })
        );
        assert_eq!("2/0.5".parse::<BucketSize>().unwrap().rate, 0.5);
        for bad in ["50", "0/5", "5/0", "x/1", "1/x", "5/-1", "5/inf"] {
            assert!(bad.parse::<BucketSize>().is_err(), "{bad}");
        }
    }

    // Real time, with rates chosen so that a wrong bucket is off by
    // seconds, not milliseconds (the bounds hold on a loaded machine).
    #[tokio::test]
    async fn a_burst_passes_at_once() {
        let bucket = TokenBucket::new("3/0.1".parse().unwrap());
        let start = Instant::now();
        for _ in 0..3 {
            bucket.take().await;
        }
        // A token more would have taken 10 s.
        assert!(start.elapsed() < Duration::from_secs(5));
        let fourth = tokio::time::timeout(Duration::from_millis(200), bucket.take()).await;
        assert!(fourth.is_err(), "the burst is spent");
    }

    #[tokio::test]
    async fn past_the_burst_calls_wait_for_the_rate() {
        let bucket = TokenBucket::new("1/20".parse().unwrap());
        bucket.take().await;
        let start = Instant::now();
        for _ in 0..4 {
            bucket.take().await;
        }
        // Four more tokens at 20/s.
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(195), "{waited:?}");
        assert!(waited < Duration::from_secs(10), "{waited:?}");
        assert!(bucket.level().await < 1.0);
    }

    #[tokio::test]
    async fn refill_stops_at_the_burst() {
        let bucket = TokenBucket::new("3/100".parse().unwrap());
        for _ in 0..3 {
            bucket.take().await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(bucket.level().await, 3.0);
    }
}
