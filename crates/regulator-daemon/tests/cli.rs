//! The `regulator` binary's admin subcommands against a real redis-server.

mod common;

use std::process::{Command, Output};

use common::{frozen_client, knobs, redis};
use regulator::StoredKnobs;

fn regulator(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_regulator"))
        .args(args)
        .env("REGULATOR_REDIS_URL", url)
        .output()
        .expect("run regulator")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn set_status_reset_round_trip() {
    let server = redis();
    let client = frozen_client(&server);
    let url = server.url();

    let out = regulator(
        &url,
        &[
            "set",
            "orders-db",
            "--rps",
            "20",
            "--burst",
            "2",
            "--window",
            "5",
            "--ttl",
            "600",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        client.get("orders-db").unwrap().knobs(),
        StoredKnobs::Valid(knobs(20.0, 2.0, 5.0))
    );
    let row = |out: &Output| {
        assert!(out.status.success(), "{out:?}");
        let table = stdout(out);
        table
            .lines()
            .find(|l| l.starts_with("orders-db"))
            .expect(&table)
            .to_owned()
    };
    let before = row(&regulator(&url, &["status"]));
    assert!(
        before.contains(" 600s") || before.contains(" 599s"),
        "{before}"
    );

    // A worker's call refreshes the knobs TTL to 7 days, as limitlion's does.
    client
        .token_bucket("orders-db", knobs(1.0, 1.0, 1.0))
        .consume(3.0)
        .unwrap();
    let after = row(&regulator(&url, &["status"]));
    assert!(
        after.contains(" 6047") || after.contains(" 6048"),
        "{after}"
    );

    let out = regulator(&url, &["status", "--json", "orders-db"]);
    let json: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(json["knobs"]["rps"], 20.0);
    assert_eq!(json["tokens"], 197.0);

    let out = regulator(&url, &["reset", "orders-db"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        client.get("orders-db").unwrap().knobs(),
        StoredKnobs::Absent
    );
}

#[test]
fn bad_values_are_refused_with_limitlions_message() {
    let server = redis();
    for args in [
        &["set", "t", "--rps", "-5", "--burst", "1", "--window", "5"][..],
        &["set", "t", "--rps", "5"][..],
    ] {
        let out = regulator(&server.url(), args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("valid throttle value") || err.contains("has no stored"),
            "{err}"
        );
    }
    let keys: Vec<String> = server.cmd(&["KEYS", "*"]);
    assert!(keys.is_empty(), "nothing written: {keys:?}");
}

#[test]
fn unreachable_redis_is_a_clear_failure() {
    let port = regulator_testing::free_port();
    let out = regulator(&format!("redis://127.0.0.1:{port}/0"), &["status"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unreachable"), "{err}");
}

/// `set --ttl 0` leaves the knobs' expiry as it is (limitlion's `knobs_ttl=0`); it used to
/// become `EXPIRE 1`, so the knobs vanished a second later.
#[test]
fn set_with_ttl_zero_leaves_the_expiry_alone() {
    let server = redis();
    let url = server.url();
    let set = |extra: &[&str]| {
        let mut args = vec!["set", "keep", "--rps", "5", "--burst", "1", "--window", "1"];
        args.extend_from_slice(extra);
        let out = regulator(&url, &args);
        assert!(out.status.success(), "{out:?}");
    };
    set(&["--ttl", "0"]);
    let ttl: i64 = server.cmd(&["TTL", "throttle:keep:knobs"]);
    assert_eq!(ttl, -1, "no expiry set");
    set(&["--ttl", "600"]);
    set(&["--ttl", "0"]);
    let ttl: i64 = server.cmd(&["TTL", "throttle:keep:knobs"]);
    assert!(
        (590..=600).contains(&ttl),
        "the 600 s expiry stays; ttl {ttl}"
    );
}

#[test]
fn a_key_that_is_not_utf8_does_not_hide_the_others_from_status() {
    let server = redis();
    let client = frozen_client(&server);
    client
        .set_knobs("orders-db", knobs(20.0, 1.0, 5.0), None)
        .unwrap();
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(b"throttle:\xff\xfe:knobs".as_slice())
        .arg("rps")
        .arg("1")
        .query(&mut conn)
        .unwrap();
    let out = regulator(&server.url(), &["status"]);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("orders-db"), "{}", stdout(&out));
}
