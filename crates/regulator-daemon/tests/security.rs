//! Security against real servers: mutual TLS, the least-privilege users of
//! `deploy/redis/users.acl`, secrets read from files and variables, and secrets kept out of
//! every log line, error and command output.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::daemon_process::Regulator;
use common::knobs;
use common::stack::{Stack, policy};
use regulator::client::keys::KeyLayout;
use regulator::{Client, ContinuousParams, LeakyParams, ScheduledParams, SemaphoreParams};
use regulator_daemon::config::Knob;
use regulator_daemon::leader_lease::LeaderLease;
use regulator_daemon::store::{Fence, KnobChange, KnobStore, RedisStore};
use regulator_testing::{LimitlionDriver, RedisServer, free_port};

const DAEMON_PASSWORD: &str = "daemon-pw-7f3a";
const WORKER_PASSWORD: &str = "worker-pw-91c2";

fn sha256(text: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", "printf %s \"$1\" | sha256sum", "sh", text])
        .output()
        .expect("sha256sum (coreutils)");
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

/// A server whose users are `deploy/redis/users.acl` as shipped, with the placeholders
/// replaced by the hashes of the test passwords, plus an all-powerful default user for the
/// test's own checks.
fn acl_server(dir: &Path) -> RedisServer {
    let shipped = include_str!("../../../deploy/redis/users.acl");
    assert!(
        shipped.contains("#DAEMON_PASSWORD_SHA256") && shipped.contains("#WORKER_PASSWORD_SHA256"),
        "placeholders changed: update this test and deploy/README.md"
    );
    let users = shipped
        .replace(
            "#DAEMON_PASSWORD_SHA256",
            &format!("#{}", sha256(DAEMON_PASSWORD)),
        )
        .replace(
            "#WORKER_PASSWORD_SHA256",
            &format!("#{}", sha256(WORKER_PASSWORD)),
        );
    let path = dir.join("users.acl");
    std::fs::write(
        &path,
        format!("{users}user default on nopass ~* &* +@all\n"),
    )
    .unwrap();
    RedisServer::with_args(&["--aclfile", path.to_str().unwrap()]).expect("start redis-server")
}

fn user_url(server: &RedisServer, user: &str, password: &str) -> String {
    format!("redis://{user}:{password}@127.0.0.1:{}/0", server.port())
}

/// The commands the ACL refused since the log was last reset, as `user:object` pairs.
fn acl_denials(server: &RedisServer) -> Vec<String> {
    let entries: Vec<Vec<redis::Value>> = server.cmd(&["ACL", "LOG"]);
    entries
        .iter()
        .map(|fields| {
            let text: Vec<String> = fields
                .iter()
                .map(|v| match v {
                    redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                    other => format!("{other:?}"),
                })
                .collect();
            text.join(" ")
        })
        .collect()
}

fn change(name: &str, rps: f64) -> KnobChange {
    KnobChange {
        name: name.into(),
        knob: Knob::Rate,
        old: None,
        new: knobs(rps, 1.0, 5.0),
        signal: Some(0.5),
        law: "aimd",
        reason: "overloaded".into(),
        aim: 0.9,
    }
}

#[tokio::test]
async fn the_shipped_worker_user_runs_every_limiter_and_is_never_denied() {
    let dir = tempfile::tempdir().unwrap();
    let server = acl_server(dir.path());
    let client = Client::connect(&user_url(&server, "regulator-worker", WORKER_PASSWORD))
        .await
        .unwrap();
    let d = client
        .token_bucket("orders", knobs(10.0, 1.0, 5.0))
        .consume(1.0)
        .await
        .unwrap();
    assert!(d.allowed);
    let leaky = LeakyParams {
        rate: 5.0,
        capacity: 10.0,
        block: None,
    };
    assert!(
        client
            .leaky_bucket("orders", leaky)
            .consume(1.0)
            .await
            .unwrap()
            .allowed
    );
    let continuous = ContinuousParams {
        tokens_per_period: 10.0,
        period: Duration::from_secs(1),
    };
    assert!(
        client
            .continuous_bucket("orders", continuous)
            .allow(1.0)
            .await
            .unwrap()
            .allowed
    );
    let scheduled = ScheduledParams {
        capacity: 5,
        refill_every: Duration::from_secs(1),
        refill_amount: 5,
    };
    client
        .scheduled_bucket("orders", scheduled)
        .acquire(1, Duration::ZERO)
        .await
        .unwrap();
    let semaphore = client.semaphore(
        "pool",
        SemaphoreParams {
            capacity: 2,
            hold: Duration::from_secs(10),
        },
    );
    let permit = semaphore.acquire(Duration::ZERO).await.unwrap();
    permit.release().await.unwrap();
    let state = client.get("orders").await.unwrap();
    assert!(state.tokens.is_some(), "{state:?}");
    assert_eq!(acl_denials(&server), Vec::<String>::new());

    // Workers cannot touch the daemon's lease, nor write knobs with history: the daemon's job.
    let err = RedisStore::new(client.clone(), Duration::from_secs(60), 10)
        .write(&[change("orders", 3.0)])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "auth", "{err}");
}

/// Names whose keys end in part of a daemon key's suffix (`s`, `bs`, ... `knobs`), in
/// cluster hash tags, or with colons: the edges of the worker's key patterns.
fn edge_names() -> Vec<String> {
    let mut names: Vec<String> = ["orders", "{orders}", "a:b", "leaky", "x:knob", "nobs:y"]
        .map(String::from)
        .to_vec();
    for suffix in [":knobs", ":history", ":fence"] {
        for start in 1..suffix.len() {
            names.push(suffix[start..].to_owned());
        }
    }
    names
}

#[test]
fn the_shipped_worker_user_cannot_write_knobs_history_or_fences_even_from_a_script() {
    let dir = tempfile::tempdir().unwrap();
    let server = acl_server(dir.path());
    let mut worker = redis::Client::open(user_url(&server, "regulator-worker", WORKER_PASSWORD))
        .unwrap()
        .get_connection()
        .unwrap();
    // A script runs with its caller's rights, so one a worker loads gains it nothing.
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg("return redis.call(ARGV[1], KEYS[1], unpack(ARGV, 2))")
        .query(&mut worker)
        .unwrap();
    let mut run = |key: &str,
                   args: &[&str]|
     -> (Result<redis::Value, String>, Result<redis::Value, String>) {
        let direct = redis::cmd(args[0])
            .arg(key)
            .arg(&args[1..])
            .query::<redis::Value>(&mut worker)
            .map_err(|e| e.to_string());
        let scripted = redis::cmd("EVALSHA")
            .arg(&sha)
            .arg(1)
            .arg(key)
            .arg(args)
            .query::<redis::Value>(&mut worker)
            .map_err(|e| e.to_string());
        (direct, scripted)
    };
    let mut checked = 0;
    for name in edge_names() {
        for layout in [KeyLayout { cluster: false }, KeyLayout { cluster: true }] {
            let knobs_key = layout.knobs(&name);
            let _: () = server.cmd(&["HSET", &knobs_key, "rps", "10", "burst", "1", "window", "1"]);
            for key in [
                layout.bucket(&name),
                layout.leases(&name),
                layout.drains(&name),
                layout.leaky(&name),
                layout.continuous(&name),
                layout.holders(&name),
                layout.scheduled(&name),
            ] {
                let kind = if key.ends_with(":drains") || key.ends_with(":holders") {
                    ["ZADD", "1", "m"]
                } else {
                    ["HSET", "f", "1"]
                };
                for allowed in [&kind[..], &["DEL"]] {
                    let (direct, scripted) = run(&key, allowed);
                    assert!(
                        direct.is_ok() && scripted.is_ok(),
                        "{key} {allowed:?}: {direct:?} {scripted:?}"
                    );
                }
            }
            // The knobs are read, and their expiry kept alive as limitlion does.
            assert!(run(&knobs_key, &["HGET", "rps"]).0.is_ok());
            assert!(run(&knobs_key, &["EXPIRE", "604800"]).0.is_ok());
            for (key, denied) in [
                (knobs_key.clone(), &["HSET", "rps", "-1"][..]),
                (knobs_key.clone(), &["DEL"]),
                (knobs_key.clone(), &["HDEL", "rps"]),
                (layout.history(&name), &["XADD", "*", "rps", "-1"]),
                (layout.history(&name), &["DEL"]),
                (layout.fence(&name), &["SET", "9"]),
                (layout.fence(&name), &["DEL"]),
            ] {
                let (direct, scripted) = run(&key, denied);
                assert!(
                    direct.is_err() && scripted.is_err(),
                    "{key} {denied:?} was allowed: {direct:?} {scripted:?}"
                );
                checked += 1;
            }
            let rps: String = server.cmd(&["HGET", &knobs_key, "rps"]);
            assert_eq!(rps, "10", "{knobs_key}");
        }
    }
    assert_eq!(checked, edge_names().len() * 2 * 7);
}

#[test]
fn a_python_limitlion_worker_runs_as_the_shipped_worker_user() {
    let dir = tempfile::tempdir().unwrap();
    let server = acl_server(dir.path());
    let _: () = server.cmd(&[
        "HSET",
        "throttle:py:knobs",
        "rps",
        "5",
        "burst",
        "1",
        "window",
        "2",
    ]);
    let url = user_url(&server, "regulator-worker", WORKER_PASSWORD);
    let mut py = LimitlionDriver::start(&url, false).expect("start limitlion (make deps)");
    // limitlion's own script with its default knobs TTL: it EXPIREs the knobs on every call.
    let mut allowed = 0;
    for _ in 0..12 {
        let reply = py.call(&serde_json::json!({"op": "throttle", "name": "py", "rps": 1}));
        assert!(reply.get("error").is_none(), "{reply}");
        allowed += u64::from(reply["allowed"].as_bool().unwrap());
    }
    assert_eq!(allowed, 10, "the daemon's knobs: 5 rps over a 2 s window");
    let ttl: i64 = server.cmd(&["TTL", "throttle:py:knobs"]);
    assert!(ttl > 600_000, "knobs TTL {ttl}");
    assert_eq!(acl_denials(&server), Vec::<String>::new());
}

#[tokio::test]
async fn the_shipped_daemon_user_writes_knobs_under_its_lease_and_serves_status() {
    let dir = tempfile::tempdir().unwrap();
    let server = acl_server(dir.path());
    let url = user_url(&server, "regulator-daemon", DAEMON_PASSWORD);
    let client = Client::connect(&url).await.unwrap();
    let lease = LeaderLease::new(client.clone(), "regulator:leader", Duration::from_secs(5));
    assert!(lease.acquire_or_renew().await.unwrap());
    let fence = Fence::new(lease.key(), lease.token());
    let store = RedisStore::new(client.clone(), Duration::from_secs(60), 10).fenced(fence);
    store.write(&[change("orders", 7.0)]).await.unwrap();
    let stored: Option<String> = server.cmd(&["HGET", "throttle:orders:knobs", "rps"]);
    assert_eq!(stored.as_deref(), Some("7"));
    let rows = regulator_daemon::status::collect(&client, Vec::new())
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].last_change.is_some());
    client.reset_knobs("orders").await.unwrap();
    lease.release().await.unwrap();
    assert_eq!(acl_denials(&server), Vec::<String>::new());

    // The daemon's user has no right to the limiters' sorted sets: an auth error at once,
    // never a hang or a decision.
    let started = Instant::now();
    let err = client
        .semaphore(
            "pool",
            SemaphoreParams {
                capacity: 2,
                hold: Duration::from_secs(10),
            },
        )
        .try_acquire()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "auth", "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn the_daemon_binary_leads_and_writes_as_the_shipped_daemon_user() {
    let dir = tempfile::tempdir().unwrap();
    let stack = Stack::with_redis(acl_server(dir.path()));
    stack.exporter.set("db_latency", 3.0);
    stack.wait_scraped("db_latency", 1);
    let secret = dir.path().join("redis-password");
    std::fs::write(&secret, format!("{DAEMON_PASSWORD}\n")).unwrap();
    let url = format!(
        "redis://regulator-daemon@127.0.0.1:{}/0",
        stack.redis.port()
    );
    let text = stack.config(&policy("db", "db_latency", "hold")).replace(
        &format!("url: \"{}\"", stack.redis.url()),
        &format!("url: \"{url}\", password_file: \"{}\"", secret.display()),
    );
    let config = dir.path().join("r.yaml");
    std::fs::write(&config, text).unwrap();
    let r = Regulator::start(&config, &[]);
    r.wait_metric("regulator_leader", Duration::from_secs(10), |v| v == 1.0);
    stack.wait_rps("db", Duration::from_secs(10), |v| v < 100.0);
    let out = regulator_cmd(&["status", "--config", config.to_str().unwrap(), "db"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("(overloaded, signal 3)"),
        "{}",
        stdout(&out)
    );
    assert_eq!(acl_denials(&stack.redis), Vec::<String>::new());
}

#[tokio::test]
async fn mutual_tls_needs_the_client_certificate() {
    let (server, tls) = RedisServer::start_mtls(&[]).unwrap();
    let with_cert = Client::builder(&server.url())
        .tls_root_ca(tls.ca.clone())
        .tls_identity(tls.cert.clone(), tls.key.clone())
        .connect()
        .await
        .unwrap();
    let d = with_cert
        .token_bucket("mtls", knobs(1.0, 1.0, 5.0))
        .consume(1.0)
        .await
        .unwrap();
    assert_eq!(d.tokens, 4.0);

    let started = Instant::now();
    let without = Client::builder(&server.url())
        .tls_root_ca(tls.ca.clone())
        .connect()
        .await;
    let err = without
        .map(drop)
        .expect_err("the server requires a client certificate");
    assert!(err.is_unavailable() || err.kind() == "redis", "{err}");
    assert!(started.elapsed() < Duration::from_secs(3), "{err}");

    // TLS options on a plain URL would be silently unused: refused instead.
    let plain = format!("redis://127.0.0.1:{}/0", server.port());
    let err = Client::builder(&plain)
        .tls_identity(tls.cert.clone(), tls.key.clone())
        .connect()
        .await
        .map(drop)
        .unwrap_err();
    assert_eq!(err.kind(), "invalid_argument", "{err}");
}

#[test]
fn the_daemon_reads_its_password_and_client_certificate_from_files() {
    let (server, tls) = RedisServer::start_mtls(&["--requirepass", "tls-pw-5d1e"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("pw");
    std::fs::write(&secret, "tls-pw-5d1e\n").unwrap();
    let config = dir.path().join("r.yaml");
    let text = format!(
        "redis:\n  url: \"{}\"\n  password_file: \"{}\"\n  tls:\n    ca_file: \"{}\"\n    \
         cert_file: \"{}\"\n    key_file: \"{}\"\n\
         prometheus: {{ url: \"http://127.0.0.1:{}\", timeout: 1s }}\n\
         listen: \"127.0.0.1:0\"\ninterval: 1s\nleader: {{ lease: 3s }}\nthrottles:\n{}",
        server.url(),
        secret.display(),
        tls.ca_file.display(),
        tls.cert_file.display(),
        tls.key_file.display(),
        free_port(),
        policy("db", "db_latency", "hold"),
    );
    std::fs::write(&config, text).unwrap();
    let check = regulator_cmd(&["check", "--config", config.to_str().unwrap()], &[]);
    assert!(check.status.success(), "{}", stderr(&check));

    let r = Regulator::start(&config, &[]);
    // Leading means the lease script ran: connected, authenticated, certificate accepted.
    r.wait_metric("regulator_leader", Duration::from_secs(10), |v| v == 1.0);
    r.wait_metric("regulator_redis_up", Duration::from_secs(5), |v| v == 1.0);
    let out = regulator_cmd(&["status", "--config", config.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Without the key file the configuration is refused at load, naming the field.
    std::fs::write(
        &config,
        std::fs::read_to_string(&config).unwrap().replace(
            &format!("    key_file: \"{}\"\n", tls.key_file.display()),
            "",
        ),
    )
    .unwrap();
    let check = regulator_cmd(&["check", "--config", config.to_str().unwrap()], &[]);
    assert_eq!(check.status.code(), Some(64));
    assert!(stderr(&check).contains("redis.tls"), "{}", stderr(&check));
}

const URL_SECRET: &str = "url-s3cret-4410";
const FILE_SECRET: &str = "file-s3cret-8832";
const ENV_SECRET: &str = "env-s3cret-2208";
const TOKEN_SECRET: &str = "token-s3cret-6631";

fn assert_no_secret(what: &str, text: &str) {
    for s in [URL_SECRET, FILE_SECRET, ENV_SECRET, TOKEN_SECRET] {
        assert!(!text.contains(s), "{what} shows a secret:\n{text}");
    }
}

#[test]
fn secrets_never_appear_in_logs_status_check_or_errors() {
    let server = RedisServer::with_args(&["--requirepass", "the-right-one"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, FILE_SECRET).unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN_SECRET).unwrap();
    let prometheus = format!("http://127.0.0.1:{}", free_port());
    let write = |name: &str, redis: &str| -> PathBuf {
        let path = dir.path().join(name);
        let text = format!(
            "redis: {{ {redis} }}\n\
             prometheus: {{ url: \"{prometheus}\", timeout: 1s, bearer_token_file: \"{}\" }}\n\
             listen: \"127.0.0.1:0\"\ninterval: 1s\nleader: {{ lease: 3s }}\nthrottles:\n{}",
            token.display(),
            policy("db", "db_latency", "hold"),
        );
        std::fs::write(&path, text).unwrap();
        path
    };
    let in_url = write(
        "url.yaml",
        &format!(
            "url: \"redis://:{URL_SECRET}@127.0.0.1:{}/0\"",
            server.port()
        ),
    );
    let in_file = write(
        "file.yaml",
        &format!(
            "url: \"redis://127.0.0.1:{}/0\", password_file: \"{}\"",
            server.port(),
            file.display()
        ),
    );
    let in_env = write(
        "env.yaml",
        &format!(
            "url: \"redis://127.0.0.1:{}/0\", password_env: REGULATOR_TEST_PW",
            server.port()
        ),
    );
    let env = [("REGULATOR_TEST_PW", ENV_SECRET)];

    for config in [&in_url, &in_file, &in_env] {
        let path = config.to_str().unwrap();
        let check = regulator_cmd(&["check", "--config", path], &env);
        assert!(check.status.success(), "{}", stderr(&check));
        assert_no_secret("check", &(stdout(&check) + &stderr(&check)));
        let status = regulator_cmd(&["status", "--config", path], &env);
        assert!(!status.status.success(), "a wrong password must fail");
        assert!(
            stderr(&status).to_lowercase().contains("auth")
                || stderr(&status).contains("WRONGPASS"),
            "{}",
            stderr(&status)
        );
        assert_no_secret("status", &(stdout(&status) + &stderr(&status)));
    }
    let by_flag = format!("redis://:{URL_SECRET}@127.0.0.1:{}/0", server.port());
    let status = regulator_cmd(&["status", "--redis", &by_flag], &[]);
    assert!(!status.status.success());
    assert_no_secret("status --redis", &stderr(&status));

    // A config error quotes the URL it refuses, without its password.
    let bad = write(
        "bad.yaml",
        &format!("url: \"http://u:{URL_SECRET}@127.0.0.1:1/0\""),
    );
    let check = regulator_cmd(&["check", "--config", bad.to_str().unwrap()], &[]);
    assert_eq!(check.status.code(), Some(64));
    assert!(stderr(&check).contains("redis.url"), "{}", stderr(&check));
    assert_no_secret("check of a bad URL", &stderr(&check));

    // The daemon, at debug level, logs the failures without the secret.
    let r =
        Regulator::start_logged_with(&in_url, &["--log-format", "json"], &[("RUST_LOG", "debug")]);
    let lines = r.logs_until("tick failed", Duration::from_secs(15));
    assert!(
        lines.last().is_some_and(|l| l.contains(r#""kind":"auth""#)),
        "a refused password is an auth error, not an unreachable server: {lines:#?}"
    );
    assert_no_secret("the daemon's log", &lines.join("\n"));
    let (_, metrics) = r.get("/metrics").unwrap();
    let (_, ready) = r.get("/readyz").unwrap();
    assert_no_secret("/metrics and /readyz", &(metrics + &ready));
}

fn regulator_cmd(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_regulator"));
    cmd.args(args).env_remove("REGULATOR_REDIS_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run regulator")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
