//! The lease script (`lua/token_bucket_lease.lua`) against its pure Rust model
//! ([`regulator::client::model::lease`]) for random sequences of (advance time, change knobs,
//! reserve, give back what a lease holds or more, give back twice, forge an id), on a real
//! redis-server with the clock frozen. Whatever a client says, the bucket never holds more than
//! the model allows: a give-back restores at most what its lease reserved, once.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use common::{T0, knobs, redis, set_knobs};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};
use regulator::Knobs;
use regulator::client::model::{self, Bucket, LeaseBook, LeaseCall};
use regulator_testing::{RedisServer, frozen_script};

#[derive(Debug, Clone, Copy)]
enum Op {
    Advance {
        secs: i64,
        usec: u32,
    },
    SetKnobs(Knobs),
    Reserve {
        requested: f64,
        wanted: f64,
        share: f64,
    },
    /// Gives back `factor` × what the lease at `which` (of those held) reserved, and takes
    /// `requested` in the same call.
    GiveBack {
        which: usize,
        factor: f64,
        requested: f64,
    },
    /// A give-back naming an id the script never gave.
    Forge {
        id: &'static str,
        returned: f64,
    },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let knobs = (
        prop::sample::select(vec![0.0, -1.0, 0.2, 1.0, 2.5, 10.0, 33.3]),
        prop::sample::select(vec![0.5, 1.0, 2.0, 3.3]),
        prop::sample::select(vec![0.5, 1.0, 2.0, 5.0]),
    )
        .prop_map(|(r, b, w)| knobs(r, b, w));
    prop_oneof![
        3 => (0i64..6, 0u32..1_000_000).prop_map(|(secs, usec)| Op::Advance { secs, usec }),
        1 => knobs.prop_map(Op::SetKnobs),
        5 => (
            prop::sample::select(vec![1.0, 2.0, 0.5, 7.25]),
            prop::sample::select(vec![0.0, 1.0, 5.0, 20.0, 1000.0]),
            prop::sample::select(vec![0.01, 0.1, 0.5, 1.0]),
        )
            .prop_map(|(requested, wanted, share)| Op::Reserve { requested, wanted, share }),
        4 => (
            0usize..4,
            prop::sample::select(vec![0.0, 0.5, 1.0, 3.0, 1000.0]),
            prop::sample::select(vec![0.0, 0.0, 1.0]),
        )
            .prop_map(|(which, factor, requested)| Op::GiveBack { which, factor, requested }),
        1 => (
            prop::sample::select(vec!["next", "anchor", "0", "-1", "99", "1.5"]),
            prop::sample::select(vec![1.0, 500.0]),
        )
            .prop_map(|(id, returned)| Op::Forge { id, returned }),
    ]
}

/// One bucket in Redis next to what the model believes of it and of its leases.
struct Harness<'a> {
    server: &'a RedisServer,
    script: &'a str,
    name: String,
    defaults: Knobs,
    knobs: Option<Knobs>,
    now: i64,
    usec: u32,
    bucket: Bucket,
    book: LeaseBook,
    /// Leases granted and not yet given back: anchor ("%.17g" as the script said), id.
    held: Vec<(String, f64, u64)>,
}

fn text(v: &redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8(b.clone()).unwrap(),
        redis::Value::Int(i) => i.to_string(),
        other => panic!("{other:?}"),
    }
}

fn number(v: &redis::Value) -> f64 {
    text(v).parse().unwrap()
}

impl Harness<'_> {
    fn knobs(&self) -> Knobs {
        self.knobs.unwrap_or(self.defaults)
    }

    /// One script call with `returned`, lease (anchor text, id text), requested, wanted, share.
    fn call(&self, args: [&str; 6]) -> Vec<redis::Value> {
        let (bucket, knobs_key, leases) = (
            format!("throttle:{}", self.name),
            format!("throttle:{}:knobs", self.name),
            format!("throttle:{}:leases", self.name),
        );
        let d = self.defaults;
        let (r, b, w) = (d.rps.to_string(), d.burst.to_string(), d.window.to_string());
        let [returned, anchor, requested, wanted, share, id] = args;
        self.server.cmd(&[
            "EVAL",
            self.script,
            "3",
            &bucket,
            &knobs_key,
            &leases,
            &r,
            &b,
            &w,
            "0",
            returned,
            anchor,
            requested,
            wanted,
            share,
            id,
        ])
    }

    fn check(
        &mut self,
        call: LeaseCall,
        args: [&str; 6],
    ) -> Result<Option<(String, f64, u64)>, TestCaseError> {
        let want = model::lease(
            self.bucket,
            &self.book,
            self.knobs(),
            (self.now, self.usec),
            call,
        );
        let got = self.call(args);
        prop_assert_eq!(got.len(), 8, "{:?}", got);
        prop_assert_eq!(number(&got[0]), want.granted, "granted");
        prop_assert_eq!(number(&got[1]), want.tokens, "tokens");
        prop_assert_eq!(number(&got[6]), want.restored, "restored");
        let capacity = if want.capacity.is_infinite() {
            -1.0
        } else {
            want.capacity
        };
        prop_assert_eq!(number(&got[4]), capacity, "capacity");
        let sleep = (want.sleep * 1e6 + 0.5).floor();
        prop_assert!(
            (number(&got[2]) - sleep).abs() <= 1.0,
            "sleep {:?} vs {}",
            got[2],
            sleep
        );
        if let Some(b) = want.bucket {
            self.bucket = b;
        }
        self.book = want.book;
        let stored: (Option<String>, Option<String>) = self.server.cmd(&[
            "HMGET",
            &format!("throttle:{}", self.name),
            "tokens",
            "refreshed",
        ]);
        let parse = |v: Option<String>| v.map(|v| v.parse::<f64>().unwrap());
        prop_assert_eq!(
            Bucket {
                tokens: parse(stored.0),
                refreshed: parse(stored.1)
            },
            self.bucket,
            "stored bucket"
        );
        let leases: Vec<String> = self
            .server
            .cmd(&["HGETALL", &format!("throttle:{}:leases", self.name)]);
        let mut records = std::collections::BTreeMap::new();
        let (mut anchor, mut next) = (None, 0);
        for pair in leases.chunks(2) {
            match pair[0].as_str() {
                "anchor" => anchor = Some(pair[1].parse::<f64>().unwrap()),
                "next" => next = pair[1].parse().unwrap(),
                id => {
                    records.insert(id.parse::<u64>().unwrap(), pair[1].parse::<f64>().unwrap());
                }
            }
        }
        if next > 0 {
            prop_assert_eq!(
                LeaseBook {
                    anchor,
                    next,
                    leases: records
                },
                self.book.clone(),
                "lease records"
            );
        }
        Ok(want.lease.map(|(a, id)| (text(&got[5]), a, id)))
    }

    fn apply(&mut self, op: Op) -> Result<(), TestCaseError> {
        match op {
            Op::Advance { secs, usec } => {
                self.now += secs;
                self.usec = usec;
                self.server.freeze_time(self.now, self.usec);
            }
            Op::SetKnobs(k) => {
                set_knobs(self.server, &self.name, k);
                self.knobs = Some(k);
            }
            Op::Reserve {
                requested,
                wanted,
                share,
            } => {
                let call = LeaseCall {
                    returned: 0.0,
                    lease: None,
                    requested,
                    wanted,
                    share,
                };
                let (r, w, s) = (requested.to_string(), wanted.to_string(), share.to_string());
                if let Some(l) = self.check(call, ["0", "", &r, &w, &s, ""])? {
                    self.held.push(l);
                }
            }
            Op::GiveBack {
                which,
                factor,
                requested,
            } => {
                if self.held.is_empty() {
                    return Ok(());
                }
                let (anchor_text, anchor, id) = self.held[which % self.held.len()].clone();
                let reserved = self.book.leases.get(&id).copied().unwrap_or(1.0);
                let returned = reserved * factor;
                let call = LeaseCall {
                    returned,
                    lease: Some((anchor, id)),
                    requested,
                    wanted: requested,
                    share: 1.0,
                };
                let (ret, req, idt) = (returned.to_string(), requested.to_string(), id.to_string());
                if let Some(l) = self.check(call, [&ret, &anchor_text, &req, &req, "1", &idt])? {
                    self.held.push(l);
                }
                // Kept in `held`: a later give-back of the same lease must restore nothing.
            }
            Op::Forge { id, returned } => {
                let anchor_text = self.held.last().map_or(String::new(), |l| l.0.clone());
                let call = LeaseCall {
                    returned,
                    lease: None,
                    requested: 0.0,
                    wanted: 0.0,
                    share: 1.0,
                };
                let ret = returned.to_string();
                self.check(call, [&ret, &anchor_text, "0", "0", "1", id])?;
            }
        }
        Ok(())
    }
}

#[test]
fn the_lease_script_matches_its_model() {
    let server = redis();
    let script =
        frozen_script(&regulator::client::scripts::source("token_bucket_lease.lua").unwrap());
    let counter = AtomicU64::new(0);
    let config = Config {
        cases: 192,
        source_file: Some(file!()),
        failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel(
            "proptest-regressions",
        ))),
        ..Config::default()
    };
    let strategy = prop::collection::vec(op_strategy(), 1..40);
    TestRunner::new(config)
        .run(&strategy, |ops| {
            let name = format!("lease-{}", counter.fetch_add(1, Ordering::Relaxed));
            server.freeze_time(T0, 0);
            let mut h = Harness {
                server: &server,
                script: &script,
                name,
                defaults: knobs(4.0, 1.5, 2.0),
                knobs: None,
                now: T0,
                usec: 0,
                bucket: Bucket::default(),
                book: LeaseBook::default(),
                held: Vec::new(),
            };
            for op in ops {
                h.apply(op)?;
            }
            Ok(())
        })
        .unwrap();
}
