//! The token bucket's arithmetic in pure Rust, step for step as `lua/token_bucket.lua` does it.
//!
//! The script is the authority; this model predicts it. It lets `regulator status` show how
//! many tokens a bucket holds *now* without consuming one, and the property tests check the
//! script against it for random sequences of time, requests and knob changes.

use super::knobs::Knobs;

/// A bucket hash as stored: either field may be absent (a new or partly written bucket).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Bucket {
    /// `tokens` field.
    pub tokens: Option<f64>,
    /// `refreshed` field: the whole second the current window started at.
    pub refreshed: Option<f64>,
}

/// The script's verdict for one call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// Whether the request is allowed.
    pub allowed: bool,
    /// Tokens left after the call.
    pub tokens: f64,
    /// Seconds to the next window boundary (the retry hint).
    pub sleep: f64,
    /// `ceil(rps * burst * window)`; 0 for `rps == 0`, infinite for `rps == -1`.
    pub capacity: f64,
    /// The bucket as the script writes it back; `None` when it is not touched (`rps` 0 or -1).
    pub bucket: Option<Bucket>,
    /// The bucket's TTL in seconds as the script sets it.
    pub ttl: u64,
}

/// One call of the script: `knobs` are the effective ones (stored or defaults), `now` and
/// `usec` the Redis `TIME`.
#[must_use]
pub fn consume(bucket: Bucket, knobs: Knobs, now: i64, usec: u32, requested: f64) -> Outcome {
    let Knobs { rps, window, .. } = knobs;
    if rps == 0.0 {
        return untouched(false, 0.0, window, 0.0);
    }
    if rps == -1.0 {
        return untouched(true, 1.0, 0.0, f64::INFINITY);
    }
    let now = now as f64;
    let capacity = knobs.capacity();
    let (filled, refreshed) = refill(bucket, knobs, now);
    let allowed = filled >= requested;
    let tokens = if allowed {
        (filled - requested).max(0.0)
    } else {
        filled
    };
    let sleep = (window - (now - refreshed).max(0.0) - 1.0) + f64::from(1_000_000 - usec) / 1e6;
    Outcome {
        allowed,
        tokens,
        sleep,
        capacity,
        bucket: Some(Bucket {
            tokens: Some(tokens),
            refreshed: Some(refreshed),
        }),
        ttl: bucket_ttl(knobs),
    }
}

/// The TTL the script gives a bucket (seconds): long enough to outlast the next window
/// boundary and the `max(ceil(burst), 1)` windows after which an idle bucket is full again, so an
/// expired bucket comes back exactly as a refill would have left it.
#[must_use]
pub fn bucket_ttl(knobs: Knobs) -> u64 {
    let Knobs { burst, window, .. } = knobs;
    (burst * window * 2.0)
        .floor()
        .max(((burst.ceil().max(1.0) + 1.0) * window).ceil())
        .max(1.0) as u64
}

/// Tokens the bucket would hold at `now` (whole seconds) and the window anchor it would have,
/// without consuming anything.
#[must_use]
pub fn refill(bucket: Bucket, knobs: Knobs, now: f64) -> (f64, f64) {
    let Knobs { rps, window, .. } = knobs;
    let capacity = knobs.capacity();
    let tokens = bucket.tokens.unwrap_or(capacity);
    let last = bucket.refreshed.unwrap_or(0.0);
    let elapsed = ((now - last).max(0.0) / window).floor();
    let add = (elapsed * rps * window).ceil();
    let filled = capacity.min(tokens + add);
    let refreshed = if add > 0.0 {
        if last == 0.0 {
            now
        } else {
            last + elapsed * window
        }
    } else {
        last
    };
    (filled, refreshed)
}

/// The token leases `lua/token_bucket_lease.lua` records for one bucket (its `:leases` hash):
/// the window they were granted in, the last id given out, and each lease's reserved tokens.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeaseBook {
    /// The bucket's `refreshed` when the records were made.
    pub anchor: Option<f64>,
    /// The last lease id given out.
    pub next: u64,
    /// Lease id → tokens it reserved, for the leases not yet given back.
    pub leases: std::collections::BTreeMap<u64, f64>,
}

/// One call of the lease script: what goes back (of which lease), and what is asked for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeaseCall {
    /// Unspent tokens the caller says it gives back.
    pub returned: f64,
    /// The lease they came from: its anchor and id, as the script gave them.
    pub lease: Option<(f64, u64)>,
    /// The least a grant may hold (0: only give back).
    pub requested: f64,
    /// The batch the caller would like.
    pub wanted: f64,
    /// The largest share of the capacity one grant may take.
    pub share: f64,
}

/// What the lease script answers, and what it leaves.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseOutcome {
    /// Tokens granted (-1: unlimited).
    pub granted: f64,
    /// Tokens left in the bucket.
    pub tokens: f64,
    /// Seconds to the next window.
    pub sleep: f64,
    /// The bucket's capacity (infinite for rps -1).
    pub capacity: f64,
    /// Tokens the give-back restored.
    pub restored: f64,
    /// The new lease: its anchor and id.
    pub lease: Option<(f64, u64)>,
    /// The bucket after the call (`None`: untouched).
    pub bucket: Option<Bucket>,
    /// The records after the call.
    pub book: LeaseBook,
}

/// `lua/token_bucket_lease.lua` in pure Rust: the give-back restores at most what the lease
/// reserved, once, and only within the window it came from; then a grant, recorded.
#[must_use]
pub fn lease(
    bucket: Bucket,
    book: &LeaseBook,
    knobs: Knobs,
    (now, usec): (i64, u32),
    call: LeaseCall,
) -> LeaseOutcome {
    let Knobs { rps, window, .. } = knobs;
    let mut book = book.clone();
    if rps == 0.0 || rps == -1.0 {
        return LeaseOutcome {
            granted: if rps == 0.0 { 0.0 } else { -1.0 },
            tokens: if rps == 0.0 { 0.0 } else { 1.0 },
            sleep: if rps == 0.0 { window } else { 0.0 },
            capacity: if rps == 0.0 { 0.0 } else { f64::INFINITY },
            restored: 0.0,
            lease: None,
            bucket: None,
            book,
        };
    }
    let now_f = now as f64;
    let capacity = knobs.capacity();
    let (mut tokens, refreshed) = refill(bucket, knobs, now_f);
    let added = refreshed != bucket.refreshed.unwrap_or(0.0);
    let current = book.anchor == Some(refreshed);
    let mut restored = 0.0;
    if let Some((anchor, id)) = call.lease
        && current
        && anchor == refreshed
        && let Some(reserved) = book.leases.remove(&id)
        && call.returned > 0.0
        && bucket.tokens.is_some()
        && !added
    {
        restored = call.returned.min(reserved).min(capacity - tokens).max(0.0);
        tokens += restored;
    }
    let mut granted = 0.0;
    let mut new = None;
    if call.requested > 0.0 && tokens >= call.requested {
        let wanted = call.wanted.max(call.requested);
        granted = call
            .requested
            .max(wanted.min(tokens).min(call.share * capacity));
        tokens = (tokens - granted).max(0.0);
        book.next += 1;
        if !current {
            book.leases.clear();
        }
        book.anchor = Some(refreshed);
        book.leases.insert(book.next, granted);
        new = Some((refreshed, book.next));
    }
    LeaseOutcome {
        granted,
        tokens,
        sleep: (window - (now_f - refreshed).max(0.0) - 1.0) + f64::from(1_000_000 - usec) / 1e6,
        capacity,
        restored,
        lease: new,
        bucket: Some(Bucket {
            tokens: Some(tokens),
            refreshed: Some(refreshed),
        }),
        book,
    }
}

fn untouched(allowed: bool, tokens: f64, sleep: f64, capacity: f64) -> Outcome {
    Outcome {
        allowed,
        tokens,
        sleep,
        capacity,
        bucket: None,
        ttl: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000;

    fn k(rps: f64, burst: f64, window: f64) -> Knobs {
        Knobs { rps, burst, window }
    }

    #[test]
    fn new_bucket_starts_full_and_anchors_now() {
        let o = consume(Bucket::default(), k(5.0, 1.0, 5.0), T0, 0, 1.0);
        assert!(o.allowed);
        assert_eq!(o.tokens, 24.0);
        assert_eq!(o.bucket.unwrap().refreshed, Some(T0 as f64));
        assert!((o.sleep - 5.0).abs() < 1e-9);
    }

    #[test]
    fn refill_is_a_whole_window_at_a_time() {
        let b = Bucket {
            tokens: Some(0.0),
            refreshed: Some(T0 as f64),
        };
        let knobs = k(2.0, 1.0, 5.0);
        assert_eq!(refill(b, knobs, (T0 + 4) as f64), (0.0, T0 as f64));
        assert_eq!(refill(b, knobs, (T0 + 5) as f64), (10.0, (T0 + 5) as f64));
        assert_eq!(refill(b, knobs, (T0 + 12) as f64), (10.0, (T0 + 10) as f64));
    }

    #[test]
    fn over_capacity_is_denied_and_consumes_nothing() {
        let o = consume(Bucket::default(), k(1.0, 1.0, 1.0), T0, 0, 2.0);
        assert!(!o.allowed);
        assert_eq!(o.tokens, 1.0);
    }

    #[test]
    fn zero_and_minus_one_leave_the_bucket_alone() {
        let z = consume(Bucket::default(), k(0.0, 1.0, 5.0), T0, 0, 1.0);
        assert!(!z.allowed && z.bucket.is_none() && (z.sleep - 5.0).abs() < 1e-9);
        let m = consume(Bucket::default(), k(-1.0, 1.0, 5.0), T0, 0, 1e9);
        assert!(m.allowed && m.bucket.is_none() && m.sleep == 0.0);
    }

    #[test]
    fn ttl_outlasts_the_next_refill_and_a_full_recharge() {
        // limitlion's floor(2 * 0.1 * 1) = 0 would delete the bucket.
        assert_eq!(bucket_ttl(k(100.0, 0.1, 1.0)), 2);
        assert_eq!(bucket_ttl(k(5.0, 1.0, 5.0)), 10);
        assert_eq!(bucket_ttl(k(5.0, 3.3, 10.0)), 66);
        assert_eq!(bucket_ttl(k(5.0, 0.0, 0.5)), 1);
        assert_eq!(bucket_ttl(k(5.0, 0.0, 5.0)), 10);
        for b in [0.0, 0.1, 0.5, 1.0, 2.5, 10.0] {
            for w in [0.5, 1.0, 2.5, 5.0, 60.0] {
                let ttl = bucket_ttl(k(1.0, b, w)) as f64;
                assert!(ttl > w && ttl >= b.ceil() * w, "b={b} w={w} ttl={ttl}");
            }
        }
    }
}
