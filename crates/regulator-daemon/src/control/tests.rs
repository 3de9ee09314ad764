use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::config::{Bounds, KnobValues, Signal};

fn policy(control: Control) -> Throttle {
    Throttle {
        name: "t".into(),
        knob: crate::config::Knob::Rate,
        defaults: KnobValues {
            rps: 100.0,
            burst: 2.0,
            window: 5.0,
        },
        bounds: Bounds {
            min_rps: 10.0,
            max_rps: 1000.0,
            min_burst: Some(0.5),
            max_burst: None,
            min_window: Some(1.0),
            max_window: None,
        },
        signal: Signal {
            query: "q".into(),
            target: 0.25,
            direction: Direction::HigherIsWorse,
            name_label: None,
            throughput: None,
        },
        control,
        on_no_data: OnNoData::Hold,
        interval: None,
        max_step: Some(0.5),
        cooldown: Duration::from_secs(30),
        deadband: 0.05,
        max_throttles: None,
        limitlion: true,
    }
}

const PREDICTIVE: Control = Control::Predictive {
    margin: 0.1,
    gain: 0.5,
    floor: None,
    lag: None,
};
const AIMD: Control = Control::Aimd {
    increase: Some(10.0),
    decrease: 0.7,
};
const PID: Control = Control::Pid {
    kp: 0.5,
    ki: 0.05,
    kd: 0.1,
};
const GRADIENT: Control = Control::Gradient {
    min_gradient: 0.5,
    max_gradient: 1.2,
    headroom: 1.0,
    smoothing: 0.5,
};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn overload_lowers_rps_and_shrinks_burst() {
    let mut c = Controller::new(&policy(AIMD), secs(10));
    let start = c.initial();
    let s = c.tick(start, 0.5, secs(10));
    assert_eq!(s.change, Change::Down);
    assert_eq!(s.knobs.rps, 70.0);
    assert_eq!(s.knobs.burst, 1.0, "burst halves toward min_burst");
    assert_eq!(s.reason, "overloaded");
}

#[test]
fn headroom_raises_rps_and_restores_burst_after_the_cooldown() {
    let mut c = Controller::new(&policy(AIMD), secs(10));
    let down = c.tick(c.initial(), 0.5, secs(10)).knobs;
    let held = c.tick(down, 0.1, secs(20));
    assert_eq!((held.change, held.reason), (Change::Hold, "cooldown"));
    let up = c.tick(held.knobs, 0.1, secs(41));
    assert_eq!(up.change, Change::Up);
    assert_eq!(up.knobs.rps, 80.0);
    assert_eq!(up.knobs.burst, 1.0 * (1.0 + SHAPE_RECOVERY));
}

#[test]
fn a_stored_unlimited_rps_continues_from_the_ceiling_without_panicking() {
    // Regression: -1 ("allow all", set by hand) made the max_step window inverted and
    // f64::clamp panic, killing the policy's task.
    for law in [PREDICTIVE, AIMD, PID, GRADIENT] {
        let mut c = Controller::new(&policy(law), secs(10));
        let unlimited = Knobs {
            rps: -1.0,
            ..c.initial()
        };
        let s = c.tick(unlimited, 0.5, secs(10));
        assert!(
            s.knobs.rps < 1000.0 && s.knobs.rps >= 500.0,
            "{law:?}: {s:?}"
        );
        let s = c.tick(unlimited, 0.1, secs(20));
        assert_eq!(s.knobs.rps, 1000.0, "{law:?}");
        assert_eq!(c.no_data(unlimited).knobs.rps, 1000.0, "hold: the ceiling");
    }
}

#[test]
fn a_throttle_at_zero_can_rise_again() {
    let mut p = policy(AIMD);
    p.bounds.min_rps = 0.0;
    p.cooldown = Duration::ZERO;
    let mut c = Controller::new(&p, secs(10));
    let zero = Knobs {
        rps: 0.0,
        ..c.initial()
    };
    let s = c.tick(zero, 0.1, secs(10));
    assert_eq!(s.change, Change::Up, "{s:?}");
    assert!(s.knobs.rps > 0.0);
}

#[test]
fn deadband_holds() {
    let mut c = Controller::new(&policy(AIMD), secs(10));
    let s = c.tick(c.initial(), 0.26, secs(10));
    assert_eq!((s.change, s.reason), (Change::Hold, "within deadband"));
}

#[test]
fn max_rps_is_never_passed() {
    let mut c = Controller::new(&policy(GRADIENT), secs(10));
    let mut k = c.initial();
    for t in 1..200 {
        k = c.tick(k, 0.01, secs(t * 10)).knobs;
        assert!(k.rps <= 1000.0);
    }
    assert_eq!(k.rps, 1000.0);
}

#[test]
fn lower_is_worse_inverts_the_sense() {
    let mut p = policy(AIMD);
    p.signal.direction = Direction::LowerIsWorse;
    p.signal.target = 10.0;
    let mut c = Controller::new(&p, secs(10));
    assert_eq!(c.tick(c.initial(), 2.0, secs(10)).change, Change::Down);
    let mut c = Controller::new(&p, secs(10));
    assert_eq!(c.tick(c.initial(), 50.0, secs(10)).change, Change::Up);
}

#[test]
fn no_data_follows_the_policy() {
    let current = Knobs {
        rps: 300.0,
        burst: 2.0,
        window: 5.0,
    };
    for (mode, rps) in [
        (OnNoData::Hold, 300.0),
        (OnNoData::Defaults, 100.0),
        (OnNoData::Min, 10.0),
    ] {
        let mut p = policy(AIMD);
        p.on_no_data = mode;
        let s = Controller::new(&p, secs(10)).no_data(current);
        assert_eq!(s.knobs.rps, rps, "{mode:?}");
    }
}

#[test]
fn knobs_outside_the_bounds_are_brought_inside() {
    let mut c = Controller::new(&policy(AIMD), secs(10));
    let wild = Knobs {
        rps: 5000.0,
        burst: 9.0,
        window: 60.0,
    };
    let s = c.tick(wild, 0.25, secs(10));
    assert_eq!(
        s.knobs,
        Knobs {
            rps: 1000.0,
            burst: 2.0,
            window: 5.0
        }
    );
}

fn laws() -> impl Strategy<Value = Control> {
    prop_oneof![
        (
            0.0f64..0.45,
            0.05f64..1.0,
            prop::option::of(0.01f64..0.5),
            prop::option::of(0u64..120)
        )
            .prop_map(|(margin, gain, floor, lag)| Control::Predictive {
                margin,
                gain,
                floor,
                lag: lag.map(secs),
            }),
        (0.1f64..100.0, 0.05f64..0.95).prop_map(|(i, d)| Control::Aimd {
            increase: Some(i),
            decrease: d
        }),
        (0.0f64..5.0, 0.0f64..1.0, 0.0f64..5.0).prop_map(|(kp, ki, kd)| Control::Pid {
            kp: kp + 0.01,
            ki,
            kd
        }),
        (0.1f64..1.0, 1.0f64..3.0, 0.0f64..10.0, 0.05f64..1.0).prop_map(|(lo, hi, h, s)| {
            Control::Gradient {
                min_gradient: lo,
                max_gradient: hi,
                headroom: h,
                smoothing: s,
            }
        }),
    ]
}

proptest! {
    /// Whatever the law, the signal sequence and the timing: the knobs are finite and inside
    /// their bounds (window too, capacity at least one token); rps never rises while the
    /// signal is above target + deadband and never falls while below the aim - deadband (the
    /// target, or for the predictive law up to half under it); a tick moves rps by at most
    /// max_step.
    #[test]
    fn knobs_stay_finite_bounded_and_move_the_right_way(
        law in laws(),
        direction in prop_oneof![Just(Direction::HigherIsWorse), Just(Direction::LowerIsWorse)],
        max_step in 0.05f64..1.0,
        deadband in 0.0f64..0.5,
        signals in prop::collection::vec((0.0f64..10.0, 1u64..120), 1..60),
    ) {
        let mut p = policy(law);
        p.signal.direction = direction;
        p.signal.target = 1.0;
        p.max_step = Some(max_step);
        p.deadband = deadband;
        let mut c = Controller::new(&p, secs(10));
        let mut k = c.initial();
        let mut now = Duration::ZERO;
        for (signal, dt) in signals {
            now += secs(dt);
            let s = c.tick(k, signal, now);
            let n = s.knobs;
            prop_assert!(n.rps.is_finite() && n.burst.is_finite() && n.window.is_finite());
            prop_assert!((10.0..=1000.0).contains(&n.rps), "rps {}", n.rps);
            prop_assert!((0.5..=2.0).contains(&n.burst), "burst {}", n.burst);
            prop_assert!((1.0..=5.0).contains(&n.window), "window {}", n.window);
            prop_assert!(n.capacity() >= 1.0);
            prop_assert!(
                n.burst * n.window >= LIMITLION_MIN_SPAN,
                "limitlion would delete its bucket: {n:?}"
            );
            let headroom = Observation::new(signal, 1.0, direction, 1.0).headroom;
            if headroom < -deadband {
                prop_assert!(n.rps <= k.rps, "rose while overloaded: {} -> {}", k.rps, n.rps);
            }
            let lowest_aim = match (law, direction) {
                (Control::Predictive { .. }, Direction::HigherIsWorse) => 0.5,
                (Control::Predictive { .. }, Direction::LowerIsWorse) => 2.0,
                _ => 1.0,
            };
            if Observation::new(signal, lowest_aim, direction, 1.0).headroom > deadband {
                prop_assert!(n.rps >= k.rps, "fell while healthy: {} -> {}", k.rps, n.rps);
            }
            prop_assert!((n.rps - k.rps).abs() <= max_step * k.rps + 1e-9);
            k = n;
        }
    }

    /// A NaN or infinite signal at any tick of a run leaves `rps` where it was (a hold,
    /// "unusable input"), whatever the law's state: never a cut, never a raise.
    #[test]
    fn non_finite_signals_at_any_step_hold_the_knob(
        law in laws(),
        signals in prop::collection::vec(
            prop_oneof![
                3 => 0.0f64..10.0,
                1 => prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY)],
            ],
            1..60,
        ),
    ) {
        let mut c = Controller::new(&policy(law), secs(10));
        let mut k = c.initial();
        for (i, signal) in signals.into_iter().enumerate() {
            let s = c.tick(k, signal, secs(10 * (i as u64 + 1)));
            prop_assert!(regulator::Knobs::validate(&s.knobs).is_ok(), "{s:?}");
            if !signal.is_finite() {
                prop_assert_eq!(s.knobs.rps, k.rps, "{} moved rps: {:?}", signal, s);
                prop_assert_eq!(s.reason, "unusable input");
            }
            k = s.knobs;
        }
    }

    /// Any finite or non-finite signal, even a garbage one, gives a writable knob.
    #[test]
    fn garbage_signals_never_give_a_bad_knob(
        law in laws(),
        signal in prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY), any::<f64>()],
    ) {
        let mut c = Controller::new(&policy(law), secs(10));
        let s = c.tick(c.initial(), signal, secs(10));
        prop_assert!(regulator::Knobs::validate(&s.knobs).is_ok());
        prop_assert!((10.0..=1000.0).contains(&s.knobs.rps));
    }
}

/// A backend whose latency grows with load: 0.1 s at 300 rps, 0.25 s (the target) near 474.
fn latency(rps: f64) -> f64 {
    0.1 * (rps / 300.0).powi(2)
}

#[test]
fn every_law_settles_a_simulated_backend_near_its_target() {
    for law in [PREDICTIVE, AIMD, PID, GRADIENT] {
        let mut p = policy(law);
        p.cooldown = Duration::ZERO;
        let mut c = Controller::new(&p, secs(10));
        let mut k = c.initial();
        let mut tail = Vec::new();
        for t in 1..=300u64 {
            k = c.tick(k, latency(k.rps), secs(t * 10)).knobs;
            if t > 250 {
                tail.push(latency(k.rps));
            }
        }
        let mean = tail.iter().sum::<f64>() / tail.len() as f64;
        let worst = tail.iter().copied().fold(0.0, f64::max);
        assert!(
            (0.15..=0.27).contains(&mean),
            "{}: mean latency {mean:.3} (rps {:.0})",
            law.law(),
            k.rps
        );
        assert!(worst < 0.4, "{}: worst latency {worst:.3}", law.law());
    }
}

#[test]
fn the_predictive_law_settles_under_the_target_without_crossing_it() {
    let mut p = policy(PREDICTIVE);
    p.cooldown = Duration::ZERO;
    let mut c = Controller::new(&p, secs(10));
    let mut k = c.initial();
    for t in 1..=100u64 {
        k = c.tick(k, latency(k.rps), secs(t * 10)).knobs;
        if t > 10 {
            assert!(
                latency(k.rps) <= 0.25,
                "tick {t}: {:.3} at {:.0}",
                latency(k.rps),
                k.rps
            );
        }
    }
    let l = latency(k.rps);
    assert!(
        (0.2..=0.25).contains(&l),
        "settled at {l:.3} ({:.0} rps)",
        k.rps
    );
}

#[test]
fn the_predictive_law_does_not_cut_twice_for_one_overload() {
    // The signal lags the knobs by 20 s: an overload seen at t=10 is still seen at t=20,
    // although the knob was cut at t=10. The same signal is no news: the second tick holds.
    // A slightly worse one is paired with the knob in force when it was measured (100), so
    // the law cuts only by what is new (to 100 / 2.04), not again from the cut knob.
    let mut p = policy(PREDICTIVE);
    p.control = Control::Predictive {
        margin: 0.1,
        gain: 0.5,
        floor: Some(0.35),
        lag: Some(secs(20)),
    };
    let mut c = Controller::new(&p, secs(10));
    let start = Knobs {
        rps: 100.0,
        ..c.initial()
    };
    c.tick(start, 0.2, secs(0));
    let first = c.tick(start, 0.5, secs(10)).knobs;
    assert!(first.rps < 100.0);
    let second = c.tick(first, 0.5, secs(20));
    assert_eq!(second.knobs.rps, first.rps, "{second:?}");
    let worse = c.tick(first, 0.51, secs(25));
    assert!(
        (worse.knobs.rps - 100.0 * 0.25 / 0.51).abs() < 1e-9,
        "{worse:?} after {first:?}"
    );
}

#[test]
fn a_cut_that_was_never_written_is_not_taken_for_in_force() {
    // The same overload twice. When the first cut was written, the second tick waits for it
    // to show; when its write failed (the stored knobs are still 100), the cut never
    // happened, and the second tick cuts again.
    let cut_after = |written: bool| {
        let mut c = Controller::new(&policy(PREDICTIVE), secs(10));
        let start = Knobs {
            rps: 100.0,
            ..c.initial()
        };
        c.tick(start, 0.2, secs(0));
        let first = c.tick(start, 0.5, secs(10)).knobs;
        assert!(first.rps < 100.0, "{first:?}");
        let stored = if written { first } else { start };
        (first, c.tick(stored, 0.5, secs(20)).knobs)
    };
    let (first, after_written) = cut_after(true);
    assert_eq!(
        after_written.rps, first.rps,
        "written: one cut per overload"
    );
    let (first, after_failed) = cut_after(false);
    assert!(
        after_failed.rps <= first.rps,
        "failed write: cut again from 100, got {after_failed:?}"
    );
}

#[test]
fn a_deep_cut_is_recovered_from_in_a_few_ticks_when_the_signal_shows_headroom() {
    // A backend that served 200/s at the target is overloaded into a cut to the minimum;
    // then its signal shows plenty of headroom. The law climbs back to near the rate that
    // overloaded in a few ticks, not one window (2 lags + the range window) per step.
    let mut p = policy(PREDICTIVE);
    p.signal.query = "histogram_quantile(0.99, rate(x_bucket[10s]))".into();
    p.cooldown = Duration::ZERO;
    let mut c = Controller::new(&p, secs(2));
    let mut k = Knobs {
        rps: 200.0,
        ..c.initial()
    };
    let mut now = Duration::ZERO;
    // An overload that keeps getting worse: every tick is news, and each cuts.
    for i in 0..20 {
        if k.rps == 10.0 {
            break;
        }
        now += secs(2);
        k = c.tick(k, 10.0 * f64::from(i + 1), now).knobs;
    }
    assert_eq!(k.rps, 10.0, "cut to the minimum");
    let mut ticks = 0;
    while k.rps < 0.8 * 200.0 * 0.9 {
        now += secs(2);
        // Far under the target at these rates: a queue at a quarter of its capacity.
        k = c.tick(k, 0.05, now).knobs;
        ticks += 1;
        assert!(ticks <= 10, "still at {} after {ticks} ticks", k.rps);
    }
}

#[test]
fn window_and_burst_shrink_past_the_target_and_recover_slowly() {
    let mut c = Controller::new(&policy(PREDICTIVE), secs(10));
    let mut k = c.initial();
    assert_eq!((k.burst, k.window), (2.0, 5.0));
    for t in 1..=6 {
        k = c.tick(k, 1.0, secs(t * 10)).knobs;
    }
    assert_eq!((k.burst, k.window), (0.5, 1.0), "at their minimum");
    let mut ticks = 0;
    while k.window < 5.0 {
        let next = c.tick(k, 0.05, secs(100 + ticks * 10)).knobs;
        assert!(next.window <= k.window * (1.0 + SHAPE_RECOVERY) + 1e-9);
        k = next;
        ticks += 1;
        assert!(ticks < 100, "window never recovered");
    }
    assert!(
        ticks >= 10,
        "recovered in {ticks} ticks: too fast to outlast a quiet spell"
    );
}

#[test]
fn within_keeps_nan_so_the_guard_after_it_can_see_it() {
    assert!(within(f64::NAN, 1.0, 2.0).is_nan());
    assert_eq!(within(5.0, 1.0, 2.0), 2.0);
    assert_eq!(within(0.0, 1.0, 2.0), 1.0);
    assert_eq!(within(f64::INFINITY, 1.0, 2.0), 2.0);
    // The pure law passes NaN through too, for the controller's guard to catch.
    let p = laws::Predictive {
        margin: 0.1,
        gain: 1.0,
        floor: 0.2,
    };
    for bad in [f64::NAN, f64::INFINITY] {
        assert!(!laws::predictive(bad, bad, 0.5, p).is_finite(), "{bad}");
    }
}

#[test]
fn range_window_is_the_longest_range_of_the_query() {
    assert_eq!(range_window("up"), Duration::ZERO);
    assert_eq!(
        range_window("histogram_quantile(0.99, sum by (le) (rate(x_bucket[1m])))"),
        secs(60)
    );
    assert_eq!(
        range_window("rate(a[30s]) / max_over_time(b[5m:10s])"),
        secs(300)
    );
    assert_eq!(range_window("x{l=\"[\"}[bad]"), Duration::ZERO);
}

/// A controller on a 2 s interval over `rate(..[10s])`, no cooldown, at `rps`, after one
/// tick with headroom (0.2, under the aim) whose raise was not written.
fn predictive_at(rps: f64) -> (Controller, Knobs) {
    let mut p = policy(PREDICTIVE);
    p.signal.query = "histogram_quantile(0.99, rate(x_bucket[10s]))".into();
    p.cooldown = Duration::ZERO;
    p.max_step = Some(0.6);
    let mut c = Controller::new(&p, secs(2));
    let k = Knobs { rps, ..c.initial() };
    c.tick(k, 0.2, secs(0));
    (c, k)
}

#[test]
fn a_signal_creeping_past_one_and_a_half_times_the_target_gets_cuts_of_thirty_percent() {
    // A fleet held back by its own threads: the knob (400) is far above what the backend
    // serves, the signal creeps toward its cap whatever the knob. After the model's first
    // cut, each cut on a signal that rose 3-15% takes at least 30% off the knob in force.
    let (mut c, mut k) = predictive_at(400.0);
    let mut now = secs(0);
    let mut cuts = Vec::new();
    for signal in [0.40, 0.44, 0.47, 0.49, 0.51] {
        now += secs(2);
        let next = c.tick(k, signal, now).knobs;
        cuts.push(next.rps / k.rps);
        k = next;
    }
    // The model's first cut: the signal over the target, 1.6.
    assert!((cuts[0] - 1.0 / 1.6).abs() < 1e-9, "{cuts:?}");
    assert!(cuts[1..].iter().all(|r| (r - 0.7).abs() < 1e-9), "{cuts:?}");
}

#[test]
fn a_signal_that_climbs_steeply_past_the_target_gets_the_models_cuts_only() {
    // A measured overload (the signal climbing 40% a tick): the model's cuts, from the
    // highest knob the signal may reflect (400) by the signal over the target, are the right
    // size; an escalated cut would take 30% off the knob in force, a little more.
    let (mut c, mut k) = predictive_at(400.0);
    let (mut now, mut signal) = (secs(0), 0.4);
    for i in 0..3 {
        now += secs(2);
        let next = c.tick(k, signal, now).knobs;
        let model = 400.0 * 0.25 / signal;
        assert!(
            (next.rps - model).abs() < 1e-6,
            "{next:?} at signal {signal}"
        );
        assert!(
            i == 0 || next.rps > 0.7 * k.rps,
            "escalated: {next:?} from {k:?}"
        );
        k = next;
        signal *= 1.4;
    }
}

#[test]
fn an_escalated_cut_is_stepped_back_toward_the_models_cut_while_the_signal_is_on_aim() {
    let (mut c, mut k) = predictive_at(400.0);
    let mut now = secs(0);
    for signal in [0.40, 0.44, 0.47] {
        now += secs(2);
        k = c.tick(k, signal, now).knobs;
    }
    let escalated = k.rps;
    // The model's cut the escalations went under: from 400 at the last signal, 0.47.
    let model = 400.0 * 0.25 / 0.47;
    // Just under the aim (0.9 × 0.25), inside the deadband, from now on: the knob climbs back
    // by 12% a window (2 × 2 s lag + 10 s range = 14 s), never past the model's cut.
    let mut steps = Vec::new();
    for _ in 0..60 {
        now += secs(2);
        let next = c.tick(k, 0.22, now);
        if next.knobs.rps > k.rps {
            assert_eq!(next.reason, "undoing an escalated cut");
            steps.push((now, next.knobs.rps / k.rps));
        }
        k = next.knobs;
    }
    assert!(steps.len() >= 2, "{steps:?} from {escalated}");
    assert!(steps.iter().all(|(_, r)| *r <= 1.12 + 1e-9), "{steps:?}");
    assert!(
        steps
            .windows(2)
            .all(|w| w[1].0.saturating_sub(w[0].0) >= secs(14)),
        "more than one step a window: {steps:?}"
    );
    assert!(k.rps > escalated, "{} after {escalated}", k.rps);
    assert!(
        k.rps <= model + 1e-9,
        "{} past the model's cut {model}",
        k.rps
    );
}

#[test]
fn a_step_back_that_was_never_written_is_taken_again_at_the_next_tick() {
    let (mut c, mut k) = predictive_at(400.0);
    let mut now = secs(0);
    for signal in [0.40, 0.44, 0.47] {
        now += secs(2);
        k = c.tick(k, signal, now).knobs;
    }
    // On the aim until the first step back toward the model's cut.
    let step = loop {
        assert!(now < secs(120), "no step back from {k:?}");
        now += secs(2);
        let next = c.tick(k, 0.22, now);
        if next.knobs.rps > k.rps {
            break next;
        }
        k = next.knobs;
    };
    assert_eq!(step.reason, "undoing an escalated cut");
    // Its write failed: the store still holds `k`. The step never happened, so the law
    // does not wait a window for it; it takes it again.
    now += secs(2);
    let again = c.tick(k, 0.22, now);
    assert_eq!(again.reason, "undoing an escalated cut", "{again:?}");
    assert_eq!(again.knobs.rps, step.knobs.rps);
}

#[test]
fn a_raise_that_was_never_written_still_ends_the_overload() {
    // Two cuts of one overload (400 → 250 → 175, the second escalated), then headroom whose
    // raises are never written (the store keeps 175). A new overload, under a limit more
    // than 1.25 × the rate served, then gets the model's cut (175 / 2.4): the cap at 0.7 ×
    // the rate served is for the cuts after the first of one overload, and the headroom
    // ended the last one whether or not its raises were written.
    let (mut c, mut k) = predictive_at(400.0);
    let mut now = secs(0);
    for signal in [0.40, 0.44] {
        now += secs(2);
        k = c.tick_served(k, signal, Some(k.rps), now).knobs;
    }
    assert!((k.rps - 175.0).abs() < 1e-9, "{k:?}");
    // Past the cuts' window (14 s), so that the headroom raises at once.
    now += secs(16);
    for _ in 0..3 {
        now += secs(2);
        let raise = c.tick_served(k, 0.1, Some(k.rps), now);
        assert!(raise.knobs.rps > k.rps, "{raise:?}");
    }
    now += secs(2);
    let cut = c.tick_served(k, 0.6, Some(80.0), now).knobs;
    assert!((cut.rps - 175.0 / 2.4).abs() < 1e-9, "{cut:?}");
}

#[test]
fn knobs_beyond_the_remembered_history_are_still_paired_with_the_signal() {
    // A signal that lags an hour, ticked every second: its window (2 h) holds far more knob
    // changes than are remembered one by one. A knob of 1000 set 10 minutes ago, then 600
    // changes between 100 and 101: an overload now may still reflect the 1000, so the cut
    // paired with it (1000 / 2 = 500) does not cut at all.
    let mut p = policy(PREDICTIVE);
    p.control = Control::Predictive {
        margin: 0.1,
        gain: 0.5,
        floor: None,
        lag: Some(secs(3600)),
    };
    p.cooldown = Duration::ZERO;
    let mut c = Controller::new(&p, secs(1));
    let at = |rps: f64| Knobs { rps, ..c.initial() };
    let (high, low, higher) = (at(1000.0), at(100.0), at(101.0));
    c.tick(high, 0.2, secs(0));
    for i in 1..=600 {
        c.tick(if i % 2 == 0 { low } else { higher }, 0.2, secs(i));
    }
    let overloaded = c.tick(low, 0.5, secs(601));
    assert_eq!(overloaded.knobs.rps, 100.0, "{overloaded:?}");
}

#[test]
fn an_unusable_signal_changes_nothing_the_law_does_next() {
    // A NaN signal is held on as unusable; the law reads it, as a signal of zero, as a
    // pressure of 0, which says nothing of the queue's floor: taken for it, the floor would
    // sit at its least (0.1) for good, and the raise after it would come from there, not
    // from the floor the law starts from.
    let raise = |nan: bool| {
        let mut c = Controller::new(&policy(PREDICTIVE), secs(10));
        let mut k = Knobs {
            rps: 100.0,
            ..c.initial()
        };
        k = c.tick(k, 0.15, secs(0)).knobs;
        if nan {
            let held = c.tick(k, f64::NAN, secs(5));
            assert_eq!(held.knobs.rps, k.rps, "{held:?}");
        }
        c.tick(k, 0.15, secs(40)).knobs
    };
    let (with, without) = (raise(true), raise(false));
    assert!(with.rps > 100.0, "{with:?}");
    assert_eq!(with.rps, without.rps);
}

#[test]
fn a_cut_from_the_rate_served_is_not_escalated_while_it_shows_nor_stepped_back_from() {
    // A pool saturated at its new capacity under a fleet that sent what the limit allowed:
    // the signal creeps up while its range window (10 s) still holds the backlog of the
    // limits before. The rate served says how deep to cut; an escalation on top (30% off the
    // knob a tick) would cascade far under what the pool serves.
    let (mut c, mut k) = predictive_at(400.0);
    let mut now = secs(0);
    let mut tick = |k: Knobs, signal: f64, served: Option<f64>| {
        now += secs(2);
        c.tick_served(k, signal, served, now)
    };
    // The model's cut (400 / 1.6), then an escalation (the signal crept 10%, no rate served):
    // 0.7 × 250, under the model's 400 / 1.76.
    k = tick(k, 0.40, None).knobs;
    k = tick(k, 0.44, None).knobs;
    assert!((k.rps - 175.0).abs() < 1e-9, "{k:?}");
    // 180/s served under 175: the limit binds, and the cut comes from the rate served.
    k = tick(k, 0.47, Some(180.0)).knobs;
    assert!((k.rps - 0.7 * 180.0).abs() < 1e-9, "{k:?}");
    // Two seconds on, still creeping: the cut from the rate served again, not 0.7 × 126.
    k = tick(k, 0.52, Some(170.0)).knobs;
    assert!((k.rps - 0.7 * 170.0).abs() < 1e-9, "{k:?}");
    // On aim from now on: the model's cut the escalation went under (227) was sized from a
    // limit the pool no longer serves, and the law does not step back toward it.
    for _ in 0..40 {
        let next = tick(k, 0.22, Some(0.98 * k.rps));
        assert_ne!(
            next.reason, "undoing an escalated cut",
            "{next:?} from {k:?}"
        );
        k = next.knobs;
    }
}

/// The predictive law given `(signal, rate served)` (the rate only if `served` is some), over
/// ticks of 10 s from a limit of 120 on a signal over `rate(..[1m])`, and their steps.
fn slack_run(served: Option<f64>, ticks: &[(f64, f64)]) -> Vec<Step> {
    let mut p = policy(PREDICTIVE);
    p.bounds.min_rps = 1.0;
    p.signal.query = "q(rate(x[1m]))".into();
    let mut c = Controller::new(&p, secs(10));
    let mut knobs = Knobs {
        rps: 120.0,
        ..c.initial()
    };
    let mut steps = Vec::new();
    for (i, (signal, rate)) in ticks.iter().enumerate() {
        let s = c.tick_served(
            knobs,
            *signal,
            served.map(|_| *rate),
            secs(10 * (i as u64 + 1)),
        );
        knobs = s.knobs;
        steps.push(s);
    }
    steps
}

/// A signal in the deadband twice, then an overload worse at each tick.
const OVERLOAD: [f64; 6] = [0.22, 0.22, 0.3, 0.4, 0.5, 0.6];

#[test]
fn an_overload_under_a_limit_that_does_not_bind_is_cut_under_the_rate_served() {
    // The fleet sends 35/s under a limit of 120.
    let ticks = OVERLOAD.map(|signal| (signal, 35.0));
    let blind = slack_run(None, &ticks);
    let seeing = slack_run(Some(0.0), &ticks);
    assert_eq!(seeing[1].knobs.rps, 120.0, "{seeing:?}");
    assert_eq!(
        seeing[..3],
        blind[..3],
        "the first cut of an overload is the limit's: the rate served may lag"
    );
    assert!(
        seeing[3].knobs.rps < blind[3].knobs.rps,
        "then from the rate served: {seeing:?} vs {blind:?}"
    );
    assert!(seeing[5].knobs.rps < 35.0, "and binds: {seeing:?}");
    assert!(
        blind[5].knobs.rps > 35.0,
        "without the rate served the cuts stay above it: {blind:?}"
    );
}

#[test]
fn a_binding_limit_is_cut_as_without_the_rate_served() {
    // The fleet sends what the limit allows: the rate served changes nothing, as each cut
    // here is sized from a knob close enough to the rate served that the limit's cut is the
    // deeper one (unlike the next test's).
    let ticks = [
        (0.22, 115.0),
        (0.22, 118.0),
        (0.3, 110.0),
        (0.4, 112.0),
        (0.5, 100.0),
        (0.6, 90.0),
    ];
    let blind = slack_run(None, &ticks);
    let seeing = slack_run(Some(0.0), &ticks);
    assert_eq!(blind, seeing);
    assert_eq!(seeing.last().unwrap().change, Change::Down);
}

/// The predictive law at `before` rps for two ticks in the deadband, then at 40 (a cut the
/// signal's window still holds the `before` of) with the signal at `excess` × the target
/// and `served` the rate served then (none: no rate served at all); its step.
fn saturated_run(before: f64, excess: f64, served: Option<f64>) -> Step {
    let mut p = policy(PREDICTIVE);
    p.bounds.min_rps = 1.0;
    p.signal.query = "q(rate(x[1m]))".into();
    let mut c = Controller::new(&p, secs(10));
    let high = Knobs {
        rps: before,
        ..c.initial()
    };
    let rate = served.map(|_| 0.98 * before);
    c.tick_served(high, 0.22, rate, secs(10));
    c.tick_served(high, 0.22, rate, secs(20));
    let low = Knobs { rps: 40.0, ..high };
    c.tick_served(low, excess * 0.25, served, secs(30))
}

#[test]
fn an_overload_under_a_binding_limit_is_cut_from_the_rate_served() {
    let blind = saturated_run(120.0, 2.0, None);
    assert_eq!(
        blind.knobs.rps, 40.0,
        "sized from the 120 the signal may reflect, the cut is above the knob: {blind:?}"
    );
    // The backend serves 39/s under the limit of 40: it binds.
    let seeing = saturated_run(120.0, 2.0, Some(39.0));
    assert!(
        (seeing.knobs.rps - 0.7 * 39.0).abs() < 1e-9,
        "from the rate served, no deeper than 0.7 × it: {seeing:?}"
    );
    // A shallow overload too: 20% past the target, the rate served over the signal.
    let shallow = saturated_run(120.0, 1.2, Some(39.0));
    assert!(
        (shallow.knobs.rps - 39.0 / 1.2).abs() < 1e-9,
        "from the rate served: {shallow:?}"
    );
    // On the target, past the aim only: no cut from the rate served.
    assert_eq!(saturated_run(120.0, 1.0, Some(39.0)).knobs.rps, 40.0);
    // 30/s under 40: the limit does not bind, and the first cut of an overload is the
    // limit's (see the tests above).
    assert_eq!(saturated_run(120.0, 2.0, Some(30.0)).knobs.rps, 40.0);
    // With 40 in force all along the limit's own cut (to 40 / 2) stands.
    let (blind, seeing) = (
        saturated_run(40.0, 2.0, None),
        saturated_run(40.0, 2.0, Some(39.0)),
    );
    assert_eq!(seeing, blind);
    assert!((seeing.knobs.rps - 20.0).abs() < 1e-9, "{seeing:?}");
}

#[test]
fn a_burst_after_a_quiet_spell_is_not_taken_for_a_limit_that_does_not_bind() {
    // A burst spends the tokens a quiet spell saved, at more than the limit; the mean rate
    // after it is well under the limit, but the limit did bind while the signal was made.
    let mut ticks = OVERLOAD.map(|signal| (signal, 35.0));
    ticks[1].1 = 150.0;
    assert_eq!(slack_run(None, &ticks), slack_run(Some(0.0), &ticks));
}

#[test]
fn each_law_names_the_signal_it_aims_at_and_a_noisy_signal_lowers_the_predictive_aim() {
    let knobs = Knobs {
        rps: 100.0,
        burst: 2.0,
        window: 5.0,
    };
    let mut aimd = Controller::new(&policy(AIMD), secs(10));
    aimd.tick(knobs, 0.1, secs(0));
    assert_eq!(aimd.aim(), 0.25);

    let mut lower = policy(PREDICTIVE);
    lower.signal.direction = Direction::LowerIsWorse;
    let mut c = Controller::new(&lower, secs(10));
    c.tick(knobs, 0.5, secs(0));
    let aim = c.aim();
    assert!((aim - 0.25 / 0.9).abs() < 1e-12, "{aim}");

    // One knob in force throughout (the bounds pin it), so every move of the signal is noise.
    let mut pinned = policy(PREDICTIVE);
    pinned.bounds.min_rps = 100.0;
    pinned.bounds.max_rps = 100.0;
    let mut c = Controller::new(&pinned, secs(10));
    c.tick(knobs, 0.2, secs(0));
    let first = c.aim();
    assert!(
        (first - 0.225).abs() < 1e-12,
        "the configured margin: {first}"
    );
    for i in 1..40 {
        let signal = if i % 2 == 0 { 0.16 } else { 0.2 };
        c.tick(knobs, signal, secs(10 * i));
    }
    let last = c.aim();
    // ln(0.2 / 0.16) = 0.22 a tick: a noise of 0.23, a margin of 1 - e^(-2.5 × 0.23) = 0.44,
    // held to (1 - floor) / 2 with the floor at its first 0.2: 0.4.
    assert!(
        (last - 0.25 * 0.6).abs() < 1e-9,
        "a noisy signal widens the margin to its cap: aim {last}"
    );
}
