//! The rules a parsed configuration must satisfy. Each broken rule is reported with the path
//! of the value that breaks it; all are reported, not just the first.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::{Bounds, Config, Control, Throttle};

type Problems = Vec<(String, String)>;

const MS: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// The range every configured duration must lie in, by its name in the file: long enough to
/// mean something, short enough that no arithmetic on it can overflow and that a typo (`10d`
/// for `10s`) is caught rather than obeyed.
fn duration_range(name: &str) -> (Duration, Duration) {
    match name {
        "redis.timeout" => (MS, MINUTE),
        "redis.knobs_ttl" => (SECOND, DAY * 3650),
        "prometheus.timeout" => (MS, MINUTE * 5),
        "interval" => (MS * 100, DAY),
        "leader.lease" => (SECOND, HOUR),
        "control.lag" => (Duration::ZERO, HOUR),
        // cooldown
        _ => (Duration::ZERO, DAY),
    }
}

/// Whether `d` lies in the range of `name`, and the message when it does not.
fn duration_in_range(name: &str, d: Duration) -> (bool, String) {
    let (lo, hi) = duration_range(name);
    let show = |d: Duration| humantime::format_duration(d).to_string();
    (
        (lo..=hi).contains(&d),
        format!("{} is outside [{}, {}]", show(d), show(lo), show(hi)),
    )
}

/// Every broken rule, as (path, message). `indices[k]` is the position in the file of
/// `c.throttles[k]` (throttles that did not parse are absent).
pub(super) fn validate(c: &Config, indices: &[usize]) -> Problems {
    let mut p = Problems::new();
    let mut check = |ok: bool, path: &str, msg: String| {
        if !ok {
            p.push((path.to_owned(), msg));
        }
    };
    check(
        c.redis.url.starts_with("redis://") || c.redis.url.starts_with("rediss://"),
        "redis.url",
        format!(
            "{:?} is not a redis:// or rediss:// URL",
            regulator::client::redact_url(&c.redis.url)
        ),
    );
    for (path, msg) in redis_secrets(&c.redis) {
        check(false, path, msg);
    }
    check(
        !c.redis.cluster || url_db(&c.redis.url).is_none_or(|db| db == 0),
        "redis.url",
        "Redis Cluster has only database 0; drop the /<db> from the URL".into(),
    );
    for (name, d) in [
        ("redis.timeout", c.redis.timeout),
        ("redis.knobs_ttl", c.redis.knobs_ttl),
        ("prometheus.timeout", c.prometheus.timeout),
        ("interval", c.interval),
        ("leader.lease", c.leader.lease),
    ] {
        let (ok, msg) = duration_in_range(name, d);
        check(ok, name, msg);
    }
    check(
        c.prometheus.url.starts_with("http://") || c.prometheus.url.starts_with("https://"),
        "prometheus.url",
        format!("{:?} is not an http:// or https:// URL", c.prometheus.url),
    );
    let prom = &c.prometheus;
    check(
        !(prom.basic_auth.is_some()
            && (prom.bearer_token_file.is_some() || prom.bearer_token_env.is_some())),
        "prometheus.basic_auth",
        "basic_auth and a bearer token both set the Authorization header: keep one".into(),
    );
    check(
        !(prom.bearer_token_file.is_some() && prom.bearer_token_env.is_some()),
        "prometheus.bearer_token_env",
        "bearer_token_file and bearer_token_env are both set: keep one".into(),
    );
    check(
        prom.basic_auth
            .as_ref()
            .is_none_or(|a| a.password_file.is_none() || a.password_env.is_none()),
        "prometheus.basic_auth",
        "password_file and password_env are both set: keep one".into(),
    );
    check(
        c.listen.parse::<SocketAddr>().is_ok(),
        "listen",
        format!("{:?} is not an address like 127.0.0.1:9477", c.listen),
    );
    // A leader stops writing at 90% of its lease: that last tenth must cover a write that
    // started just before it, bounded by redis.timeout.
    // Checked only between durations that are themselves in range: one error a mistake.
    let ten_timeouts = c.redis.timeout.saturating_mul(10);
    let in_range = |name, d| duration_in_range(name, d).0;
    check(
        !in_range("redis.timeout", c.redis.timeout)
            || !in_range("leader.lease", c.leader.lease)
            || c.leader.lease >= ten_timeouts,
        "leader.lease",
        format!(
            "must be at least 10 x redis.timeout ({})",
            humantime::format_duration(ten_timeouts)
        ),
    );
    check(
        c.history.max_len >= 1,
        "history.max_len",
        "must be at least 1".into(),
    );

    // Names identify policies (in reloads and metrics), plain or templated alike.
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (&i, t) in indices.iter().zip(&c.throttles) {
        let at = format!("throttles[{i}]");
        if let Some(first) = seen.insert(t.name.as_str(), i) {
            p.push((
                format!("{at}.name"),
                format!("{:?} is already used by throttles[{first}]", t.name),
            ));
        }
        throttle(&mut p, &at, t);
    }
    p
}

fn throttle(p: &mut Problems, at: &str, t: &Throttle) {
    let mut check = |ok: bool, path: &str, msg: String| {
        if !ok {
            p.push((format!("{at}.{path}"), msg));
        }
    };
    check(
        t.signal.name_label.is_some() || !t.name.is_empty(),
        "name",
        "must not be empty".into(),
    );
    // A template's name is a prefix: the names it makes are checked as they come.
    if t.signal.name_label.is_none() && !t.name.is_empty() {
        let clash = regulator::client::keys::check_name(&t.name);
        check(clash.is_ok(), "name", clash.err().unwrap_or_default());
    }
    let d = t.defaults;
    let [level, min, max] = t.knob.names();
    check(
        d.rps.is_finite() && d.rps > 0.0,
        level,
        format!("must be a number above 0, got {}", d.rps),
    );
    if t.knob == super::Knob::Concurrency {
        let whole =
            |v: f64| v.is_finite() && v >= 1.0 && v.fract() == 0.0 && v <= f64::from(u32::MAX);
        check(
            whole(d.rps),
            level,
            format!("must be a whole number >= 1, got {}", d.rps),
        );
        check(
            whole(t.bounds.min_rps),
            min,
            format!("must be a whole number >= 1, got {}", t.bounds.min_rps),
        );
        check(
            whole(t.bounds.max_rps),
            max,
            format!("must be a whole number >= 1, got {}", t.bounds.max_rps),
        );
    }
    check(
        d.burst.is_finite() && d.burst > 0.0,
        "defaults.burst",
        format!("must be a number above 0, got {}", d.burst),
    );
    check(
        d.window.is_finite() && d.window > 0.0,
        "defaults.window",
        format!("must be a number above 0, got {}", d.window),
    );
    bounds(&mut check, t);
    signal(&mut check, &t.signal);
    check(
        t.max_step.is_none_or(|m| m > 0.0 && m <= 1.0),
        "max_step",
        format!("must be in (0, 1], got {}", t.max_step()),
    );
    check(
        (0.0..1.0).contains(&t.deadband),
        "deadband",
        format!("must be in [0, 1), got {}", t.deadband),
    );
    check(
        t.max_throttles.is_none_or(|m| {
            t.signal.name_label.is_some() && (1..=super::MAX_MAX_THROTTLES).contains(&m)
        }),
        "max_throttles",
        if t.signal.name_label.is_some() {
            format!("must be in [1, {}]", super::MAX_MAX_THROTTLES)
        } else {
            "caps a template: it needs signal.name_label".to_owned()
        },
    );
    for (name, d) in [("interval", t.interval), ("cooldown", Some(t.cooldown))] {
        if let Some(d) = d {
            let (ok, msg) = duration_in_range(name, d);
            check(ok, name, msg);
        }
    }
    law(&mut check, t);
}

fn signal(check: &mut impl FnMut(bool, &str, String), s: &super::Signal) {
    check(
        !s.query.trim().is_empty(),
        "signal.query",
        "must not be empty".into(),
    );
    check(
        s.target.is_finite(),
        "signal.target",
        format!("must be a finite number, got {}", s.target),
    );
    check(
        s.name_label.as_ref().is_none_or(|l| !l.is_empty()),
        "signal.name_label",
        "must not be empty".into(),
    );
    check(
        s.throughput.as_ref().is_none_or(|q| !q.trim().is_empty()),
        "signal.throughput",
        "must not be empty".into(),
    );
    check(
        s.throughput.is_none() || s.name_label.is_none(),
        "signal.throughput",
        "is not supported with signal.name_label: a template's cuts follow its limits".into(),
    );
}

fn bounds(check: &mut impl FnMut(bool, &str, String), t: &Throttle) {
    let Bounds {
        min_rps, max_rps, ..
    } = t.bounds;
    let [level, min, max] = t.knob.names();
    let min_name = min.trim_start_matches("bounds.");
    check(
        min_rps.is_finite() && min_rps >= 0.0,
        min,
        format!("must be a number >= 0, got {min_rps}"),
    );
    check(
        max_rps.is_finite() && max_rps > 0.0 && max_rps >= min_rps,
        max,
        format!("must be a number above 0 and >= {min_name} ({min_rps}), got {max_rps}"),
    );
    check(
        !(t.defaults.rps < min_rps || t.defaults.rps > max_rps),
        level,
        format!(
            "{} is outside bounds [{min_rps}, {max_rps}]",
            t.defaults.rps
        ),
    );
    for (name, lo, hi, default) in [
        (
            "burst",
            t.bounds.min_burst,
            t.bounds.max_burst,
            t.defaults.burst,
        ),
        (
            "window",
            t.bounds.min_window,
            t.bounds.max_window,
            t.defaults.window,
        ),
    ] {
        let lo_v = lo.unwrap_or(default);
        let hi_v = hi.unwrap_or(default);
        check(
            lo_v.is_finite() && lo_v > 0.0,
            &format!("bounds.min_{name}"),
            format!("must be a number above 0, got {lo_v}"),
        );
        check(
            hi_v.is_finite() && hi_v >= lo_v,
            &format!("bounds.max_{name}"),
            format!("must be a number >= min_{name} ({lo_v}), got {hi_v}"),
        );
        check(
            (lo_v..=hi_v).contains(&default),
            &format!("defaults.{name}"),
            format!("{default} is outside bounds [{lo_v}, {hi_v}]"),
        );
    }
    // limitlion deletes a bucket whose burst × window is under 0.5: its workers would run
    // unlimited. The smallest span the daemon may write is the two minimums' product.
    let least_burst = t.bounds.min_burst.unwrap_or(t.defaults.burst);
    let least_window = t.bounds.min_window.unwrap_or(t.defaults.window);
    if t.limitlion && least_burst * least_window < super::LIMITLION_MIN_SPAN {
        let at = if t.bounds.min_window.is_some() {
            "bounds.min_window"
        } else if t.bounds.min_burst.is_some() {
            "bounds.min_burst"
        } else {
            "defaults.window"
        };
        check(
            false,
            at,
            format!(
                "burst × window can go down to {least_burst} × {least_window} = {}: limitlion \
                 deletes a bucket under 0.5 and its Python workers then run unlimited; keep \
                 min burst × min window at 0.5 or more, or set `limitlion: false` if no \
                 limitlion worker shares this throttle",
                least_burst * least_window
            ),
        );
    }
    // The smallest bucket the daemon may write must still hold one token (capacity is
    // ceil(rps × burst × window), so any positive product will do).
    let smallest = min_rps
        * t.bounds.min_burst.unwrap_or(t.defaults.burst)
        * t.bounds.min_window.unwrap_or(t.defaults.window);
    check(
        smallest.ceil() >= 1.0,
        "bounds.min_rps",
        format!(
            "min_rps × min burst × min window = {smallest}: a bucket that small holds no \
             token, so nothing would ever be allowed; raise a minimum"
        ),
    );
}

fn law(check: &mut impl FnMut(bool, &str, String), t: &Throttle) {
    match t.control {
        Control::Predictive {
            margin,
            gain,
            floor,
            lag,
        } => {
            check(
                (0.0..0.5).contains(&margin),
                "control.margin",
                format!("must be in [0, 0.5), got {margin}"),
            );
            check(
                gain > 0.0 && gain <= 1.0,
                "control.gain",
                format!("must be in (0, 1], got {gain}"),
            );
            check(
                floor.is_none_or(|f| f > 0.0 && f < 1.0 - margin),
                "control.floor",
                format!(
                    "must be above 0 and below 1 - margin, got {}",
                    floor.unwrap_or_default()
                ),
            );
            if let Some(lag) = lag {
                let (ok, msg) = duration_in_range("control.lag", lag);
                check(ok, "control.lag", msg);
            }
            check(
                t.signal.target > 0.0,
                "signal.target",
                "the predictive law divides by the target: it must be above 0".into(),
            );
        }
        Control::Aimd { increase, decrease } => {
            check(
                increase.is_none_or(|i| i.is_finite() && i > 0.0),
                "control.increase",
                "must be a number above 0 (rps added per tick)".into(),
            );
            check(
                decrease > 0.0 && decrease < 1.0,
                "control.decrease",
                format!("must be in (0, 1), got {decrease}"),
            );
        }
        Control::Pid { kp, ki, kd } => {
            for (name, v) in [("kp", kp), ("ki", ki), ("kd", kd)] {
                check(
                    v.is_finite() && v >= 0.0,
                    &format!("control.{name}"),
                    format!("must be a finite number >= 0, got {v}"),
                );
            }
            check(
                kp > 0.0 || ki > 0.0,
                "control.kp",
                "kp or ki must be above 0, or the law never acts".into(),
            );
        }
        Control::Gradient {
            min_gradient,
            max_gradient,
            headroom,
            smoothing,
        } => {
            check(
                min_gradient > 0.0 && min_gradient <= 1.0,
                "control.min_gradient",
                format!("must be in (0, 1], got {min_gradient}"),
            );
            check(
                max_gradient >= 1.0 && max_gradient.is_finite(),
                "control.max_gradient",
                format!("must be a finite number >= 1, got {max_gradient}"),
            );
            check(
                headroom.is_finite() && headroom >= 0.0,
                "control.headroom",
                format!("must be a finite number >= 0, got {headroom}"),
            );
            check(
                smoothing > 0.0 && smoothing <= 1.0,
                "control.smoothing",
                format!("must be in (0, 1], got {smoothing}"),
            );
            check(
                t.signal.target > 0.0,
                "signal.target",
                "the gradient law divides by the signal: target must be above 0".into(),
            );
        }
    }
}

/// The database number a Redis URL selects, when it parses.
/// One source per secret, and TLS settings only where TLS is used.
fn redis_secrets(r: &super::RedisConfig) -> Vec<(&'static str, String)> {
    let mut p = Vec::new();
    if r.password_file.is_some() && r.password_env.is_some() {
        p.push((
            "redis.password_env",
            "password_file and password_env are both set: keep one".to_owned(),
        ));
    }
    if (r.password_file.is_some() || r.password_env.is_some()) && url_has_password(&r.url) {
        p.push((
            "redis.url",
            "holds a password and password_file/password_env is set too: keep one (the file or \
             variable keeps it out of the config)"
                .to_owned(),
        ));
    }
    if let Some(tls) = &r.tls {
        if !r.url.starts_with("rediss://") {
            p.push((
                "redis.tls",
                "is set but redis.url is not rediss://: the connection would not use TLS"
                    .to_owned(),
            ));
        }
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            p.push((
                "redis.tls",
                "cert_file and key_file go together: set both for mutual TLS, or neither"
                    .to_owned(),
            ));
        }
    }
    p
}

/// Whether `url`'s authority holds `user:password@`.
fn url_has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    authority.rsplit_once('@').is_some_and(|(userinfo, _)| {
        userinfo
            .split_once(':')
            .is_some_and(|(_, pw)| !pw.is_empty())
    })
}

fn url_db(url: &str) -> Option<i64> {
    use redis::IntoConnectionInfo;
    url.into_connection_info()
        .ok()
        .map(|info| info.redis_settings().db())
}
