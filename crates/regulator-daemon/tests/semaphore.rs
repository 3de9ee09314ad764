//! The semaphore against a real redis-server: the `limiters` library's timing tables in real
//! time, and what it gets wrong done right: a crashed holder frees its own slot (and only its
//! own) when its lease runs out, nothing is leaked past `max_wait`, the capacity follows the
//! `concurrency` knob, down as well as up.
//!
//! Two tests start this binary again as a helper process (`helper_*`, ignored unless run with
//! `--ignored`, and inert without the `REGULATOR_SEMAPHORE_HELPER` variable): one to be killed
//! with SIGKILL while holding a slot, others to crowd the semaphore from several processes.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{T0, frozen_client, patient_client, redis};
use regulator::{Error, SemaphoreParams, Source};
use regulator_testing::RedisServer;

/// Set (to the Redis URL) in a helper process.
const HELPER: &str = "REGULATOR_SEMAPHORE_HELPER";
/// The lease a helper holds its slot with, in ms.
const HELPER_LEASE: &str = "REGULATOR_SEMAPHORE_LEASE_MS";

fn params(capacity: u32, lease_ms: u64) -> SemaphoreParams {
    SemaphoreParams {
        capacity,
        hold: Duration::from_millis(lease_ms),
    }
}

fn holders(server: &RedisServer, name: &str) -> i64 {
    server.cmd(&["ZCARD", &format!("throttle:{name}:holders")])
}

fn lease_of(server: &RedisServer, name: &str, id: &str) -> Option<i64> {
    server.cmd(&["ZSCORE", &format!("throttle:{name}:holders"), id])
}

/// `limiters`' table (`test_semaphore_runtimes`): n tasks each holding a capacity-c semaphore
/// for `hold` never finish sooner than `at_least`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtimes_never_beat_the_capacity() {
    let server = redis();
    let client = patient_client(&server.url(), false).await;
    for (n, capacity, hold, at_least) in [
        (5, 1, 0.2, 1.0),
        (4, 2, 0.25, 0.5),
        (5, 5, 0.1, 0.1),
        (3, 1, 0.2, 0.6),
    ] {
        let name = format!("runtimes-{n}-{capacity}");
        let semaphore = client.semaphore(&name, params(capacity, 10_000));
        let start = Instant::now();
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let semaphore = semaphore.clone();
                tokio::spawn(async move {
                    let permit = semaphore.acquire(Duration::ZERO).await.unwrap();
                    tokio::time::sleep(Duration::from_secs_f64(hold)).await;
                    permit.release().await.unwrap();
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let elapsed = start.elapsed().as_secs_f64();
        assert!(elapsed >= at_least, "{name}: {elapsed} s < {at_least} s");
        // Hand-overs are noticed within a poll (50 ms), not a lease.
        assert!(elapsed < at_least + 1.0, "{name}: {elapsed} s");
        assert_eq!(holders(&server, &name), 0);
    }
}

/// `limiters`' `test_max_sleep`: 3 holders × 1 s, capacity 1, max wait 1 s: one raises. Ours
/// holds nothing after it raises, and never waits much past `max_wait`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_holders_of_one_second_exceed_a_one_second_wait() {
    let server = redis();
    let client = patient_client(&server.url(), false).await;
    let semaphore = client.semaphore("max-wait", params(1, 10_000));
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let semaphore = semaphore.clone();
            tokio::spawn(async move {
                let permit = semaphore.acquire(Duration::from_secs(1)).await?;
                tokio::time::sleep(Duration::from_secs(1)).await;
                permit.release().await
            })
        })
        .collect();
    let mut exceeded = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => {}
            Err(Error::MaxWaitExceeded { waited, .. }) => {
                exceeded += 1;
                assert!(
                    waited >= Duration::from_millis(950) && waited < Duration::from_millis(1500),
                    "waited {waited:?}"
                );
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!((1..=2).contains(&exceeded), "{exceeded} exceeded");
    assert_eq!(holders(&server, "max-wait"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_held_after_max_wait_exceeded() {
    let server = redis();
    let client = patient_client(&server.url(), false).await;
    let semaphore = client.semaphore("no-leak", params(1, 60_000));
    let held = semaphore.acquire(Duration::ZERO).await.unwrap();
    for _ in 0..3 {
        let e = semaphore
            .acquire(Duration::from_millis(150))
            .await
            .unwrap_err();
        let Error::MaxWaitExceeded { retry_after, .. } = e else {
            panic!("{e}")
        };
        // The hint is the time until the holder's lease runs out.
        assert!(retry_after > Duration::from_secs(50), "{retry_after:?}");
        assert!(semaphore.try_acquire().await.unwrap().is_none());
    }
    assert_eq!(holders(&server, "no-leak"), 1);
    held.release().await.unwrap();
    assert_eq!(holders(&server, "no-leak"), 0);
}

fn calls(server: &RedisServer, command: &str) -> u64 {
    let info: String = server.cmd(&["INFO", "commandstats"]);
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

/// A call in flight when the wait runs out is granted after the deadline (the server is
/// paused until then); the acquire gives that slot back before it returns the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_granted_as_the_wait_runs_out_is_given_back() {
    let server = redis();
    let client = patient_client(&server.url(), false).await;
    let semaphore = client.semaphore("in-flight", params(2, 60_000));
    // Load the scripts, so the paused call is the grant itself, not a NOSCRIPT reply.
    let warm = semaphore.try_acquire().await.unwrap().unwrap();
    warm.release().await.unwrap();
    let grants = calls(&server, "zadd");

    let _: String = server.cmd(&["CLIENT", "PAUSE", "400", "ALL"]);
    let start = Instant::now();
    let e = semaphore
        .acquire(Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::MaxWaitExceeded { .. }), "{e}");
    // It returned only once the release behind the grant was answered, after the pause.
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        calls(&server, "zadd"),
        grants + 1,
        "the late call was granted"
    );
    assert_eq!(holders(&server, "in-flight"), 0, "and given back");
}

/// A helper process, killed when the test ends however it ends.
struct Helper(Child);

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_helper(test: &str, url: &str, lease_ms: u64) -> Helper {
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            test,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER, url)
        .env(HELPER_LEASE, lease_ms.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Helper(child)
}

fn helper_env() -> Option<(String, u64)> {
    let url = std::env::var(HELPER).ok()?;
    let lease = std::env::var(HELPER_LEASE).unwrap().parse().unwrap();
    Some((url, lease))
}

const CRASH: &str = "crash";

/// Helper process: holds a slot of `CRASH` until killed.
#[test]
#[ignore = "a helper process that a_killed_holder_frees_only_its_own_slot runs"]
fn helper_hold_until_killed() {
    let Some((url, lease)) = helper_env() else {
        return;
    };
    let client = regulator::blocking::Client::connect(&url).unwrap();
    let permit = client
        .semaphore(CRASH, params(3, lease))
        .acquire(Duration::ZERO)
        .unwrap();
    println!("HOLDING {}", permit.id());
    loop {
        std::thread::park();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_holder_frees_only_its_own_slot_when_its_lease_runs_out() {
    let server = redis();
    let client = patient_client(&server.url(), false).await;
    let semaphore = client.semaphore(CRASH, params(3, 60_000));
    let mine = [
        semaphore.acquire(Duration::ZERO).await.unwrap(),
        semaphore.acquire(Duration::ZERO).await.unwrap(),
    ];

    let lease = Duration::from_millis(1500);
    let mut child = spawn_helper("helper_hold_until_killed", &server.url(), 1500);
    let stdout = child.0.stdout.take().unwrap();
    let read = tokio::task::spawn_blocking(move || {
        let line = BufReader::new(stdout)
            .lines()
            .map(Result::unwrap)
            // libtest prints the test's name on the same line.
            .find_map(|l| l.split_once("HOLDING ").map(|(_, id)| id.trim().to_owned()))
            .expect("the helper holds a slot");
        (line, Instant::now())
    });
    let (theirs, read_at) = tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("the helper holds a slot within a minute")
        .unwrap();
    child.0.kill().unwrap();
    child.0.wait().unwrap();

    // The dead holder's slot stays taken until its lease runs out...
    assert!(semaphore.try_acquire().await.unwrap().is_none());
    assert!(lease_of(&server, CRASH, &theirs).is_some());
    // ... and then comes back, to a waiter.
    let third = semaphore.acquire(Duration::from_secs(10)).await.unwrap();
    let waited = read_at.elapsed();
    assert!(
        waited >= lease.saturating_sub(Duration::from_millis(500))
            && waited < lease + Duration::from_secs(2),
        "slot came back after {waited:?}"
    );
    assert!(lease_of(&server, CRASH, &theirs).is_none());
    for p in &mine {
        assert!(lease_of(&server, CRASH, p.id()).is_some(), "ours are kept");
    }
    assert_eq!(holders(&server, CRASH), 3);
    for p in mine.into_iter().chain([third]) {
        p.release().await.unwrap();
    }
    assert_eq!(holders(&server, CRASH), 0);
}

const CROWD: &str = "crowd";
const CROWD_CAPACITY: i64 = 3;
const CROWD_TASKS: usize = 8;
const CROWD_ROUNDS: usize = 8;

/// Counts holders from outside the semaphore: `crowd:inside` goes up on entry and down on
/// exit, `crowd:max` keeps the highest count seen.
const ENTER: &str = "local n = redis.call('INCR', KEYS[1]) \
     if n > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], n) end \
     return n";

/// Runs `CROWD_TASKS` tasks, each taking the semaphore `CROWD_ROUNDS` times.
async fn crowd(url: &str) {
    let client = patient_client(url, false).await;
    let capacity = u32::try_from(CROWD_CAPACITY).unwrap();
    let semaphore = client.semaphore(CROWD, params(capacity, 30_000));
    let counter = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let enter = redis::Script::new(ENTER);
    let tasks: Vec<_> = (0..CROWD_TASKS)
        .map(|_| {
            let (semaphore, mut counter, enter) =
                (semaphore.clone(), counter.clone(), enter.clone());
            tokio::spawn(async move {
                for _ in 0..CROWD_ROUNDS {
                    let permit = semaphore.acquire(Duration::ZERO).await.unwrap();
                    let inside: i64 = enter
                        .key("crowd:inside")
                        .key("crowd:max")
                        .invoke_async(&mut counter)
                        .await
                        .unwrap();
                    assert!(inside <= CROWD_CAPACITY);
                    tokio::time::sleep(Duration::from_millis(3)).await;
                    let _: i64 = redis::cmd("DECR")
                        .arg("crowd:inside")
                        .query_async(&mut counter)
                        .await
                        .unwrap();
                    permit.release().await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// Helper process: one crowd.
#[test]
#[ignore = "a helper process that many_processes_never_exceed_the_capacity runs"]
fn helper_crowd() {
    let Some((url, _)) = helper_env() else {
        return;
    };
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(crowd(&url));
    println!("DONE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_processes_never_exceed_the_capacity() {
    let server = redis();
    let others: Vec<_> = (0..2)
        .map(|_| spawn_helper("helper_crowd", &server.url(), 0))
        .collect();
    crowd(&server.url()).await;
    for mut other in others {
        let stdout = other.0.stdout.take().unwrap();
        // Read to the end: a closed pipe would fail the helper's last writes.
        let done = tokio::task::spawn_blocking(move || {
            let mut out = String::new();
            BufReader::new(stdout).read_to_string(&mut out).unwrap();
            out.contains("DONE")
        });
        let done = tokio::time::timeout(Duration::from_secs(120), done)
            .await
            .expect("the helpers finish within two minutes")
            .unwrap();
        assert!(done, "a helper failed");
        assert!(other.0.wait().unwrap().success());
    }
    let max: i64 = server.cmd(&["GET", "crowd:max"]);
    let inside: i64 = server.cmd(&["GET", "crowd:inside"]);
    assert_eq!(max, CROWD_CAPACITY, "never above capacity, and reached it");
    assert_eq!(inside, 0);
    assert_eq!(holders(&server, CROWD), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concurrency_knob_shrinks_the_capacity_at_once() {
    let server = redis();
    let client = patient_client(&server.url(), false).await;
    let semaphore = client.semaphore("shrink", params(3, 60_000));
    let mut held = Vec::new();
    for _ in 0..3 {
        let p = semaphore.try_acquire().await.unwrap().unwrap();
        assert_eq!((p.capacity(), p.source()), (3, Source::Defaults));
        held.push(p);
    }
    let _: i64 = server.cmd(&["HSET", "throttle:shrink:knobs", "concurrency", "1"]);
    // Nobody is evicted, and nobody enters while the count is at or above the new capacity.
    while let Some(p) = held.pop() {
        assert!(semaphore.try_acquire().await.unwrap().is_none());
        p.release().await.unwrap();
    }
    let one = semaphore.try_acquire().await.unwrap().unwrap();
    assert_eq!((one.capacity(), one.source()), (1, Source::Knobs));
    assert!(semaphore.try_acquire().await.unwrap().is_none());

    // An unusable knob is reported, and the caller's capacity applies.
    for bad in ["0", "2.5", "-1", "many", "inf"] {
        let _: i64 = server.cmd(&["HSET", "throttle:shrink:knobs", "concurrency", bad]);
        let p = semaphore.try_acquire().await.unwrap().unwrap();
        assert_eq!(
            (p.capacity(), p.source()),
            (3, Source::InvalidKnobs),
            "{bad}"
        );
        p.release().await.unwrap();
    }
    one.release().await.unwrap();
    assert_eq!(holders(&server, "shrink"), 0);
}

#[test]
fn renew_extends_the_lease_and_fails_once_it_ran_out() {
    let server = redis();
    let client = frozen_client(&server);
    let semaphore = client.semaphore("renew", params(1, 2000));
    let ms = |s: i64, plus: i64| Some(s * 1000 + plus);

    let p = semaphore.acquire(Duration::ZERO).unwrap();
    assert_eq!(lease_of(&server, "renew", p.id()), ms(T0, 2000));
    server.freeze_time(T0 + 1, 500_000);
    p.renew().unwrap();
    assert_eq!(lease_of(&server, "renew", p.id()), ms(T0 + 1, 2500));
    server.freeze_time(T0 + 3, 400_000);
    assert!(semaphore.try_acquire().unwrap().is_none(), "still held");

    server.freeze_time(T0 + 3, 600_000);
    let e = p.renew().unwrap_err();
    assert!(
        matches!(e, Error::PermitExpired { ref name } if name == "renew"),
        "{e}"
    );
    assert_eq!(
        lease_of(&server, "renew", p.id()),
        None,
        "the lost lease is gone"
    );
    let q = semaphore
        .try_acquire()
        .unwrap()
        .expect("the slot is free again");
    assert!(matches!(p.release(), Err(Error::PermitExpired { .. })));

    // Releasing a permit whose lease ran out reports it, and still removes it.
    server.freeze_time(T0 + 10, 0);
    assert!(matches!(q.release(), Err(Error::PermitExpired { .. })));
    assert_eq!(holders(&server, "renew"), 0);
}

#[test]
fn bad_input_is_rejected_before_anything_is_written() {
    let server = redis();
    let client = regulator::blocking::Client::connect(&server.url()).unwrap();
    let ok = params(1, 1000);
    for (name, p) in [
        ("", ok),
        ("zero-capacity", params(0, 1000)),
        ("zero-lease", params(1, 0)),
        (
            "sub-ms-lease",
            SemaphoreParams {
                hold: Duration::from_micros(500),
                ..ok
            },
        ),
        ("huge-lease", params(1, u64::from(u32::MAX) + 1)),
    ] {
        let semaphore = client.semaphore(name, p);
        for result in [
            semaphore.acquire(Duration::ZERO).map(drop),
            semaphore.try_acquire().map(drop),
        ] {
            assert!(
                matches!(result, Err(Error::InvalidArgument(_))),
                "{name}: {result:?}"
            );
        }
    }
    let keys: i64 = server.cmd(&["DBSIZE"]);
    assert_eq!(keys, 0);
}
