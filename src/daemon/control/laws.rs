//! The three control laws. Each proposes a new `rps` from the current one and the signal;
//! `limits` then applies what is common to all (deadband, bounds, max step, cooldown).

use super::Observation;

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

    #[test]
    fn aimd_adds_and_multiplies() {
        assert_eq!(aimd(100.0, &obs(0.5), 10.0, 0.7), 110.0);
        assert_eq!(aimd(100.0, &obs(-0.5), 10.0, 0.7), 70.0);
        assert_eq!(aimd(100.0, &obs(0.0), 10.0, 0.7), 100.0);
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
