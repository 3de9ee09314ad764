//! The knob store and the leader lease against a real redis-server.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{knobs, redis};
use regulator::{Client, StoredKnobs};
use regulator_daemon::leader_lease::LeaderLease;
use regulator_daemon::store::{KnobChange, KnobStore, RedisStore};

fn change(name: &str, old: Option<regulator::Knobs>, new: regulator::Knobs) -> KnobChange {
    KnobChange {
        name: name.into(),
        knob: regulator_daemon::config::Knob::Rate,
        old,
        new,
        signal: Some(0.4),
        law: "aimd",
        reason: "overloaded".into(),
        aim: 0.9,
    }
}

#[tokio::test]
async fn writes_only_what_changed_with_ttl_and_history() {
    let server = redis();
    let client = Client::connect(&server.url()).await.unwrap();
    let store = RedisStore::new(client.clone(), Duration::from_secs(600), 10);

    store
        .write(&[change("orders", None, knobs(100.0, 2.0, 5.0))])
        .await
        .unwrap();
    // An operator edits burst by hand; the daemon then changes only rps and must not undo it.
    let _: () = server.cmd(&["HSET", "throttle:orders:knobs", "burst", "3"]);
    store
        .write(&[change(
            "orders",
            Some(knobs(100.0, 2.0, 5.0)),
            knobs(70.0, 2.0, 5.0),
        )])
        .await
        .unwrap();
    let stored = store
        .read(
            &["orders".into(), "absent".into()],
            regulator_daemon::config::Knob::Rate,
        )
        .await
        .unwrap();
    assert_eq!(stored[0], StoredKnobs::Valid(knobs(70.0, 3.0, 5.0)));
    assert_eq!(stored[1], StoredKnobs::Absent);
    let ttl: i64 = server.cmd(&["TTL", "throttle:orders:knobs"]);
    assert!((590..=600).contains(&ttl), "{ttl}");
    let ttl: i64 = server.cmd(&["TTL", "throttle:orders:history"]);
    assert!(
        (590..=600).contains(&ttl),
        "the history expires with the knobs: {ttl}"
    );
    // Regression: a template with no throttles yet read with an empty pipeline, which Redis
    // refuses, and every tick failed.
    assert_eq!(
        store
            .read(&[], regulator_daemon::config::Knob::Rate)
            .await
            .unwrap(),
        Vec::new()
    );

    let entries: Vec<(String, HashMap<String, String>)> =
        server.cmd(&["XRANGE", "throttle:orders:history", "-", "+"]);
    assert_eq!(entries.len(), 2);
    let last = &entries[1].1;
    assert_eq!(last["old_rps"], "100");
    assert_eq!(last["rps"], "70");
    assert_eq!(last["signal"], "0.4");
    assert_eq!(last["law"], "aimd");
    assert_eq!(last["reason"], "overloaded");
    assert_eq!(
        entries[0].1["old_rps"], "",
        "no knobs before the first write"
    );

    // Nothing changed: nothing written, no history entry.
    store
        .write(&[change(
            "orders",
            Some(knobs(70.0, 3.0, 5.0)),
            knobs(70.0, 3.0, 5.0),
        )])
        .await
        .unwrap();
    let len: i64 = server.cmd(&["XLEN", "throttle:orders:history"]);
    assert_eq!(len, 2);
}

#[tokio::test]
async fn history_is_capped() {
    let server = redis();
    let client = Client::connect(&server.url()).await.unwrap();
    let store = RedisStore::new(client, Duration::from_secs(600), 10);
    for i in 0..1000 {
        let old = knobs(f64::from(i) + 1.0, 1.0, 5.0);
        store
            .write(&[change(
                "capped",
                Some(old),
                knobs(f64::from(i) + 2.0, 1.0, 5.0),
            )])
            .await
            .unwrap();
    }
    let len: i64 = server.cmd(&["XLEN", "throttle:capped:history"]);
    // `MAXLEN ~` trims whole macro nodes (100 entries by default), never below the cap.
    assert!((10..=110).contains(&len), "{len}");
}

#[tokio::test]
async fn one_replica_holds_the_lease_and_another_takes_over_when_it_dies() {
    let server = redis();
    let client = Client::connect(&server.url()).await.unwrap();
    let a = LeaderLease::new(
        client.clone(),
        "regulator:leader",
        Duration::from_millis(600),
    );
    let b = LeaderLease::new(
        client.clone(),
        "regulator:leader",
        Duration::from_millis(600),
    );
    assert_ne!(a.token(), b.token());

    assert!(a.acquire_or_renew().await.unwrap());
    assert!(!b.acquire_or_renew().await.unwrap());
    assert!(a.acquire_or_renew().await.unwrap(), "the holder renews");
    let holder: String = server.cmd(&["GET", "regulator:leader"]);
    assert_eq!(holder, a.token());

    // A stops renewing (it died): B takes over within one lease length.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(b.acquire_or_renew().await.unwrap());
    assert!(
        !a.acquire_or_renew().await.unwrap(),
        "a late renewal cannot steal it back"
    );

    // Releasing only works for the holder; then A can take it at once.
    a.release().await.unwrap();
    assert!(!a.acquire_or_renew().await.unwrap());
    b.release().await.unwrap();
    assert!(a.acquire_or_renew().await.unwrap());
}

#[tokio::test]
async fn a_concurrency_knob_is_its_own_field_with_history() {
    use regulator_daemon::config::Knob;
    let server = redis();
    let client = Client::connect(&server.url()).await.unwrap();
    let store = RedisStore::new(client, Duration::from_secs(600), 10);
    let level = |c: f64| knobs(c, 1.0, 1.0);
    let mut c = change("search", None, level(12.0));
    c.knob = Knob::Concurrency;
    store.write(&[c.clone()]).await.unwrap();
    let fields: HashMap<String, String> = server.cmd(&["HGETALL", "throttle:search:knobs"]);
    assert_eq!(
        fields.len(),
        1,
        "only concurrency, no rate fields: {fields:?}"
    );
    assert_eq!(fields["concurrency"], "12");
    c.old = Some(level(12.0));
    c.new = level(9.0);
    store.write(&[c]).await.unwrap();
    let read = store
        .read(&["search".into()], Knob::Concurrency)
        .await
        .unwrap();
    assert_eq!(read, vec![StoredKnobs::Valid(level(9.0))]);
    let entries: Vec<(String, HashMap<String, String>)> =
        server.cmd(&["XRANGE", "throttle:search:history", "-", "+"]);
    let last = &entries[1].1;
    assert_eq!(
        (
            last["old_concurrency"].as_str(),
            last["concurrency"].as_str()
        ),
        ("12", "9")
    );
    // A hand-typed fraction is unusable, not a crash and not a level.
    let _: () = server.cmd(&["HSET", "throttle:search:knobs", "concurrency", "2.5"]);
    let read = store
        .read(&["search".into()], Knob::Concurrency)
        .await
        .unwrap();
    assert!(matches!(read[0], StoredKnobs::Invalid(_)), "{read:?}");
}

#[tokio::test]
async fn a_write_under_a_lease_held_by_another_writes_nothing() {
    use regulator_daemon::store::{Fence, Written};
    let server = redis();
    let client = Client::connect(&server.url()).await.unwrap();
    let fence = |token: &str| Fence::new("regulator:leader", token);
    let store = |token: &str| {
        RedisStore::new(client.clone(), Duration::from_secs(600), 10).fenced(fence(token))
    };
    let many: Vec<KnobChange> = (0..600)
        .map(|i| change(&format!("t{i}"), None, knobs(100.0, 1.0, 5.0)))
        .collect();

    // No lease at all, then a lease held by another replica: nothing is written.
    assert_eq!(store("a").write(&many).await.unwrap(), Written::Fenced);
    assert!(
        LeaderLease::with_token(
            client.clone(),
            "regulator:leader",
            Duration::from_secs(30),
            "b"
        )
        .acquire_or_renew()
        .await
        .unwrap()
    );
    assert_eq!(store("a").write(&many).await.unwrap(), Written::Fenced);
    let keys: Vec<String> = server.cmd(&["KEYS", "throttle:*"]);
    assert!(keys.is_empty(), "a fenced write left {keys:?}");

    // The holder writes every change (600: five script calls), each entry naming it.
    assert_eq!(store("b").write(&many).await.unwrap(), Written::All);
    let keys: Vec<String> = server.cmd(&["KEYS", "throttle:*:knobs"]);
    assert_eq!(keys.len(), 600);
    let entry: Vec<(String, HashMap<String, String>)> =
        server.cmd(&["XRANGE", "throttle:t599:history", "-", "+"]);
    assert_eq!(entry[0].1["writer"], "b");
    assert_eq!(entry[0].1["rps"], "100");
}
