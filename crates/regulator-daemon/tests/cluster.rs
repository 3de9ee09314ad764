//! Every part that talks to Redis, on a real 3-master Redis Cluster: every limiter, the admin
//! operations, the daemon's knob store and lease, the `regulator run` binary against a real
//! Prometheus, and the CLI, including a master restarted mid-run.

use std::collections::HashSet;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use regulator::client::keys::KeyLayout;
use regulator::{Client, Knobs, StoredKnobs};
use regulator_daemon::leader_lease::LeaderLease;
use regulator_daemon::store::{KnobChange, KnobStore, RedisStore};
use regulator_testing::{Exporter, PrometheusServer, RedisCluster, free_port};

fn cluster() -> RedisCluster {
    RedisCluster::start().expect("start a 3-master redis cluster")
}

async fn connect(cluster: &RedisCluster) -> Client {
    let urls = cluster.urls();
    let seeds: Vec<&str> = urls.iter().map(String::as_str).collect();
    Client::connect_cluster(&seeds).await.expect("connect")
}

/// The node that serves `key`: the only one that answers instead of redirecting.
fn owner(cluster: &mut RedisCluster, key: &str) -> usize {
    (0..3)
        .find(|&i| {
            redis::cmd("EXISTS")
                .arg(key)
                .query::<i64>(&mut cluster.nodes()[i].connection())
                .is_ok()
        })
        .expect("some node serves every slot")
}

/// `per_node` throttle names whose keys (of every kind: they share the name's slot) land on
/// each master.
fn names_on_every_node(cluster: &mut RedisCluster, per_node: usize) -> Vec<String> {
    let keys = KeyLayout { cluster: true };
    let mut by_node = vec![Vec::new(); 3];
    for i in 0..10_000 {
        let name = format!("t{i}");
        let list = &mut by_node[owner(cluster, &keys.bucket(&name))];
        if list.len() < per_node {
            list.push(name);
        }
        if by_node.iter().all(|l| l.len() == per_node) {
            return by_node.concat();
        }
    }
    panic!("10,000 names and some master got none: {by_node:?}");
}

#[tokio::test]
async fn token_buckets_decide_on_every_master() {
    let mut cluster = cluster();
    let names = names_on_every_node(&mut cluster, 2);
    let client = connect(&cluster).await;
    // rps 1 × burst 1 × window 5: five tokens, refilled only after five seconds.
    let defaults = Knobs {
        rps: 1.0,
        burst: 1.0,
        window: 5.0,
    };
    for name in &names {
        let bucket = client.token_bucket(name.as_str(), defaults);
        let allowed = {
            let mut n = 0;
            for _ in 0..8 {
                n += usize::from(bucket.consume(1.0).await.unwrap().allowed);
            }
            n
        };
        // A call straddling a window boundary may see one refill.
        assert!((5..=10).contains(&allowed), "{name}: {allowed}");
        let state = client.get(name).await.unwrap();
        assert!(state.tokens.is_some(), "{name}: the bucket is readable");
    }
    // Knobs set by hand steer the bucket on its own slot.
    let name = &names[0];
    client
        .set_knobs(
            name,
            Knobs {
                rps: 0.0,
                burst: 1.0,
                window: 1.0,
            },
            None,
        )
        .await
        .unwrap();
    let d = client
        .token_bucket(name.as_str(), defaults)
        .consume(1.0)
        .await
        .unwrap();
    assert!(!d.allowed, "rps 0 from the knobs denies");
    let mut found: Vec<String> = client.scan_throttles().await.unwrap();
    found.sort();
    found.dedup();
    let want: HashSet<&String> = names.iter().collect();
    assert_eq!(
        found.iter().filter(|n| want.contains(n)).count(),
        names.len(),
        "the scan sees every master: {found:?}"
    );
    client.reset_knobs(name).await.unwrap();
    assert_eq!(client.get(name).await.unwrap().knobs(), StoredKnobs::Absent);
}

#[tokio::test]
async fn a_client_not_in_cluster_mode_is_told_to_connect_in_cluster_mode() {
    let mut cluster = cluster();
    let plain = KeyLayout { cluster: false };
    // Names whose untagged bucket key another master serves (a redirection) and names whose
    // bucket key node 0 serves but whose knobs are in another slot (a cross-slot call).
    let (mut moved, mut cross) = (None, None);
    for i in 0..10_000 {
        let name = format!("p{i}");
        if owner(&mut cluster, &plain.bucket(&name)) != 0 {
            moved.get_or_insert(name);
        } else if owner(&mut cluster, &plain.knobs(&name)) != 0 {
            cross.get_or_insert(name);
        }
        if moved.is_some() && cross.is_some() {
            break;
        }
    }
    let client = Client::connect(&cluster.urls()[0]).await.expect("connect");
    let names = [moved, cross].map(|n| n.expect("10,000 names found both kinds"));
    for name in names {
        let err = client
            .token_bucket(name.as_str(), Knobs::default())
            .consume(1.0)
            .await
            .expect_err("keys outside one node's slot");
        assert!(
            matches!(err, regulator::Error::NotClusterMode { .. }),
            "{name}: {err:?}"
        );
        assert!(err.to_string().contains("connect in cluster mode"), "{err}");
    }
}

#[tokio::test]
async fn a_restarted_master_is_survived() {
    let mut cluster = cluster();
    let names = names_on_every_node(&mut cluster, 1);
    let client = connect(&cluster).await;
    let defaults = Knobs {
        rps: 1000.0,
        burst: 1.0,
        window: 1.0,
    };
    let buckets: Vec<_> = names
        .iter()
        .map(|n| client.token_bucket(n.as_str(), defaults))
        .collect();
    for b in &buckets {
        assert!(b.consume(1.0).await.unwrap().allowed);
    }
    // Node 0 crashes and comes back empty: no data, no scripts.
    let victim = cluster.nodes()[0].port();
    cluster.restart_node(0).unwrap();
    // Calls may fail while the client notices; each failure is quick and typed, and every
    // bucket answers again soon after (the script is loaded again on NOSCRIPT).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut pending: Vec<usize> = (0..buckets.len()).collect();
    while !pending.is_empty() {
        assert!(
            Instant::now() < deadline,
            "buckets {pending:?} never answered after node {victim} restarted"
        );
        let mut still = Vec::new();
        for i in pending {
            let started = Instant::now();
            match buckets[i].consume(1.0).await {
                Ok(d) => assert!(d.allowed),
                Err(e) => {
                    assert!(
                        started.elapsed() < Duration::from_secs(2),
                        "a failed call is bounded: {e}"
                    );
                    still.push(i);
                }
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn change(name: &str, old: Option<Knobs>, new: Knobs) -> KnobChange {
    KnobChange {
        name: name.into(),
        knob: regulator_daemon::config::Knob::Rate,
        old,
        new,
        signal: Some(0.3),
        law: "predictive",
        reason: "test".into(),
        aim: 0.9,
    }
}

#[tokio::test]
async fn the_daemon_store_and_lease_work_on_a_cluster() {
    let mut cluster = cluster();
    let names = names_on_every_node(&mut cluster, 3);
    let client = connect(&cluster).await;
    let store = RedisStore::new(client.clone(), Duration::from_secs(600), 10);
    let k = |rps| Knobs {
        rps,
        burst: 1.0,
        window: 2.0,
    };
    let changes: Vec<KnobChange> = names
        .iter()
        .enumerate()
        .map(|(i, n)| change(n, None, k(10.0 + i as f64)))
        .collect();
    store.write(&changes).await.unwrap();
    let read = store
        .read(&names, regulator_daemon::config::Knob::Rate)
        .await
        .unwrap();
    for (i, stored) in read.iter().enumerate() {
        assert_eq!(
            *stored,
            StoredKnobs::Valid(k(10.0 + i as f64)),
            "{}",
            names[i]
        );
    }
    // The history went to each throttle's own slot.
    let keys = KeyLayout { cluster: true };
    for name in &names {
        let at = owner(&mut cluster, &keys.history(name));
        let len: i64 = cluster.nodes()[at].cmd(&["XLEN", &keys.history(name)]);
        assert_eq!(len, 1, "{name}");
    }

    let a = LeaderLease::new(client.clone(), "regulator:leader", Duration::from_secs(2));
    let b = LeaderLease::new(client.clone(), "regulator:leader", Duration::from_secs(2));
    assert!(a.acquire_or_renew().await.unwrap());
    assert!(!b.acquire_or_renew().await.unwrap());
    a.release().await.unwrap();
    assert!(b.acquire_or_renew().await.unwrap());
}

#[tokio::test]
async fn cluster_writes_are_fenced_by_the_lease_epoch() {
    use regulator_daemon::store::{Fence, Written};

    let mut cluster = cluster();
    let mut names = names_on_every_node(&mut cluster, 1);
    // Two throttles in one slot: one script call writes both.
    names.extend(["{pair}-x".to_owned(), "{pair}-y".to_owned()]);
    let client = connect(&cluster).await;
    // Epochs as two successive leaders read them from real leases: the second lease is
    // taken only after the first ran out, so its epoch is later.
    let first = LeaderLease::new(client.clone(), "regulator:leader", Duration::from_secs(1));
    let old_epoch = first.try_lead().await.unwrap().epoch;
    assert!(old_epoch > 1_600_000_000_000_000, "{old_epoch}");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let second = LeaderLease::new(client.clone(), "regulator:leader", Duration::from_secs(5));
    let standing = second.try_lead().await.unwrap();
    assert!(standing.held);
    assert!(
        standing.epoch > old_epoch,
        "{} <= {old_epoch}",
        standing.epoch
    );

    let store = |lease: &LeaderLease, epoch: u64| {
        let fence = Fence::new(lease.key(), lease.token()).with_epoch(epoch);
        RedisStore::new(client.clone(), Duration::from_secs(600), 10).fenced(fence)
    };
    let k = |rps| Knobs {
        rps,
        burst: 1.0,
        window: 2.0,
    };
    let writes =
        |rps: f64| -> Vec<KnobChange> { names.iter().map(|n| change(n, None, k(rps))).collect() };
    let reader = RedisStore::new(client.clone(), Duration::from_secs(600), 10);
    let stored = || reader.read(&names, regulator_daemon::config::Knob::Rate);
    let all = |rps: f64| vec![StoredKnobs::Valid(k(rps)); names.len()];

    let new_leader = store(&second, standing.epoch);
    assert_eq!(new_leader.write(&writes(20.0)).await.unwrap(), Written::All);
    // The old leader, woken from a pause with its write still to send, is refused on every
    // master, and the new leader's knobs stay.
    let old_leader = store(&first, old_epoch);
    assert_eq!(
        old_leader.write(&writes(5.0)).await.unwrap(),
        Written::Fenced
    );
    assert_eq!(stored().await.unwrap(), all(20.0));
    // The slot is fenced, not only the throttles the new leader wrote: the old leader's
    // write is refused on a throttle of that slot the new leader has never written too.
    let pair = ["{pair}-x".to_owned(), "{pair}-z".to_owned()];
    let stale: Vec<KnobChange> = pair.iter().map(|n| change(n, None, k(5.0))).collect();
    assert_eq!(old_leader.write(&stale).await.unwrap(), Written::Fenced);
    assert_eq!(
        reader
            .read(&pair, regulator_daemon::config::Knob::Rate)
            .await
            .unwrap(),
        [StoredKnobs::Valid(k(20.0)), StoredKnobs::Absent]
    );
    // A replica that does not lead (epoch 0) writes nothing at all.
    let shadow = store(&first, 0);
    assert_eq!(shadow.write(&writes(7.0)).await.unwrap(), Written::Fenced);
    assert_eq!(stored().await.unwrap(), all(20.0));

    // Masters that lost their scripts (restarted, flushed) get them again.
    for node in cluster.nodes() {
        let _: () = node.cmd(&["SCRIPT", "FLUSH"]);
    }
    assert_eq!(new_leader.write(&writes(30.0)).await.unwrap(), Written::All);
    assert_eq!(stored().await.unwrap(), all(30.0));
}

/// At the scale the store is built for: 100,000 throttles over every slot. A new leader that
/// changes one of them still fences the stale leader out of all the others (they are steady:
/// it never wrote them), because its first read raised every slot's epoch; and a leader whose
/// deadline passed writes nothing more, even with the highest epoch.
#[tokio::test]
async fn a_stale_leader_is_fenced_out_of_steady_throttles_at_100k() {
    use regulator_daemon::config::Knob;
    use regulator_daemon::leader::Leadership;
    use regulator_daemon::store::{Fence, Written};
    use std::sync::Arc;

    const N: usize = 100_000;
    let cluster = cluster();
    let client = connect(&cluster).await;
    let names: Vec<String> = (0..N).map(|i| format!("s{i}")).collect();
    let k = |rps| Knobs {
        rps,
        burst: 1.0,
        window: 1.0,
    };
    let writes =
        |rps: f64| -> Vec<KnobChange> { names.iter().map(|n| change(n, None, k(rps))).collect() };
    let leader = |epoch: u64, until: Duration| {
        let leadership = Arc::new(Leadership::new(&format!("replica-{epoch}")));
        leadership.lead_until(tokio::time::Instant::now() + until, epoch);
        let fence = Fence::led_by("regulator:leader", &leadership);
        RedisStore::new(client.clone(), Duration::from_secs(600), 10).fenced(fence)
    };
    let reader = RedisStore::new(client.clone(), Duration::from_secs(600), 10);
    let count = |stored: &[StoredKnobs], rps: f64| {
        stored
            .iter()
            .filter(|s| **s == StoredKnobs::Valid(k(rps)))
            .count()
    };

    // The old leader writes every throttle.
    let old = leader(1_000, Duration::from_secs(600));
    assert_eq!(old.read(&names, Knob::Rate).await.unwrap().len(), N);
    assert_eq!(old.write(&writes(10.0)).await.unwrap(), Written::All);
    // A new leader takes over: its tick reads every throttle and changes one.
    let new = leader(2_000, Duration::from_secs(600));
    new.read(&names, Knob::Rate).await.unwrap();
    let one = [change(&names[0], Some(k(10.0)), k(20.0))];
    assert_eq!(new.write(&one).await.unwrap(), Written::All);
    // The old leader, its write phase still under way, is refused on every throttle.
    assert_eq!(old.write(&writes(5.0)).await.unwrap(), Written::Fenced);
    let stored = reader.read(&names, Knob::Rate).await.unwrap();
    assert_eq!(count(&stored, 5.0), 0, "a stale write landed");
    assert_eq!(count(&stored, 10.0), N - 1);
    assert_eq!(stored[0], StoredKnobs::Valid(k(20.0)));

    // The new leader's deadline passes (a pause past its lease): with the highest epoch
    // still, it writes nothing more.
    let late = leader(3_000, Duration::ZERO);
    assert_eq!(late.write(&writes(7.0)).await.unwrap(), Written::Fenced);
    let stored = reader.read(&names, Knob::Rate).await.unwrap();
    assert_eq!(count(&stored, 7.0), 0, "a write after the deadline landed");
    assert_eq!(count(&stored, 10.0), N - 1);
}

fn regulator(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_regulator"))
        .args(args)
        .env_remove("REGULATOR_REDIS_URL")
        .env_remove("REGULATOR_REDIS_CLUSTER")
        .output()
        .expect("run regulator")
}

#[test]
fn the_cli_sets_shows_and_resets_on_a_cluster() {
    let mut cluster = cluster();
    let names = names_on_every_node(&mut cluster, 1);
    let seed = cluster.urls()[0].clone();
    for name in &names {
        let out = regulator(&[
            "set",
            name,
            "--rps",
            "7",
            "--burst",
            "1",
            "--window",
            "3",
            "--redis",
            &seed,
            "--cluster",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = regulator(&["status", "--json", "--redis", &seed, "--cluster"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for line in text.lines() {
        let _: serde_json::Value = serde_json::from_str(line).expect("status --json lines");
    }
    for name in &names {
        assert!(
            text.contains(&format!("\"{name}\"")),
            "{name} missing from {text}"
        );
    }
    for name in &names {
        let out = regulator(&["reset", name, "--redis", &seed, "--cluster"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let keys = KeyLayout { cluster: true };
    for name in &names {
        // Only the node that serves the key answers; the others redirect.
        let answers: Vec<i64> = (0..3)
            .filter_map(|i| {
                redis::cmd("EXISTS")
                    .arg(keys.knobs(name))
                    .query(&mut cluster.nodes()[i].connection())
                    .ok()
            })
            .collect();
        assert_eq!(answers, vec![0], "{name} reset");
    }
    // Without --cluster, the keys of a name that another node serves cannot be reached; the
    // error says what to do instead of only echoing MOVED.
    let elsewhere = (0..10_000)
        .map(|i| format!("x{i}"))
        .find(|n| owner(&mut cluster, &format!("throttle:{n}:knobs")) != 0)
        .expect("a name served by another node");
    let out = regulator(&[
        "set", &elsewhere, "--rps", "1", "--burst", "1", "--window", "1", "--redis", &seed,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--cluster"), "{err}");
}

#[tokio::test]
async fn every_limiter_decides_on_every_master() {
    use regulator::{ContinuousParams, LeakyParams, ScheduledParams, SemaphoreParams};
    let mut cluster = cluster();
    let names = names_on_every_node(&mut cluster, 1);
    let client = connect(&cluster).await;
    for name in &names {
        let leaky = client.leaky_bucket(
            name.as_str(),
            LeakyParams {
                rate: 0.001,
                capacity: 3.0,
                block: None,
            },
        );
        let mut allowed = 0;
        for _ in 0..4 {
            allowed += usize::from(leaky.consume(1.0).await.unwrap().allowed);
        }
        assert_eq!(allowed, 3, "{name}: a leaky bucket of 3 holds 3");

        let continuous = client.continuous_bucket(
            name.as_str(),
            ContinuousParams {
                tokens_per_period: 2.0,
                period: Duration::from_secs(1000),
            },
        );
        let mut allowed = 0;
        for _ in 0..3 {
            allowed += usize::from(continuous.allow(1.0).await.unwrap().allowed);
        }
        assert_eq!(allowed, 2, "{name}: a continuous bucket of 2 holds 2");

        let semaphore = client.semaphore(
            name.as_str(),
            SemaphoreParams {
                capacity: 2,
                hold: Duration::from_secs(30),
            },
        );
        let a = semaphore.try_acquire().await.unwrap().expect("first slot");
        let b = semaphore.try_acquire().await.unwrap().expect("second slot");
        assert!(
            semaphore.try_acquire().await.unwrap().is_none(),
            "{name}: full"
        );
        let state = client.get(name).await.unwrap();
        assert_eq!(state.kinds.holders, Some(2), "{name}: holders visible");
        a.release().await.unwrap();
        b.release().await.unwrap();

        let scheduled = client.scheduled_bucket(
            name.as_str(),
            ScheduledParams {
                capacity: 1,
                refill_every: Duration::from_secs(100),
                refill_amount: 1,
            },
        );
        let first = scheduled.reserve(1, Duration::ZERO).await.unwrap();
        assert!(first.wait.is_zero(), "{name}: the first token is there");
        let second = scheduled.reserve(1, Duration::ZERO).await.unwrap();
        assert!(
            second.wait > Duration::from_secs(90),
            "{name}: {:?}",
            second.wait
        );
    }
}

/// `regulator run` with `redis.cluster: true`: one templated policy over a gauge per tenant,
/// whose throttles' keys land on every master. Every throttle is overloaded, so the daemon cuts
/// each one's rps, writes a history entry beside its knobs, and holds the lease; `status`
/// through the CLI shows the change.
#[tokio::test]
async fn the_daemon_steers_throttles_on_every_master() {
    let mut cluster = cluster();
    let names = names_on_every_node(&mut cluster, 1);
    let exporter = Exporter::start().expect("start exporter");
    for name in &names {
        exporter.set(&format!("load{{tenant=\"{}\"}}", &name[1..]), 5.0);
    }
    let prometheus = PrometheusServer::start(&[exporter.target()]).expect("start prometheus");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("regulator.yaml");
    std::fs::write(
        &config,
        format!(
            "redis: {{ url: \"{}\", cluster: true }}\n\
             prometheus: {{ url: \"{}\", timeout: 1s }}\n\
             listen: \"127.0.0.1:{}\"\n\
             interval: 1s\n\
             leader: {{ lease: 3s }}\n\
             throttles:\n  \
               - name: t\n    \
                 defaults: {{ rps: 100 }}\n    \
                 bounds: {{ min_rps: 1, max_rps: 200 }}\n    \
                 signal: {{ query: 'load', target: 1, name_label: tenant }}\n    \
                 control: {{ law: aimd, increase: 50, decrease: 0.5 }}\n    \
                 on_no_data: hold\n",
            cluster.urls()[0],
            prometheus.url(),
            free_port(),
        ),
    )
    .unwrap();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_regulator"))
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start regulator");
    let client = connect(&cluster).await;
    let keys = KeyLayout { cluster: true };
    let start = Instant::now();
    let mut cut = HashSet::new();
    while cut.len() < names.len() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "cut after 60 s: {cut:?} of {names:?}"
        );
        assert!(daemon.try_wait().unwrap().is_none(), "the daemon exited");
        for name in &names {
            let state = client.get(name).await.expect("get");
            let rps = state.rps.as_deref().and_then(|r| r.parse::<f64>().ok());
            if rps.is_some_and(|rps| rps < 100.0) {
                cut.insert(name.clone());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for name in &names {
        let node = owner(&mut cluster, &keys.knobs(name));
        let history: i64 = redis::cmd("XLEN")
            .arg(keys.history(name))
            .query(&mut cluster.nodes()[node].connection())
            .unwrap();
        assert!(history >= 1, "{name}: no history entry beside its knobs");
    }
    let lease_holders = (0..3)
        .filter(|&i| {
            redis::cmd("EXISTS")
                .arg("regulator:leader")
                .query::<i64>(&mut cluster.nodes()[i].connection())
                .is_ok_and(|n| n == 1)
        })
        .count();
    assert_eq!(lease_holders, 1, "the lease is held, on one master");
    let status = regulator(&[
        "status",
        "--cluster",
        "--redis",
        &cluster.urls()[1],
        &names[2],
    ]);
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(
        table.contains(" ago: rps none -> 50 (overloaded"),
        "{table}"
    );
    let _ = daemon.kill();
    let _ = daemon.wait();
}
