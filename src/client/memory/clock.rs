//! The clock: the CPU's time-stamp counter through `quanta`, turned into a bucket's ticks.

use super::gcra::{Gcra, scale};

/// A limiter's monotonic clock, in its ticks since it was made. It reads the CPU's time-stamp
/// counter through `quanta` as governor does (calibrated once per process against the OS
/// monotonic clock; that clock itself where the counter is not invariant), and turns the count
/// into ticks with one multiplication: a third of what `Instant::now` costs on a VM.
#[derive(Debug, Clone)]
pub(super) struct Clock {
    pub(super) source: quanta::Clock,
    pub(super) start: u64,
    /// Ticks per counter unit in fixed point (`FRAC` bits), or 0 when that does not fit in 64
    /// bits (a counter slower than 1 GHz under a fast bucket): the count then goes through
    /// nanoseconds.
    pub(super) per_raw: u64,
    pub(super) per_nano: u64,
}

impl Clock {
    pub(super) fn new(gcra: &Gcra) -> Self {
        // quanta scales its counter by a fixed ratio; read it off a long span.
        const SPAN: u64 = 1 << 50;
        let source = quanta::Clock::new();
        let nanos = source.delta_as_nanos(0, SPAN);
        let per_raw = (u128::from(gcra.per_nano) * u128::from(nanos)).div_ceil(u128::from(SPAN));
        Self {
            start: source.raw(),
            source,
            per_raw: u64::try_from(per_raw).unwrap_or(0),
            per_nano: gcra.per_nano,
        }
    }

    /// Ticks since the clock was made (0 while a core's counter lags the first reading).
    #[inline]
    pub(super) fn ticks(&self) -> u64 {
        let raw = self.source.raw().saturating_sub(self.start);
        if self.per_raw == 0 {
            scale(self.source.delta_as_nanos(0, raw), self.per_nano)
        } else {
            scale(raw, self.per_raw)
        }
    }
}

#[cfg(any(test, feature = "test-util"))]
pub(super) fn duration_nanos(now: std::time::Duration) -> u64 {
    u64::try_from(now.as_nanos()).unwrap_or(u64::MAX)
}
