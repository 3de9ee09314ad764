//! `regulator run` as the built binary, driven by Unix signals: SIGTERM drains and exits 0,
//! a second signal forces, SIGHUP reloads (or keeps the running config), and a killed leader
//! is replaced within its lease, and a paused one writes nothing once the lease has moved;
//! a knob change's log line names the aim the law steered for.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::daemon_process::Regulator;
use common::stack::{Stack, policy};
use regulator_testing::{Answer, Scripted};

fn write_config(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn sigterm_exits_0_within_2_seconds_and_releases_the_lease() {
    let stack = Stack::start();
    stack.exporter.set("db_latency", 3.0);
    stack.wait_scraped("db_latency", 1);
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "r.yaml",
        &stack.config(&policy("db", "db_latency", "hold")),
    );
    let mut r = Regulator::start(&path, &["--log-format", "json"]);
    r.wait_metric("regulator_leader", Duration::from_secs(5), |v| v == 1.0);
    stack.wait_rps("db", Duration::from_secs(5), |v| v < 100.0);
    assert_eq!(r.get("/readyz").map(|(s, _)| s), Some(200));
    let status = Command::new(env!("CARGO_BIN_EXE_regulator"))
        .args(["status", "--redis", &stack.redis.url(), "db"])
        .output()
        .expect("regulator status");
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(
        table.contains("LAST CHANGE")
            && table.contains(" ago: rps ")
            && table.contains("(overloaded, signal 3)"),
        "{table}"
    );

    let sent = Instant::now();
    r.signal("TERM");
    let status = r.wait_exit(Duration::from_secs(2));
    eprintln!("exited {status} {:?} after SIGTERM", sent.elapsed());
    assert_eq!(status.code(), Some(0));
    let lease: Option<String> = stack.redis.cmd(&["GET", "regulator:leader"]);
    assert_eq!(lease, None, "released on the way out");
}

#[test]
fn a_knob_change_is_logged_with_the_aim_the_law_steered_for() {
    let stack = Stack::start();
    stack.exporter.set("db_latency", 3.0);
    stack.wait_scraped("db_latency", 1);
    let dir = tempfile::tempdir().unwrap();
    let text = stack.config(&policy("db", "db_latency", "hold")).replace(
        "control: { law: aimd, increase: 50, decrease: 0.5 }",
        "control: { law: predictive, margin: 0.2 }",
    );
    assert!(text.contains("law: predictive"), "{text}");
    let path = write_config(dir.path(), "r.yaml", &text);
    let r = Regulator::start_logged(&path, &["--log-format", "json"]);
    let lines = r.logs_until("knobs changed", Duration::from_secs(10));
    let line: serde_json::Value =
        serde_json::from_str(lines.last().unwrap()).expect("a JSON log line");
    assert_eq!(line["reason"], "overloaded", "{line}");
    // Target 1, margin 0.2, and no noise measured yet: the law aimed at 0.8.
    let aim = line["aim"].as_f64().expect("the aim, a number");
    assert!((aim - 0.8).abs() < 1e-9, "{line}");
}

#[test]
fn a_second_signal_exits_at_once_while_a_tick_hangs() {
    let stack = Stack::start();
    let hang = Scripted::start(Answer::Hang).unwrap();
    let text = stack
        .config(&policy("db", "db_latency", "hold"))
        .replace(&stack.prometheus.url(), &hang.url())
        .replace("timeout: 1s", "timeout: 30s");
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "r.yaml", &text);
    let mut r = Regulator::start_logged(&path, &["--drain", "60s"]);
    let start = Instant::now();
    while hang.requests() == 0 {
        assert!(start.elapsed() < Duration::from_secs(5), "no tick started");
        std::thread::sleep(Duration::from_millis(20));
    }
    r.signal("TERM");
    r.wait_log(
        "stopping: finishing ticks in flight",
        Duration::from_secs(5),
    );
    // Draining: still up and serving, the hung tick holds the exit for up to --drain.
    assert_eq!(r.get("/healthz").map(|(s, _)| s), Some(200));
    assert!(
        r.child.try_wait().unwrap().is_none(),
        "draining a tick in flight"
    );
    r.signal("INT");
    let status = r.wait_exit(Duration::from_secs(2));
    assert_eq!(status.code(), Some(130));
}

#[test]
fn sighup_keeps_a_broken_config_out_and_takes_a_good_one() {
    let stack = Stack::start();
    stack.exporter.set("db_latency", 3.0);
    stack.exporter.set("api_latency", 3.0);
    stack.wait_scraped("api_latency", 1);
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "r.yaml",
        &stack.config(&policy("db", "db_latency", "hold")),
    );
    let r = Regulator::start(&path, &[]);
    stack.wait_rps("db", Duration::from_secs(5), |v| v < 100.0);
    let good = std::fs::read_to_string(&path).unwrap();

    // An atomic replace, as editors and config managers do, with a bound out of range.
    let broken = good.replace("max_rps: 200", "max_rps: -5");
    let tmp = write_config(dir.path(), "r.yaml.new", &broken);
    std::fs::rename(&tmp, &path).unwrap();
    r.signal("HUP");
    r.wait_metric(
        r#"regulator_reloads_total{result="error"}"#,
        Duration::from_secs(5),
        |v| v >= 1.0,
    );
    let before = stack.rps("db").unwrap();
    stack.wait_rps("db", Duration::from_secs(5), |v| v < before);
    assert_eq!(r.metric(r#"regulator_throttles{policy="db"}"#), Some(1.0));

    let added = format!("{good}{}", policy("api", "api_latency", "hold"));
    let tmp = write_config(dir.path(), "r.yaml.new", &added);
    std::fs::rename(&tmp, &path).unwrap();
    r.signal("HUP");
    stack.wait_rps("api", Duration::from_secs(5), |v| v < 100.0);
    r.wait_metric(
        r#"regulator_reloads_total{result="ok"}"#,
        Duration::from_secs(5),
        |v| v >= 1.0,
    );
}

#[test]
fn a_killed_leader_is_replaced_within_its_lease() {
    let stack = Stack::start();
    stack.exporter.set("db_latency", 3.0);
    stack.wait_scraped("db_latency", 1);
    let dir = tempfile::tempdir().unwrap();
    let text = stack.config(&policy("db", "db_latency", "hold"));
    let a = Regulator::start(&write_config(dir.path(), "a.yaml", &text), &[]);
    a.wait_metric("regulator_leader", Duration::from_secs(5), |v| v == 1.0);
    let mut b = Regulator::start(&write_config(dir.path(), "b.yaml", &text), &[]);
    b.wait_metric("regulator_leader", Duration::from_secs(5), |v| v == 0.0);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        a.metric("regulator_leader"),
        Some(1.0),
        "exactly one writer"
    );
    assert_eq!(b.metric("regulator_leader"), Some(0.0));
    assert_eq!(
        b.metric(r#"regulator_knob_writes_total{policy="db"}"#),
        None
    );

    // SIGKILL: no release. The 3 s lease runs out and b takes over.
    let mut a = a;
    a.signal("KILL");
    a.wait_exit(Duration::from_secs(2));
    let killed = Instant::now();
    // Within the lease (3 s) of the kill, plus 1 s for this test's polling and a slow machine.
    b.wait_metric("regulator_leader", Duration::from_secs(4), |v| v == 1.0);
    eprintln!("takeover {:?} after the kill", killed.elapsed());
    b.wait_metric(
        r#"regulator_knob_writes_total{policy="db"}"#,
        Duration::from_secs(5),
        |v| v >= 1.0,
    );
    b.signal("TERM");
    assert_eq!(b.wait_exit(Duration::from_secs(2)).code(), Some(0));
}

/// The drill: the leader is paused (SIGSTOP) until the lease has moved, then resumed. Every
/// history entry Redis takes from then on is the new leader's: whatever the old one had
/// computed or had in flight is refused, and it goes back to shadow.
#[test]
fn a_paused_leader_writes_nothing_after_the_lease_moved() {
    let stack = Stack::start();
    // Overloaded: the leader halves rps every tick, so every tick has a write to make.
    stack.exporter.set("db_latency", 3.0);
    stack.wait_scraped("db_latency", 1);
    let dir = tempfile::tempdir().unwrap();
    let text = stack.config(&policy("db", "db_latency", "hold"));
    let a = Regulator::start(&write_config(dir.path(), "a.yaml", &text), &[]);
    a.wait_metric("regulator_leader", Duration::from_secs(5), |v| v == 1.0);
    a.wait_metric(
        r#"regulator_knob_writes_total{policy="db"}"#,
        Duration::from_secs(5),
        |v| v >= 1.0,
    );
    let b = Regulator::start(&write_config(dir.path(), "b.yaml", &text), &[]);
    b.wait_metric("regulator_leader", Duration::from_secs(5), |v| v == 0.0);

    a.signal("STOP");
    b.wait_metric("regulator_leader", Duration::from_secs(6), |v| v == 1.0);
    let last: Vec<(String, Vec<String>)> =
        stack
            .redis
            .cmd(&["XREVRANGE", "throttle:db:history", "+", "-", "COUNT", "1"]);
    let moved = last.first().map_or_else(|| "0".to_owned(), |e| e.0.clone());
    a.signal("CONT");
    // a wakes, ticks at least twice more (its pending tick first) and stays in shadow.
    let ticks = r#"regulator_ticks_total{policy="db",outcome="ok"}"#;
    let woke_at = a.metric(ticks).expect("a ticks");
    a.wait_metric(ticks, Duration::from_secs(6), |v| v >= woke_at + 2.0);
    assert_eq!(a.metric("regulator_leader"), Some(0.0));
    // The new leader keeps writing (rps halves every tick): wait for its next entry.
    let after = format!("({moved}");
    let read = || -> Vec<(String, std::collections::HashMap<String, String>)> {
        stack
            .redis
            .cmd(&["XRANGE", "throttle:db:history", &after, "+"])
    };
    let start = Instant::now();
    let mut entries = read();
    while entries.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the new leader wrote nothing"
        );
        std::thread::sleep(Duration::from_millis(50));
        entries = read();
    }
    let b_pid = format!(":{}:", b.child.id());
    for (id, fields) in &entries {
        assert!(
            fields["writer"].contains(&b_pid),
            "entry {id} after the lease moved is not the new leader's ({b_pid}): {fields:?}"
        );
    }
    eprintln!("{} entries after the move, all by {b_pid}", entries.len());
}

#[test]
fn under_systemd_it_notifies_ready_reloading_and_stopping() {
    let redis = common::redis();
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let next = || {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).expect("a notification within 10 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let text = format!(
        "redis: {{ url: \"{}\" }}\nprometheus: {{ url: \"http://127.0.0.1:{}\", timeout: 1s }}\n\
         listen: \"127.0.0.1:0\"\ninterval: 1s\nleader: {{ lease: 3s }}\nthrottles:\n{}",
        redis.url(),
        regulator_testing::free_port(),
        policy("db", "db_latency", "hold"),
    );
    let path = write_config(dir.path(), "r.yaml", &text);
    let mut r = Regulator::start_logged_with(
        &path,
        &[],
        &[("NOTIFY_SOCKET", socket_path.to_str().unwrap())],
    );
    assert_eq!(next(), "READY=1\nSTATUS=running 1 throttle policies");

    r.signal("HUP");
    assert!(next().starts_with("RELOADING=1\n"));
    assert_eq!(next(), "READY=1\nSTATUS=running 1 throttle policies");

    r.signal("TERM");
    assert!(next().starts_with("STOPPING=1\n"));
    assert_eq!(r.wait_exit(Duration::from_secs(10)).code(), Some(0));
}
