//! Calls that span slots or nodes: groups of commands by hash slot, scripts loaded on every
//! primary, keys scanned on every primary.

use std::time::Duration;

use redis::{Cmd, Value};

use super::{Client, Conn};
use crate::client::error::{Error, Result};

impl Client {
    /// Runs groups of commands, where each group's keys share one hash slot (a throttle's keys
    /// do), and returns each group's replies.
    ///
    /// On one server every group goes into a single pipeline: one round trip. A cluster
    /// pipeline must stay within one slot, so there each group is its own pipeline, 64 in
    /// flight at once over the multiplexed connections.
    ///
    /// # Errors
    /// The connection's errors; the first error ends the whole call.
    pub async fn run_groups(
        &self,
        timeout: Duration,
        groups: &[Vec<Cmd>],
    ) -> Result<Vec<Vec<Value>>> {
        use futures_util::{StreamExt, TryStreamExt};

        if groups.iter().all(Vec::is_empty) {
            // Redis refuses an empty pipeline.
            return Ok(vec![Vec::new(); groups.len()]);
        }
        if !self.inner.keys.cluster {
            let mut pipe = redis::pipe();
            for cmd in groups.iter().flatten() {
                pipe.add_command(cmd.clone());
            }
            let flat = self.run_pipeline(timeout, &pipe).await?;
            let mut flat = flat.into_iter();
            return Ok(groups
                .iter()
                .map(|g| flat.by_ref().take(g.len()).collect())
                .collect());
        }
        let pipes: Vec<redis::Pipeline> = groups
            .iter()
            .map(|g| {
                let mut pipe = redis::pipe();
                for cmd in g {
                    pipe.add_command(cmd.clone());
                }
                pipe
            })
            .collect();
        let pipes = &pipes;
        self.call_within(timeout, false, |conn| {
            let each = pipes.clone().into_iter().map(move |pipe| {
                let mut conn = conn.clone();
                async move {
                    if pipe.is_empty() {
                        Ok(Vec::new())
                    } else {
                        pipe.query_async::<Vec<Value>>(&mut conn).await
                    }
                }
            });
            futures_util::stream::iter(each).buffered(64).try_collect()
        })
        .await
    }

    /// [`Client::run_groups`] for groups that `EVALSHA` the script whose text is `source`: a
    /// server (or a cluster node) that does not know it (restarted, flushed, a new node) gets
    /// it loaded on every primary, and the groups run again once.
    ///
    /// # Errors
    /// As [`Client::run_groups`].
    pub async fn run_script_groups(
        &self,
        timeout: Duration,
        source: &str,
        groups: &[Vec<Cmd>],
    ) -> Result<Vec<Vec<Value>>> {
        match self.run_groups(timeout, groups).await {
            Err(Error::Redis { source: e })
                if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                self.load_everywhere(source).await?;
                self.run_groups(timeout, groups).await
            }
            other => other,
        }
    }

    /// Loads the script `source` on the one server, or on every primary of a cluster.
    async fn load_everywhere(&self, source: &str) -> Result<()> {
        let nodes = match &self.inner.conn {
            Conn::Single(_) => vec![None],
            Conn::Cluster(_) => self.primaries().await?.into_iter().map(Some).collect(),
        };
        for node in &nodes {
            let load = redis::cmd("SCRIPT").arg("LOAD").arg(source).to_owned();
            let _: String = self.on_node(node.as_ref(), load).await?;
        }
        Ok(())
    }

    /// Every key matching `pattern`, found with `SCAN` (which, unlike `KEYS`, does not block
    /// a busy server) on the one server or on each primary of a cluster. May repeat a key.
    /// Keys that are not UTF-8 are skipped with a warning.
    ///
    /// # Errors
    /// The connection's errors.
    pub(crate) async fn scan_keys(&self, pattern: &str) -> Result<Vec<String>> {
        let nodes = match &self.inner.conn {
            Conn::Single(_) => vec![None],
            Conn::Cluster(_) => self.primaries().await?.into_iter().map(Some).collect(),
        };
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        for node in &nodes {
            let mut cursor = 0u64;
            loop {
                let cmd = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .to_owned();
                let (next, batch): (u64, Vec<Vec<u8>>) = self.on_node(node.as_ref(), cmd).await?;
                for key in batch {
                    match String::from_utf8(key) {
                        Ok(key) => keys.push(key),
                        // No throttle is named so (names are text); one such key must not
                        // hide the others.
                        Err(e) => skipped.push(String::from_utf8_lossy(e.as_bytes()).into_owned()),
                    }
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        if !skipped.is_empty() {
            tracing::warn!(pattern, skipped = skipped.len(), examples = ?&skipped[..skipped.len().min(3)], "keys that are not UTF-8 were skipped");
        }
        Ok(keys)
    }

    /// Runs `cmd` on the given cluster node, or as usual when `node` is `None`.
    async fn on_node<T: redis::FromRedisValue>(
        &self,
        node: Option<&(String, u16)>,
        cmd: Cmd,
    ) -> Result<T> {
        let cmd = &cmd;
        let Some((host, port)) = node else {
            return self
                .call(
                    false,
                    |mut conn| async move { cmd.query_async(&mut conn).await },
                )
                .await;
        };
        let value: Value = self
            .call(false, |conn| async move {
                let Conn::Cluster(mut c) = conn else {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::Client,
                        "a node address needs a cluster connection",
                    )));
                };
                let route = redis::cluster_routing::RoutingInfo::SingleNode(
                    redis::cluster_routing::SingleNodeRoutingInfo::ByAddress {
                        host: host.clone(),
                        port: *port,
                    },
                );
                c.route_command(cmd.clone(), route).await
            })
            .await?;
        redis::from_redis_value(value).map_err(|e| Error::Script(format!("unexpected reply: {e}")))
    }

    /// The cluster's primaries (host, port), from `CLUSTER SLOTS`.
    async fn primaries(&self) -> Result<Vec<(String, u16)>> {
        let cmd = redis::cmd("CLUSTER").arg("SLOTS").to_owned();
        let cmd = &cmd;
        let ranges: Vec<Vec<Value>> = self
            .call(
                false,
                |mut conn| async move { cmd.query_async(&mut conn).await },
            )
            .await?;
        let mut primaries = Vec::new();
        for range in ranges {
            // [start, end, [host, port, id, ...], replicas...]
            let primary: Option<(String, u16)> = range.get(2).and_then(|node| {
                let redis::Value::Array(node) = node else {
                    return None;
                };
                let host = redis::from_redis_value_ref(node.first()?).ok()?;
                let port = redis::from_redis_value_ref(node.get(1)?).ok()?;
                Some((host, port))
            });
            let Some(primary) = primary else {
                return Err(Error::Script(format!(
                    "unexpected CLUSTER SLOTS entry: {range:?}"
                )));
            };
            if !primaries.contains(&primary) {
                primaries.push(primary);
            }
        }
        Ok(primaries)
    }
}
