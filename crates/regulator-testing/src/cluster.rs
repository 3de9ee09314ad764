//! A three-master Redis Cluster on loopback, made with `redis-cli --cluster create`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::RedisServer;
use super::process::{FixtureError, find, free_port, kill, wait_exit};

const JOIN_TIMEOUT: Duration = Duration::from_secs(20);

/// A free port whose cluster bus port (`port + 10000`) is free too.
fn port_with_free_bus() -> u16 {
    loop {
        let port = free_port();
        if port < 55_535 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

const INSTALL: &str = "apt-get install -y --no-install-recommends redis-server redis-tools";

/// Three `redis-server` masters in cluster mode, slots assigned, killed on drop.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three nodes and joins them into a cluster; returns once every node reports
    /// `cluster_state:ok`.
    ///
    /// # Errors
    /// [`FixtureError::Missing`] when `redis-server` or `redis-cli` is not installed;
    /// [`FixtureError::NotReady`] when the cluster does not form in time.
    pub fn start() -> Result<Self, FixtureError> {
        let cli = find("redis-cli", INSTALL)?;
        let mut nodes = Vec::with_capacity(3);
        for _ in 0..3 {
            nodes.push(RedisServer::with_port(
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ],
                port_with_free_bus,
            )?);
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let mut create = Command::new(cli)
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        // `redis-cli --cluster create` waits for the nodes to meet without a deadline of its own.
        let status = wait_exit(&mut create, JOIN_TIMEOUT)?;
        if status.is_none() {
            kill(&mut create);
        }
        let out = create.wait_with_output()?;
        if !status.is_some_and(|s| s.success()) {
            return Err(FixtureError::NotReady {
                what: "redis cluster".into(),
                timeout: JOIN_TIMEOUT,
                detail: String::from_utf8_lossy(&out.stdout).into_owned()
                    + &String::from_utf8_lossy(&out.stderr),
            });
        }
        let cluster = Self { nodes };
        cluster.wait_ok(Duration::from_secs(15))?;
        Ok(cluster)
    }

    fn wait_ok(&self, timeout: Duration) -> Result<(), FixtureError> {
        let start = Instant::now();
        loop {
            let states: Vec<String> = self
                .nodes
                .iter()
                .map(|n| n.cmd::<String>(&["CLUSTER", "INFO"]))
                .collect();
            if states.iter().all(|s| s.contains("cluster_state:ok")) {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(FixtureError::NotReady {
                    what: "redis cluster".into(),
                    timeout,
                    detail: states.join("\n"),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Seed URLs, one per node (`redis://127.0.0.1:<port>`).
    #[must_use]
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port()))
            .collect()
    }

    /// Kills node `i` (SIGKILL, as a crash) and starts it again on the same port with its
    /// `nodes.conf`, so it rejoins owning the same slots but with an empty dataset and script
    /// cache; returns once the cluster reports `cluster_state:ok` again.
    ///
    /// # Errors
    /// As [`RedisCluster::start`].
    pub fn restart_node(&mut self, i: usize) -> Result<(), FixtureError> {
        self.nodes[i].restart()?;
        self.wait_ok(Duration::from_secs(15))
    }

    /// The nodes, to stop or inspect one.
    #[must_use]
    pub fn nodes(&mut self) -> &mut [RedisServer] {
        &mut self.nodes
    }
}
