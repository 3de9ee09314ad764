//! The control laws. Each proposes a new `rps` from the current one and the signal; the
//! [`Controller`](super::Controller) then applies what is common to all (deadband, bounds, max
//! step, cooldown).

use super::Observation;

/// The predictive law never predicts more than this many times the rate whose signal it saw.
pub const MAX_RISE: f64 = 1.5;

/// Parameters of [`predictive`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Predictive {
    /// Aim this share under the target.
    pub margin: f64,
    /// Share of the way to the predicted rate taken each tick.
    pub gain: f64,
    /// The signal at no load, as a share of the target.
    pub floor: f64,
}

/// The predictive law (the default).
///
/// `pressure` is the signal as a share of the target, oriented so that above 1 is overloaded;
/// `applied` is the mean `rps` that was in force while the signal was measured (the
/// controller keeps the history; a law that paired the signal with the *current* knob would
/// keep stepping on news that predates its last steps, and overshoot). It models the signal as
/// a queue's latency, `pressure = floor / (1 - rate / capacity)`: one observation gives the
/// capacity, `applied / (1 - floor / pressure)`, and the rate at which the signal sits at
/// `1 - margin` of the target, `applied · (1 - floor / aim) / (1 - floor / pressure)`.
///
/// Past the target the queue may be growing, which the steady-state model underrates, so the
/// prediction is also held under `applied / pressure`, and the law goes all the way to it
/// at once: an overload is cut in one tick. Under the target it moves `gain` of the way from
/// `rps` to the prediction (all of it by default: the pairing already makes raises cautious).
/// The prediction is never more than [`MAX_RISE`] times `applied`: under the floor the model
/// has no answer ("far from capacity"), and near it the answer is ill-conditioned.
#[must_use]
pub fn predictive(rps: f64, applied: f64, pressure: f64, p: Predictive) -> f64 {
    let aim = 1.0 - p.margin;
    // Never more than MAX_RISE times the rate whose effect was seen: under the floor the
    // model has no answer, and near it the prediction is ill-conditioned (a floor 25% too
    // high overstates the capacity by 40% at twice the floor).
    let most = applied * MAX_RISE;
    let queue = if pressure <= p.floor {
        most
    } else {
        (applied * (1.0 - p.floor / aim) / (1.0 - p.floor / pressure)).min(most)
    };
    if pressure > 1.0 {
        queue.min(applied / pressure)
    } else {
        rps + p.gain * (queue - rps)
    }
}

/// AIMD: add `increase` while there is headroom, multiply by `decrease` while overloaded.
#[must_use]
pub fn aimd(rps: f64, obs: &Observation, increase: f64, decrease: f64) -> f64 {
    if obs.headroom > 0.0 {
        rps + increase
    } else if obs.headroom < 0.0 {
        rps * decrease
    } else {
        rps
    }
}

/// PID state: the integral of the error and the last measurement (for the derivative).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PidState {
    /// ∫ error dt, kept so that `ki · integral` stays within `[-limit, limit]`.
    pub integral: f64,
    /// The previous normalized measurement, for the derivative on measurement.
    pub last: Option<f64>,
}

/// PID on the relative headroom; the output is a relative change of `rps`, clamped to
/// `±limit`. Anti-windup: the integral is clamped so its term alone cannot exceed the output
/// limit, and it does not grow while the output is saturated in the same direction. The
/// derivative acts on the measurement, not the error, so a changed target does not kick.
#[must_use]
pub fn pid(
    rps: f64,
    obs: &Observation,
    state: &mut PidState,
    (kp, ki, kd): (f64, f64, f64),
    limit: f64,
) -> f64 {
    let e = obs.headroom;
    let dt = obs.dt.max(1e-3);
    let measurement = -obs.headroom;
    let derivative = state.last.map_or(0.0, |last| -(measurement - last) / dt);
    state.last = Some(measurement);

    let candidate = state.integral + e * dt;
    let unsaturated = kp * e + ki * candidate + kd * derivative;
    let saturated_same_way = unsaturated.abs() > limit && unsaturated.signum() == e.signum();
    if !saturated_same_way {
        state.integral = candidate;
    }
    if ki > 0.0 {
        let bound = limit / ki;
        state.integral = state.integral.max(-bound).min(bound);
    } else {
        // Unused without an integral gain; kept at 0 so it cannot grow to infinity.
        state.integral = 0.0;
    }
    let u = (kp * e + ki * state.integral + kd * derivative)
        .max(-limit)
        .min(limit);
    rps * (1.0 + u)
}

/// Gradient (as Netflix's Gradient2 and Envoy's adaptive concurrency): scale by how far the
/// signal is from the target, clamped, plus a little headroom to keep probing upward; then
/// smooth. `ratio` is `target / signal` oriented so that above 1 means healthy.
#[must_use]
pub fn gradient(
    rps: f64,
    obs: &Observation,
    (min_gradient, max_gradient): (f64, f64),
    headroom: f64,
    smoothing: f64,
) -> f64 {
    let g = if obs.ratio.is_finite() {
        obs.ratio.max(min_gradient).min(max_gradient)
    } else {
        max_gradient
    };
    let proposed = rps * g + headroom;
    (1.0 - smoothing) * rps + smoothing * proposed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(headroom: f64) -> Observation {
        Observation {
            headroom,
            ratio: 1.0 + headroom,
            dt: 10.0,
        }
    }

    const P: Predictive = Predictive {
        margin: 0.15,
        gain: 1.0,
        floor: 0.2,
    };

    #[test]
    fn predictive_inverts_the_queue_model() {
        // A queue with floor 0.2 and capacity 100: pressure 0.2 / (1 - r / 100).
        let pressure = |r: f64| 0.2 / (1.0 - r / 100.0);
        let aim_rate = 100.0 * (1.0 - 0.2 / 0.85);
        for r in [55.0, 70.0, 78.0] {
            let next = predictive(r, r, pressure(r), P);
            assert!((next - aim_rate).abs() < 1e-9, "from {r}: {next}");
        }
        // Further away, no more than MAX_RISE times the rate seen.
        assert_eq!(predictive(10.0, 10.0, pressure(10.0), P), 10.0 * MAX_RISE);
        // Past the target it is held under applied / pressure.
        assert!((predictive(90.0, 90.0, 4.0, P) - 22.5).abs() < 1e-9);
        // At the floor, or far under the aim: at most MAX_RISE times the rate seen.
        assert_eq!(predictive(10.0, 10.0, 0.1, P), 10.0 * MAX_RISE);
        assert_eq!(predictive(10.0, 10.0, 0.21, P), 10.0 * MAX_RISE);
    }

    #[test]
    fn predictive_pairs_the_signal_with_the_rate_that_caused_it() {
        // The knob was already cut from 100 but the signal still shows 100's effect: the
        // prediction is the same as on the tick that cut, so it does not cut again.
        let first = predictive(100.0, 100.0, 2.0, P);
        assert!((first - 50.0).abs() < 1e-9);
        let again = predictive(first, 100.0, 2.0, P);
        assert!((again - first).abs() < 1e-9);
        // Under the target, with half the gain, it closes half the distance.
        let full = predictive(40.0, 40.0, 0.5, P);
        let half = predictive(40.0, 40.0, 0.5, Predictive { gain: 0.5, ..P });
        assert!(full > 40.0 && (half - f64::midpoint(40.0, full)).abs() < 1e-9);
    }

    #[test]
    fn aimd_adds_and_multiplies() {
        assert_eq!(aimd(100.0, &obs(0.5), 10.0, 0.7), 110.0);
        assert_eq!(aimd(100.0, &obs(-0.5), 10.0, 0.7), 70.0);
        assert_eq!(aimd(100.0, &obs(0.0), 10.0, 0.7), 100.0);
    }

    /// With `ki: 0` a huge finite error used to pile the integral up to -inf, after which
    /// every output was NaN-clamped.
    #[test]
    fn pid_without_integral_gain_stays_finite_under_huge_errors() {
        let mut s = PidState::default();
        for _ in 0..10 {
            let out = pid(100.0, &obs(-1e307), &mut s, (0.5, 0.0, 0.0), 0.5);
            assert!(out.is_finite(), "{out}");
        }
        assert!(s.integral.is_finite(), "{}", s.integral);
        let out = pid(100.0, &obs(0.2), &mut s, (0.5, 0.0, 0.0), 0.5);
        assert!((out - 110.0).abs() < 1e-9, "back to normal: {out}");
    }

    #[test]
    fn pid_pushes_with_the_error_and_its_integral_is_bounded() {
        let mut s = PidState::default();
        let up = pid(100.0, &obs(0.2), &mut s, (0.5, 0.05, 0.0), 0.5);
        assert!(up > 100.0);
        let mut s = PidState::default();
        let down = pid(100.0, &obs(-0.2), &mut s, (0.5, 0.05, 0.0), 0.5);
        assert!(down < 100.0);
        // A long overload cannot wind the integral past what the output can use.
        let mut s = PidState::default();
        for _ in 0..10_000 {
            let _ = pid(100.0, &obs(-5.0), &mut s, (0.5, 0.05, 0.0), 0.5);
        }
        assert!(s.integral * 0.05 >= -0.5 - 1e-9, "{}", s.integral);
        // And so it recovers promptly once healthy.
        let mut ticks = 0;
        while pid(100.0, &obs(0.3), &mut s, (0.5, 0.05, 0.0), 0.5) <= 100.0 {
            ticks += 1;
            assert!(ticks < 50, "integral wound up");
        }
    }

    #[test]
    fn pid_output_is_clamped() {
        let mut s = PidState::default();
        assert_eq!(
            pid(100.0, &obs(100.0), &mut s, (10.0, 0.0, 0.0), 0.5),
            150.0
        );
    }

    #[test]
    fn gradient_scales_by_the_ratio_within_its_clamp() {
        let o = Observation {
            headroom: -1.0,
            ratio: 0.25,
            dt: 10.0,
        };
        assert_eq!(gradient(100.0, &o, (0.5, 1.2), 0.0, 1.0), 50.0);
        assert_eq!(gradient(100.0, &o, (0.5, 1.2), 0.0, 0.5), 75.0);
        let o = Observation {
            headroom: 1.0,
            ratio: f64::INFINITY,
            dt: 10.0,
        };
        assert_eq!(gradient(100.0, &o, (0.5, 1.2), 2.0, 1.0), 122.0);
    }
}
