//! The arithmetic: one bucket's constants in ticks, and the GCRA step on its one number.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::{MAX_RATE, MAX_REFILL, invalid};
use crate::client::decision::{Decision, Source};
use crate::client::error::Result;

/// Bits after the point in the ticks-per-nanosecond factor.
pub(super) const FRAC: i32 = 62;
/// Finest tick: 2^-32 token.
pub(super) const MAX_SHIFT: i32 = 32;

/// One bucket's constants: capacity and clock in ticks.
#[derive(Debug, Clone, Copy)]
pub(super) struct Gcra {
    pub(super) rate: f64,
    pub(super) capacity: f64,
    /// Ticks per token, `2^k`, as a float and as an integer.
    pub(super) per_token: f64,
    pub(super) one: u64,
    /// The capacity in ticks, and as a float for the request's test.
    pub(super) tau: u64,
    pub(super) tau_f: f64,
    /// Ticks per nanosecond in fixed point (`FRAC` bits), rounded up.
    pub(super) per_nano: u64,
}

impl Gcra {
    pub(super) fn new(rate: f64, capacity: f64) -> Result<Self> {
        if !(rate > 0.0 && rate <= MAX_RATE) {
            return Err(invalid(format!(
                "rate must be a number of tokens per second above 0 and at most {MAX_RATE}; got {rate}"
            )));
        }
        if !(capacity >= 1.0 && capacity.is_finite()) {
            return Err(invalid(format!(
                "capacity must be a finite number of tokens of at least 1; got {capacity}"
            )));
        }
        let refill = capacity / rate;
        if refill > MAX_REFILL.as_secs_f64() {
            return Err(invalid(format!(
                "capacity / rate (the time an empty bucket takes to refill) must be at most \
                 {}s; got {refill}s",
                MAX_REFILL.as_secs()
            )));
        }
        // The most ticks per token such that ticks per second stay within 2^31: the clock
        // reaches 2^63 ticks after 136 years and the capacity stays within 2^62 ticks.
        let mut shift = MAX_SHIFT;
        while shift > 0 && rate * 2f64.powi(shift) > MAX_RATE {
            shift -= 1;
        }
        let per_token = 2f64.powi(shift);
        let tau_f = (capacity * per_token).floor();
        Ok(Self {
            rate,
            capacity,
            per_token,
            one: per_token as u64,
            tau: tau_f as u64,
            tau_f,
            per_nano: ticks_per_nano(rate, shift),
        })
    }

    /// The tick clock at `nanos` nanoseconds after the epoch.
    #[cfg(any(test, feature = "test-util"))]
    pub(super) fn ticks(&self, nanos: u64) -> u64 {
        scale(nanos, self.per_nano)
    }

    /// The shortest time in which the clock advances by `ticks`.
    pub(super) fn duration(&self, ticks: u64) -> Duration {
        let nanos = (u128::from(ticks) << FRAC).div_ceil(u128::from(self.per_nano));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// `tokens` in ticks, rounded up; `None` when more than the capacity (never allowed).
    #[inline]
    pub(super) fn cost(&self, tokens: f64) -> Result<Option<u64>> {
        // The usual request; the capacity is at least one token.
        if tokens == 1.0 {
            return Ok(Some(self.one));
        }
        let ticks = tokens * self.per_token;
        // One test admits every valid request within the capacity: NaN and ≤ 0 fail it, and
        // the capacity is a whole number of ticks, so `ticks` fits iff its ceiling does.
        if tokens > 0.0 && ticks <= self.tau_f {
            // Within 2^62: the signed conversions are single instructions.
            let whole = ticks as i64;
            return Ok(Some((whole + i64::from((whole as f64) < ticks)) as u64));
        }
        Self::cost_beyond(tokens)
    }

    #[cold]
    pub(super) fn cost_beyond(tokens: f64) -> Result<Option<u64>> {
        if tokens > 0.0 && tokens.is_finite() {
            Ok(None)
        } else {
            Err(invalid(format!(
                "tokens must be a finite number above 0; got {tokens}"
            )))
        }
    }

    /// One request of `cost` ticks at `now` on a bucket full at `tat`: `Ok(new tat)` when
    /// allowed, `Err(ticks to wait)` when not.
    #[inline]
    pub(super) fn step(&self, tat: u64, now: u64, cost: u64) -> Result<u64, u64> {
        let next = tat.max(now) + cost;
        let used = next - now;
        if used <= self.tau {
            Ok(next)
        } else {
            Err(used - self.tau)
        }
    }

    /// Tokens a bucket full at `tat` holds at `now`.
    pub(super) fn left(&self, tat: u64, now: u64) -> f64 {
        self.tau.saturating_sub(tat.saturating_sub(now)) as f64 / self.per_token
    }

    /// Applies one request to the bucket in `cell`: `Ok(new tat)` or `Err(tat as seen)`.
    #[inline]
    pub(super) fn take(&self, cell: &AtomicU64, now: u64, cost: u64) -> Result<u64, u64> {
        // Relaxed suffices: the cell publishes nothing but itself, and every read-modify-write
        // of one atomic sees its latest value in the modification order.
        let mut tat = cell.load(Relaxed);
        loop {
            let next = self.step(tat, now, cost).map_err(|_| tat)?;
            match cell.compare_exchange_weak(tat, next, Relaxed, Relaxed) {
                Ok(_) => return Ok(next),
                Err(seen) => tat = seen,
            }
        }
    }

    /// The decision for a request of `cost` ticks (`None`: above capacity) at `now`, given
    /// what [`take`](Self::take) returned (or the bucket as it is, when above capacity).
    pub(super) fn decision(
        &self,
        now: u64,
        cost: Option<u64>,
        outcome: Result<u64, u64>,
    ) -> Decision {
        let (allowed, tokens, sleep) = match (cost, outcome) {
            (_, Ok(tat)) => (true, self.left(tat, now), Duration::ZERO),
            (Some(cost), Err(tat)) => {
                let wait = self.step(tat, now, cost).err().unwrap_or(0);
                (false, self.left(tat, now), self.duration(wait))
            }
            (None, Err(tat)) => (false, self.left(tat, now), Duration::MAX),
        };
        Decision {
            allowed,
            tokens,
            sleep,
            source: Source::Local,
            capacity: self.capacity,
        }
    }
}

/// `ceil(rate · 2^shift · 2^FRAC / 10^9)` computed exactly from `rate`'s mantissa and exponent,
/// so that the tick clock never runs slow.
pub(super) fn ticks_per_nano(rate: f64, shift: i32) -> u64 {
    const MANTISSA: u64 = (1 << 52) - 1;
    let bits = rate.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let (mantissa, exponent) = if biased == 0 {
        (bits & MANTISSA, -1074)
    } else {
        ((bits & MANTISSA) | (1 << 52), biased - 1075)
    };
    let up = exponent + shift + FRAC;
    let billion = 1_000_000_000_u128;
    let factor = if up >= 0 {
        (u128::from(mantissa) << up).div_ceil(billion)
    } else {
        // Unreachable for a valid rate and capacity (the factor is above 2^63 then); kept
        // total so a change of bounds cannot make it panic.
        billion
            .checked_shl(up.unsigned_abs())
            .map_or(1, |d| u128::from(mantissa).div_ceil(d))
    };
    u64::try_from(factor).unwrap_or(u64::MAX).max(1)
}

/// `x · factor / 2^FRAC`, rounded down.
#[inline]
pub(super) fn scale(x: u64, factor: u64) -> u64 {
    ((u128::from(x) * u128::from(factor)) >> FRAC) as u64
}
