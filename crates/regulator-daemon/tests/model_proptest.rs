//! The script against its pure Rust model ([`regulator::client::model`]) for random sequences
//! of (advance time, consume n, change knobs), on a real redis-server with the clock frozen.
//! Failing cases are persisted next to this file and committed.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use common::{T0, frozen_client, knobs, redis};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};
use regulator::client::model::{self, Bucket};
use regulator::{Knobs, Source, StoredKnobs, blocking};
use regulator_testing::RedisServer;

#[derive(Debug, Clone)]
enum Op {
    Advance {
        secs: i64,
        usec: u32,
    },
    Consume(f64),
    SetKnobs(Knobs),
    /// A knobs hash a person might type: `rps` present, other fields arbitrary text.
    SetRaw(String, Option<String>, Option<String>),
    ResetKnobs,
}

fn knobs_strategy() -> impl Strategy<Value = Knobs> {
    (
        prop::sample::select(vec![
            0.0, -1.0, 0.0001, 0.2, 0.5, 0.6, 1.0, 2.2, 5.0, 10.0, 33.3,
        ]),
        prop::sample::select(vec![0.0, 0.5, 1.0, 2.0, 3.3, 10.0]),
        prop::sample::select(vec![0.5, 1.0, 2.0, 2.5, 5.0, 10.0]),
    )
        .prop_map(|(rps, burst, window)| knobs(rps, burst, window))
}

fn raw_strategy() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop::sample::select(vec![
        "1", "2.5", "abc", "", "-5", "1e400", "0", " 3 ", "0x10", "nan",
    ]))
    .prop_map(|v| v.map(str::to_owned))
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0i64..12, 0u32..1_000_000).prop_map(|(secs, usec)| Op::Advance { secs, usec }),
        6 => prop::sample::select(vec![1.0, 1.0, 2.0, 3.0, 0.5, 7.25, 50.0, 1000.0]).prop_map(Op::Consume),
        2 => knobs_strategy().prop_map(Op::SetKnobs),
        1 => (prop::sample::select(vec!["2", "abc", "-1", "0.5"]), raw_strategy(), raw_strategy())
            .prop_map(|(r, b, w)| Op::SetRaw(r.to_owned(), b, w)),
        1 => Just(Op::ResetKnobs),
    ]
}

/// One throttle in Redis next to what the model believes it holds.
struct Harness<'a> {
    server: &'a RedisServer,
    client: &'a blocking::Client,
    bucket: blocking::TokenBucket,
    name: String,
    defaults: Knobs,
    now: i64,
    usec: u32,
    knobs: Option<(String, Option<String>, Option<String>)>,
    model: Bucket,
}

impl Harness<'_> {
    fn hset(&self, fields: &[(&str, &str)]) {
        let key = format!("throttle:{}:knobs", self.name);
        let _: () = self.server.cmd(&["DEL", &key]);
        let mut args = vec!["HSET", key.as_str()];
        for (field, value) in fields {
            args.extend([*field, *value]);
        }
        let _: () = self.server.cmd(&args);
    }

    fn apply(&mut self, op: Op) -> Result<(), TestCaseError> {
        match op {
            Op::Advance { secs, usec } => {
                self.now += secs;
                self.usec = usec;
                self.server.freeze_time(self.now, self.usec);
            }
            Op::SetKnobs(k) => {
                let (r, b, w) = (k.rps.to_string(), k.burst.to_string(), k.window.to_string());
                self.hset(&[("rps", &r), ("burst", &b), ("window", &w)]);
                self.knobs = Some((r, Some(b), Some(w)));
            }
            Op::SetRaw(r, b, w) => {
                let mut fields = vec![("rps", r.as_str())];
                fields.extend(b.as_deref().map(|b| ("burst", b)));
                fields.extend(w.as_deref().map(|w| ("window", w)));
                self.hset(&fields);
                self.knobs = Some((r, b, w));
            }
            Op::ResetKnobs => {
                self.client.reset_knobs(&self.name).unwrap();
                self.knobs = None;
            }
            Op::Consume(n) => self.consume(n)?,
        }
        Ok(())
    }

    fn consume(&mut self, n: f64) -> Result<(), TestCaseError> {
        let stored = self
            .knobs
            .as_ref()
            .map_or(StoredKnobs::Absent, |(r, b, w)| {
                StoredKnobs::from_fields(Some(r), b.as_deref(), w.as_deref())
            });
        let (effective, source) = match stored {
            StoredKnobs::Valid(k) => (k, Source::Knobs),
            StoredKnobs::Absent => (self.defaults, Source::Defaults),
            StoredKnobs::Invalid(_) => (self.defaults, Source::InvalidKnobs),
        };
        let want = model::consume(self.model, effective, self.now, self.usec, n);
        let got = self.bucket.consume(n).unwrap();
        prop_assert_eq!(got.allowed, want.allowed, "allowed; knobs {:?}", effective);
        prop_assert_eq!(got.tokens, want.tokens, "tokens; knobs {:?}", effective);
        prop_assert_eq!(got.source, source);
        prop_assert_eq!(got.capacity, want.capacity);
        let sleep = want.sleep.max(0.0);
        prop_assert!(
            (got.sleep.as_secs_f64() - sleep).abs() < 1e-6,
            "sleep {:?} vs {}",
            got.sleep,
            sleep
        );
        if let Some(b) = want.bucket {
            self.model = b;
            let t = b.tokens.unwrap_or_default();
            prop_assert!(
                (0.0..=want.capacity).contains(&t),
                "tokens {} within [0, capacity]",
                t
            );
        }
        let stored = self.client.get(&self.name).unwrap().bucket();
        prop_assert_eq!(stored, self.model, "stored bucket");
        Ok(())
    }
}

#[test]
fn script_matches_the_model() {
    let server = redis();
    let client = frozen_client(&server);
    let counter = AtomicU64::new(0);
    let config = Config {
        cases: 256,
        source_file: Some(file!()),
        failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel(
            "proptest-regressions",
        ))),
        ..Config::default()
    };
    let defaults = knobs(4.0, 1.5, 2.0);
    let strategy = (
        knobs_strategy(),
        prop::collection::vec(op_strategy(), 1..40),
    );
    TestRunner::new(config)
        .run(&strategy, |(initial, ops)| {
            let name = format!("prop-{}", counter.fetch_add(1, Ordering::Relaxed));
            server.freeze_time(T0, 0);
            let mut harness = Harness {
                server: &server,
                client: &client,
                bucket: client.token_bucket(&name, defaults),
                name,
                defaults,
                now: T0,
                usec: 0,
                knobs: None,
                model: Bucket::default(),
            };
            for op in std::iter::once(Op::SetKnobs(initial)).chain(ops) {
                harness.apply(op)?;
            }
            Ok(())
        })
        .unwrap();
}
