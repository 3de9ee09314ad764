//! Two processes × 16 tasks on one throttle for several windows, in real time: the total
//! allowed never exceeds the full bucket plus one refill per elapsed window, and reaches it
//! when demand exceeds supply.
//!
//! The second process is this test binary run again with `REGULATOR_WORKER` set, so it
//! exercises a separate connection, runtime and address space.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{knobs, redis};

const NAME: &str = "crowd";
const TASKS: usize = 16;
const RPS: f64 = 50.0;
const BURST: f64 = 1.0;
const WINDOW: f64 = 1.0;
const RUN: Duration = Duration::from_millis(3_600);

/// Runs `TASKS` tasks hammering the throttle until `RUN` has passed; returns the allowed count.
async fn hammer(url: &str) -> u64 {
    // This test is about conservation, not latency: a starved CI machine must not turn a slow
    // call into a failure.
    let client = regulator::Client::builder(url)
        .call_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    let allowed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let bucket = client.token_bucket(NAME, knobs(RPS, BURST, WINDOW));
            let (allowed, stop) = (allowed.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let d = bucket.consume(1.0).await.unwrap();
                    if d.allowed {
                        allowed.fetch_add(1, Ordering::Relaxed);
                    } else {
                        // Demand stays above supply: retry well before the window ends.
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(RUN).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    allowed.load(Ordering::Relaxed)
}

/// The second process's body, run only by the test below (with `--ignored`).
#[tokio::test]
#[ignore = "a helper process that two_processes_never_exceed_the_budget_and_reach_it runs"]
async fn worker_process() {
    let Ok(url) = std::env::var("REGULATOR_WORKER") else {
        return;
    };
    println!("ALLOWED={}", hammer(&url).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_never_exceed_the_budget_and_reach_it() {
    let server = redis();
    let client = regulator::Client::connect(&server.url()).await.unwrap();
    let bucket = client.token_bucket(NAME, knobs(RPS, BURST, WINDOW));
    // Anchor the bucket before the crowd arrives, so the budget is known exactly, and empty
    // it: a full bucket would lose its first refill to the capacity cap (by design) should the
    // crowd be slow to start (spawning a process on a starved CI machine took over a window
    // once), and the count below would be one refill short.
    let first = bucket.consume(RPS * BURST * WINDOW).await.unwrap();
    assert!(first.allowed);
    assert_eq!(first.tokens, 0.0);
    let anchored = (RPS * BURST * WINDOW) as u64;
    let anchor: f64 = client
        .get(NAME)
        .await
        .unwrap()
        .refreshed
        .unwrap()
        .parse()
        .unwrap();

    let other = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "worker_process",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("REGULATOR_WORKER", server.url())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let here = hammer(&server.url()).await;
    let out = other.wait_with_output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let there: u64 = stdout
        .lines()
        .find_map(|l| l.split("ALLOWED=").nth(1))
        .map_or_else(
            || panic!("worker printed no count: {stdout}"),
            |rest| rest.trim_end_matches(|c: char| !c.is_ascii_digit()),
        )
        .parse()
        .unwrap();

    let state = client.get(NAME).await.unwrap();
    let refreshed: f64 = state.refreshed.unwrap().parse().unwrap();
    let left: f64 = state.tokens.unwrap().parse().unwrap();
    let windows = ((refreshed - anchor) / WINDOW) as u64;
    let refill = (RPS * WINDOW).ceil() as u64;
    let capacity = (RPS * BURST * WINDOW).ceil() as u64;
    let total = here + there;

    // Both processes ran the whole time: at least 3 windows passed.
    assert!(windows >= 3, "only {windows} windows elapsed");
    assert!(here > 0 && there > 0, "here {here}, there {there}");
    // Conservation: every token handed out came from the bucket or a refill.
    assert_eq!(
        total + anchored,
        capacity + windows * refill - left as u64,
        "allowed {total} (+{anchored} anchor), {windows} refills, {left} left"
    );
    // Never above the refills; and demand used every window but possibly the last.
    assert!(total <= windows * refill);
    assert!(total + refill >= windows * refill, "allowed {total}");
}
