//! Shared set-up for the integration tests.
#![allow(dead_code)]

use regulator::{Knobs, blocking};
use regulator_testing::RedisServer;

/// Stores `k` as the throttle's knobs, as the daemon or `regulator set` would.
pub fn set_knobs(server: &RedisServer, name: &str, k: Knobs) {
    let key = format!("throttle:{name}:knobs");
    let (r, b, w) = (k.rps.to_string(), k.burst.to_string(), k.window.to_string());
    let _: () = server.cmd(&["HSET", &key, "rps", &r, "burst", &b, "window", &w]);
}

/// A Unix second far from zero, as Redis TIME would give.
pub const T0: i64 = 1_700_000_000;

pub fn redis() -> RedisServer {
    RedisServer::start().expect("start redis-server")
}

/// A blocking client running the frozen-clock scripts, with the clock frozen at `T0`.
pub fn frozen_client(server: &RedisServer) -> blocking::Client {
    server.freeze_time(T0, 0);
    blocking::Client::from_builder(regulator::Client::builder(&server.url()).frozen_time(true))
        .expect("connect")
}

pub fn knobs(rps: f64, burst: f64, window: f64) -> Knobs {
    Knobs { rps, burst, window }
}

/// limitlion's own test grid.
pub fn grid() -> impl Iterator<Item = Knobs> {
    [1.0, 2.0, 5.0, 10.0].into_iter().flat_map(|window| {
        [1.0, 2.0, 3.3, 10.0].into_iter().flat_map(move |burst| {
            [0.0001, 0.2, 0.5, 0.6, 1.0, 2.0, 2.2, 5.0, 10.0]
                .into_iter()
                .map(move |rps| knobs(rps, burst, window))
        })
    })
}

pub fn name(prefix: &str, k: Knobs) -> String {
    format!("{prefix}-{}-{}-{}", k.rps, k.burst, k.window)
}

pub mod daemon_process;
pub mod stack;

/// An async client patient enough for a starved CI machine (5 s per call), for tests about
/// counts and leases rather than latency; `frozen` runs the frozen-clock scripts.
pub async fn patient_client(url: &str, frozen: bool) -> regulator::Client {
    regulator::Client::builder(url)
        .frozen_time(frozen)
        .call_timeout(std::time::Duration::from_secs(5))
        .connect()
        .await
        .expect("connect")
}

/// Asserts that the server holds nothing but the frozen clock's keys.
pub fn assert_nothing_written(server: &RedisServer) {
    let mut keys: Vec<String> = server.cmd(&["KEYS", "*"]);
    keys.sort();
    assert_eq!(
        keys,
        ["frozen_microsecond", "frozen_second"],
        "nothing written"
    );
}

/// Runs `tasks` async tasks on `runtime` and `threads` OS threads at once, each making `calls`
/// decisions with the call its factory makes (`task()` for a task, `thread()` for a thread),
/// and returns how many were allowed: a count kept outside the limiter. A task's call returns
/// a future that owns what it needs (a clone of the limiter).
pub fn crowd<T, F, H>(
    runtime: &tokio::runtime::Runtime,
    (tasks, threads, calls): (usize, usize, usize),
    task: impl Fn() -> T,
    thread: impl Fn() -> H,
) -> u64
where
    T: FnMut() -> F + Send + 'static,
    F: std::future::Future<Output = bool> + Send + 'static,
    H: FnMut() -> bool + Send + 'static,
{
    let tasks: Vec<_> = (0..tasks)
        .map(|_| {
            let mut call = task();
            runtime.spawn(async move {
                let mut allowed = 0;
                for _ in 0..calls {
                    allowed += u64::from(call().await);
                }
                allowed
            })
        })
        .collect();
    let threads: Vec<_> = (0..threads)
        .map(|_| {
            let mut call = thread();
            std::thread::spawn(move || (0..calls).map(|_| u64::from(call())).sum::<u64>())
        })
        .collect();
    let mut allowed: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    runtime.block_on(async {
        for t in tasks {
            allowed += t.await.unwrap();
        }
    });
    allowed
}
