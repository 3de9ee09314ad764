//! Hot paths of a worker's call: the bucket arithmetic, and one `consume` round trip to a
//! private redis-server (script call, reply parsing, timeout wrapper) on loopback.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use regulator::client::model::{self, Bucket};
use regulator::{Knobs, blocking};
use regulator_testing::RedisServer;

const KNOBS: Knobs = Knobs {
    rps: 1e9,
    burst: 1.0,
    window: 1.0,
};

fn arithmetic(c: &mut Criterion) {
    let bucket = Bucket {
        tokens: Some(10.0),
        refreshed: Some(1_700_000_000.0),
    };
    c.bench_function("model::consume", |b| {
        b.iter(|| {
            model::consume(
                black_box(bucket),
                black_box(KNOBS),
                1_700_000_003,
                250_000,
                1.0,
            )
        });
    });
}

fn round_trip(c: &mut Criterion) {
    let server = RedisServer::start().expect("start redis-server (run `make deps`)");
    let client = blocking::Client::connect(&server.url()).expect("connect");
    let bucket = client.token_bucket("bench", KNOBS);
    c.bench_function("TokenBucket::consume (blocking, loopback)", |b| {
        b.iter(|| bucket.consume(black_box(1.0)).expect("consume"));
    });
}

criterion_group!(benches, arithmetic, round_trip);
criterion_main!(benches);
