//! The connection under failure and with security on: a stopped or restarted Redis, ACL users,
//! TLS with a private CA, and the fail-open/fail-closed choice.

mod common;

use std::time::{Duration, Instant};

use common::{knobs, redis};
use regulator::{Client, FailMode, Source, blocking};
use regulator_testing::RedisServer;

const TIMEOUT: Duration = Duration::from_millis(200);

#[tokio::test]
async fn stopped_redis_gives_a_typed_error_within_the_timeout() {
    let mut server = redis();
    let client = Client::builder(&server.url())
        .call_timeout(TIMEOUT)
        .connect()
        .await
        .unwrap();
    let bucket = client.token_bucket("down", knobs(10.0, 1.0, 1.0));
    assert!(bucket.consume(1.0).await.unwrap().allowed);
    server.stop();
    for _ in 0..5 {
        let start = Instant::now();
        let err = bucket.consume(1.0).await.unwrap_err();
        assert!(err.is_unavailable(), "{err}");
        assert!(
            start.elapsed() < TIMEOUT + Duration::from_millis(100),
            "{:?}",
            start.elapsed()
        );
    }
}

#[test]
fn blackholed_redis_times_out_instead_of_hanging() {
    // A server that accepts connections but never answers: SIGSTOP it.
    let server = redis();
    let client =
        blocking::Client::from_builder(Client::builder(&server.url()).call_timeout(TIMEOUT))
            .unwrap();
    let bucket = client.token_bucket("stuck", knobs(10.0, 1.0, 1.0));
    assert!(bucket.consume(1.0).unwrap().allowed);
    let pid: String = server.cmd::<String>(&["INFO", "server"]);
    let pid = pid
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(
        std::process::Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let start = Instant::now();
    let err = bucket.consume(1.0).unwrap_err();
    let elapsed = start.elapsed();
    std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap();
    assert_eq!(err.kind(), "timeout", "{err}");
    assert!(
        elapsed < TIMEOUT + Duration::from_millis(100),
        "{elapsed:?}"
    );
}

#[test]
fn connecting_to_nothing_fails_fast() {
    let port = regulator_testing::free_port();
    let start = Instant::now();
    let err = blocking::Client::connect(&format!("redis://127.0.0.1:{port}/0")).unwrap_err();
    assert_eq!(err.kind(), "unreachable", "{err}");
    assert!(
        start.elapsed() < regulator::client::DEFAULT_CONNECT_TIMEOUT + Duration::from_millis(200)
    );
    let err = blocking::Client::connect("http://nope").unwrap_err();
    assert_eq!(err.kind(), "invalid_argument", "{err}");
}

#[tokio::test]
async fn restarted_redis_with_an_empty_script_cache_serves_the_next_call() {
    let mut server = redis();
    let client = Client::connect(&server.url()).await.unwrap();
    let bucket = client.token_bucket("restart", knobs(10.0, 1.0, 1.0));
    let sha = redis::Script::new(&regulator::client::scripts::source("token_bucket.lua").unwrap())
        .get_hash()
        .to_owned();
    assert!(bucket.consume(1.0).await.unwrap().allowed);
    let loaded: Vec<bool> = server.cmd(&["SCRIPT", "EXISTS", &sha]);
    assert_eq!(loaded, vec![true], "the first call loaded the script");
    server.restart().unwrap();
    let loaded: Vec<bool> = server.cmd(&["SCRIPT", "EXISTS", &sha]);
    assert_eq!(
        loaded,
        vec![false],
        "the restarted server has an empty script cache"
    );
    let d = bucket
        .consume(1.0)
        .await
        .expect("first call after the restart");
    assert!(d.allowed);
    assert_eq!(d.tokens, 9.0, "a fresh bucket on the fresh server");
}

#[tokio::test]
async fn fail_open_and_fail_closed_are_explicit_and_counted() {
    let mut server = redis();
    let client = Client::builder(&server.url())
        .call_timeout(TIMEOUT)
        .connect()
        .await
        .unwrap();
    let bucket = client.token_bucket("fallback", knobs(10.0, 1.0, 2.0));
    assert_eq!(
        bucket
            .consume_or(1.0, FailMode::Closed)
            .await
            .unwrap()
            .source,
        Source::Defaults
    );
    server.stop();
    let open = bucket.consume_or(1.0, FailMode::Open).await.unwrap();
    assert!(open.allowed);
    assert_eq!(open.source, Source::Unavailable);
    let closed = bucket.consume_or(1.0, FailMode::Closed).await.unwrap();
    assert!(!closed.allowed);
    assert_eq!(closed.sleep, Duration::from_secs(2), "retry after a window");
    assert_eq!(client.fallbacks(), 2);
    // Errors that are not about availability still surface.
    assert!(bucket.consume_or(f64::NAN, FailMode::Open).await.is_err());
}

#[test]
fn wait_never_sleeps_past_max_wait() {
    let server = redis();
    let client = common::frozen_client(&server);
    server.freeze_time(common::T0, 500_000);
    let bucket = client.token_bucket("wait", knobs(1.0, 1.0, 2.0));
    assert!(bucket.consume(2.0).unwrap().allowed);

    // The next window is 1.5 s away: a 1 s budget gives up at once, without sleeping.
    let start = Instant::now();
    let err = bucket.wait(1.0, Duration::from_secs(1)).unwrap_err();
    assert!(
        start.elapsed() < Duration::from_millis(100),
        "{:?}",
        start.elapsed()
    );
    match err {
        regulator::Error::MaxWaitExceeded { retry_after, .. } => {
            assert!(
                (retry_after.as_secs_f64() - 1.5).abs() < 1e-6,
                "{retry_after:?}"
            );
        }
        other => panic!("{other}"),
    }

    // With enough budget it sleeps on the hint and succeeds once the window turns: the
    // frozen clock moves on as soon as the first, refused attempt has reached Redis, so
    // the wait's second attempt (1.5 s later, on the hint) is allowed.
    let url = server.url();
    let calls = move |conn: &mut redis::Connection| -> u64 {
        let info: String = redis::cmd("INFO").arg("commandstats").query(conn).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
            .and_then(|rest| rest.split(',').next()?.parse().ok())
            .unwrap_or(0)
    };
    let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
    let before = calls(&mut conn);
    let mover = std::thread::spawn(move || {
        let start = Instant::now();
        while calls(&mut conn) == before {
            assert!(start.elapsed() < Duration::from_secs(5), "no attempt");
            std::thread::sleep(Duration::from_millis(5));
        }
        let _: () = redis::cmd("SET")
            .arg("frozen_second")
            .arg(common::T0 + 2)
            .query(&mut conn)
            .unwrap();
    });
    let start = Instant::now();
    let d = bucket.wait(1.0, Duration::from_secs(3)).unwrap();
    let elapsed = start.elapsed();
    mover.join().unwrap();
    assert!(d.allowed);
    assert!(
        elapsed >= Duration::from_millis(1_450) && elapsed < Duration::from_millis(2_500),
        "{elapsed:?}"
    );
}

fn acl_server() -> RedisServer {
    let server = redis();
    let _: () = server.cmd(&[
        "ACL",
        "SETUSER",
        "worker",
        "on",
        ">s3cret",
        "~throttle:*",
        "+@all",
    ]);
    let _: () = server.cmd(&[
        "ACL", "SETUSER", "reader", "on", ">r3ad", "~*", "+@read", "+ping", "+hello", "+client",
    ]);
    server
}

#[test]
fn acl_user_and_password_in_the_url() {
    let server = acl_server();
    let url = format!("redis://worker:s3cret@127.0.0.1:{}/0", server.port());
    let client = blocking::Client::connect(&url).unwrap();
    let d = client
        .token_bucket("acl", knobs(1.0, 1.0, 5.0))
        .consume(1.0)
        .unwrap();
    assert!(d.allowed);
    assert!(
        !format!("{client:?}").contains("s3cret"),
        "password redacted: {client:?}"
    );

    let wrong = format!("redis://worker:nope@127.0.0.1:{}/0", server.port());
    let err = blocking::Client::connect(&wrong).unwrap_err();
    assert_eq!(err.kind(), "auth", "{err}");

    // A user the ACL does not let run scripts gets an auth error, not a script error.
    let reader = format!("redis://reader:r3ad@127.0.0.1:{}/0", server.port());
    let client = blocking::Client::connect(&reader).unwrap();
    let err = client
        .token_bucket("acl", knobs(1.0, 1.0, 5.0))
        .consume(1.0)
        .unwrap_err();
    assert_eq!(err.kind(), "auth", "{err}");
}

#[test]
fn tls_with_a_private_ca() {
    let (server, ca) = RedisServer::start_tls().unwrap();
    assert!(server.url().starts_with("rediss://"));
    let client =
        blocking::Client::from_builder(Client::builder(&server.url()).tls_root_ca(ca)).unwrap();
    let d = client
        .token_bucket("tls", knobs(1.0, 1.0, 5.0))
        .consume(1.0)
        .unwrap();
    assert_eq!(d.tokens, 4.0);

    // Without the CA the server's certificate is not trusted.
    let err = blocking::Client::connect(&server.url()).unwrap_err();
    assert!(err.is_unavailable() || err.kind() == "redis", "{err}");
}

#[tokio::test]
async fn blocking_connect_inside_async_is_an_invalid_argument_not_a_panic() {
    let server = redis();
    let result = regulator::blocking::Client::connect(&server.url());
    assert!(
        matches!(result, Err(regulator::Error::InvalidArgument(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn dropping_the_last_blocking_client_inside_async_is_no_panic() {
    let server = redis();
    let url = server.url();
    let client = std::thread::spawn(move || regulator::blocking::Client::connect(&url))
        .join()
        .unwrap()
        .unwrap();
    let bucket = client.token_bucket("inside", knobs(10.0, 1.0, 1.0));
    let refused = bucket.consume(1.0);
    assert!(
        matches!(refused, Err(regulator::Error::InvalidArgument(_))),
        "{refused:?}"
    );
    // The client and the bucket hold the last references to the I/O runtime.
    drop(client);
    drop(bucket);
    let keys: i64 = server.cmd(&["DBSIZE"]);
    assert_eq!(keys, 0, "the refused call wrote nothing");
}

/// The benchmark scripts load the token bucket's scripts with `scripts/lua-source.sh`: it
/// must assemble them exactly as the client does.
#[test]
fn the_shell_assembles_the_token_bucket_scripts_as_the_client_does() {
    for file in [
        "token_bucket.lua",
        "token_bucket_batch.lua",
        "token_bucket_lease.lua",
    ] {
        let out = std::process::Command::new("bash")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../scripts/lua-source.sh"
            ))
            .arg(file)
            .output()
            .expect("run bash");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            regulator::client::scripts::source(file).unwrap(),
            "{file}"
        );
    }
}
