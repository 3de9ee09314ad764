//! The fixtures themselves: each starts the real program, it works, and nothing is left
//! behind after drop.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use regulator_testing::{PrometheusServer, RedisCluster, RedisServer};

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

fn pid_of(server: &RedisServer) -> u32 {
    let info: String = server.cmd(&["INFO", "server"]);
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn redis_server_is_private_and_killed_on_drop() {
    let server = RedisServer::start().unwrap();
    assert_ne!(server.port(), 6379);
    let pong: String = server.cmd(&["PING"]);
    assert_eq!(pong, "PONG");
    let save: Vec<String> = server.cmd(&["CONFIG", "GET", "save"]);
    assert_eq!(save, vec!["save".to_owned(), String::new()]);
    let pid = pid_of(&server);
    drop(server);
    assert!(!alive(pid), "redis-server {pid} left behind");
}

#[test]
fn prometheus_scrapes_a_target_every_second() {
    // A one-metric exporter on a free port.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let body = "# TYPE fixture_gauge gauge\nfixture_gauge 42\n";
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let prom = PrometheusServer::start(&[target]).unwrap();
    let start = Instant::now();
    loop {
        let (status, body) = prom.get("/api/v1/query?query=fixture_gauge").unwrap();
        if status == 200 && body.contains("\"42\"") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never scraped: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn cluster_forms_and_throttle_keys_share_a_slot() {
    let mut cluster = RedisCluster::start().unwrap();
    assert_eq!(cluster.urls().len(), 3);
    let node = &cluster.nodes()[0];
    let keys = regulator::client::keys::KeyLayout { cluster: true };
    let slot = |k: String| -> i64 { node.cmd(&["CLUSTER", "KEYSLOT", &k]) };
    let name = "orders-db";
    assert_eq!(slot(keys.bucket(name)), slot(keys.knobs(name)));
    assert_eq!(slot(keys.bucket(name)), slot(keys.history(name)));
    let pids: Vec<u32> = cluster.nodes().iter().map(pid_of).collect();
    drop(cluster);
    assert!(pids.iter().all(|p| !alive(*p)), "cluster nodes left behind");
}
