//! Loop timing under paused tokio time: ticks every interval (±10%), backs off after
//! failures, recovers, and stops only between ticks.

use std::sync::atomic::Ordering;

use super::*;
use crate::config::parse;
use crate::fakes::{FakeSource, MemStore, series};
use crate::reconcile::Policy;

#[derive(Default)]
struct Fake {
    source: FakeSource,
    store: MemStore,
}

impl Sides for Fake {
    type Source = FakeSource;
    type Store = MemStore;
    fn source(&self) -> &FakeSource {
        &self.source
    }
    fn store(&self) -> &MemStore {
        &self.store
    }
}

const CONFIG: &str = r"
interval: 10s
throttles:
  - name: db
    defaults: { rps: 100 }
    bounds: { min_rps: 10, max_rps: 200 }
    signal: { query: 'latency', target: 0.25 }
";

fn start(
    fake: &Arc<Fake>,
) -> (
    tokio::task::JoinHandle<PolicyState>,
    CancellationToken,
    Arc<Shared>,
) {
    let config = parse(CONFIG, "test").unwrap();
    let policy = Arc::new(Policy {
        throttle: config.throttles[0].clone(),
        interval: config.interval,
    });
    let shared = Arc::new(Shared::new(Arc::new(Metrics::new()), false, ["db"]));
    let (_tx, rx) = watch::channel(Arc::clone(fake));
    let token = CancellationToken::new();
    let task = tokio::spawn(drive(
        PolicyState::new(policy),
        rx,
        Arc::clone(&shared),
        token.clone(),
    ));
    (task, token, shared)
}

fn queries(fake: &Fake) -> usize {
    fake.source.queries.load(Ordering::Relaxed)
}

#[tokio::test(start_paused = true)]
async fn ticks_every_interval_within_the_jitter() {
    let fake = Arc::new(Fake::default());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    fake.source.set(Ok(vec![series(0.25, now, &[])]));
    let (task, token, shared) = start(&fake);
    tokio::time::sleep(Duration::from_millis(1001)).await;
    assert_eq!(queries(&fake), 1, "the first tick comes within 1 s");
    assert_eq!(shared.pending_first_ticks(), 0);
    // Ten more intervals of 9..11 s: between 9 and 11 more ticks after 100 s.
    tokio::time::sleep(Duration::from_secs(100)).await;
    let n = queries(&fake);
    assert!((10..=12).contains(&n), "{n} ticks in 101 s at 10 s ± 10%");
    token.cancel();
    let state = task.await.unwrap();
    assert_eq!(state.throttles().count(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failing_store_backs_off_and_the_task_recovers() {
    let fake = Arc::new(Fake::default());
    *fake.store.down.lock().unwrap() = true;
    let (task, token, shared) = start(&fake);
    // Failures at ~0, then retries after 1, 2, 4, 8, 16 s (each ±10%): 6 ticks by 35 s,
    // where a fixed 1 s retry would have made about 35.
    tokio::time::sleep(Duration::from_secs(35)).await;
    let n = queries(&fake);
    assert!((5..=7).contains(&n), "{n} attempts in 35 s");
    assert_eq!(
        shared.pending_first_ticks(),
        0,
        "ready after a first tick, failed or not: readiness does not follow the store"
    );
    let text = shared.metrics.encode();
    assert!(
        text.contains(r#"regulator_errors_total{kind="timeout"}"#),
        "{text}"
    );
    // The cap: never more than 30 s apart.
    tokio::time::sleep(Duration::from_secs(100)).await;
    let m = queries(&fake);
    assert!(m - n >= 3, "{} attempts in 100 s once capped", m - n);
    *fake.store.down.lock().unwrap() = false;
    tokio::time::sleep(Duration::from_secs(35)).await;
    assert_eq!(shared.pending_first_ticks(), 0);
    let text = shared.metrics.encode();
    assert!(
        text.contains(r#"regulator_knob{throttle="db",knob="rps"} 100.0"#),
        "no signal: hold the defaults\n{text}"
    );
    assert_eq!(
        fake.store.rps("db"),
        None,
        "not the leader: nothing written"
    );
    token.cancel();
    task.await.unwrap();
}

#[test]
fn backoff_doubles_from_a_second_up_to_the_cap() {
    let ten = Duration::from_secs(10);
    let got: Vec<u64> = (0..8).map(|f| retry_after(ten, f).as_secs()).collect();
    assert_eq!(got, [10, 1, 2, 4, 8, 16, 30, 30]);
    let fast = Duration::from_millis(200);
    assert_eq!(retry_after(fast, 1), fast);
    assert_eq!(retry_after(fast, 40), Duration::from_secs(30));
    for _ in 0..1000 {
        let j = jitter(ten);
        assert!(j >= Duration::from_secs(9) && j <= Duration::from_secs(11));
    }
}

#[test]
fn no_interval_however_long_makes_the_schedule_panic() {
    let now = Instant::now();
    for d in [
        Duration::MAX,
        Duration::from_secs(u64::MAX / 2),
        Duration::ZERO,
    ] {
        let j = jitter(d);
        assert!(j >= d.mul_f64(0.9).min(d), "{j:?} for {d:?}");
        assert!(later(now, j) >= now);
        assert!(later(now, retry_after(d, 3)) >= now);
        let _ = first_delay(d);
    }
}
