//! Where the daemon reads and writes knobs: the `KnobStore` trait, and Redis behind it.
//!
//! A tick's writes are fenced by the leader lease: one script (`lua/write_knobs.lua`, 128
//! throttles a call) checks that the lease key still holds this replica's token and only then
//! writes, per throttle, `HSET` of the fields that changed (never the others), `PEXPIRE` with
//! the knobs TTL, and an `XADD ... MAXLEN ~` history entry saying what changed and why. A
//! replica that lost the lease while a tick was under way (a pause, a partition, a slow
//! pipeline) writes nothing: Redis itself refuses it. On a cluster the lease key lives in
//! another slot, so `lua/write_knobs_cluster.lua` fences each throttle by the lease epoch in its
//! own fence key instead, one call for the changes of throttles that share a hash slot; reads
//! go as one pipeline per slot.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::config::Knob;
use super::leader::Leadership;
use redis::cluster_routing::Slot;
use regulator::client::keys::KeyLayout;
use regulator::{Client, Knobs, Result, StoredKnobs};

/// One knob change the daemon decided.
#[derive(Debug, Clone, PartialEq)]
pub struct KnobChange {
    /// The throttle.
    pub name: String,
    /// Which knob: the rate fields, or `concurrency` (then `rps` holds the concurrency,
    /// a whole number, and burst and window are 1).
    pub knob: Knob,
    /// The knobs in force before (`None`: none stored, or unusable).
    pub old: Option<Knobs>,
    /// The knobs to write.
    pub new: Knobs,
    /// The signal value that led here, if there was one.
    pub signal: Option<f64>,
    /// The control law.
    pub law: &'static str,
    /// Why: "overloaded", "headroom", "no data: min"...
    pub reason: String,
    /// The signal the law aimed at (see
    /// [`Controller::aim`](crate::control::Controller::aim)); logged, not stored.
    pub aim: f64,
}

/// Reads and writes knobs. Redis in production; in-memory in unit tests.
pub trait KnobStore: Send + Sync {
    /// The stored knobs of each throttle, in order. For [`Knob::Concurrency`], the stored
    /// `concurrency` as the `rps` of knobs whose burst and window are 1.
    fn read(
        &self,
        names: &[String],
        knob: Knob,
    ) -> impl Future<Output = Result<Vec<StoredKnobs>>> + Send;
    /// Writes the changes of one tick, with their history, unless the writer lost the lease.
    fn write(&self, changes: &[KnobChange]) -> impl Future<Output = Result<Written>> + Send;
}

/// What became of one tick's writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Every change is in Redis.
    All,
    /// The lease key no longer holds this writer's token: the rest was not written.
    Fenced,
}

/// The lease a store's writes are conditional on.
#[derive(Debug, Clone)]
pub struct Fence {
    /// The lease key.
    pub key: String,
    /// This replica's lease token.
    pub token: std::sync::Arc<str>,
    /// The lease epoch of this replica's tenure, 0 while it is not the leader: what fences
    /// writes on a Redis Cluster (see [`crate::leader::Leadership::epoch`]).
    pub epoch: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// The standing whose deadline ends a cluster write between its calls: a write phase
    /// over many slots stops when the lease could have run out, whatever it has left.
    pub leadership: Option<std::sync::Arc<Leadership>>,
    /// The hash slots whose epoch key this fence raised, and to which epoch.
    raised: std::sync::Arc<std::sync::Mutex<RaisedSlots>>,
}

/// Slots whose epoch key holds `epoch` since this replica raised it.
#[derive(Debug, Default)]
struct RaisedSlots {
    epoch: u64,
    slots: std::collections::HashSet<Slot>,
}

impl Fence {
    /// A fence on `key` holding `token`, with no epoch (enough on one server).
    #[must_use]
    pub fn new(key: &str, token: &str) -> Self {
        Self {
            key: key.to_owned(),
            token: token.into(),
            epoch: std::sync::Arc::default(),
            leadership: None,
            raised: std::sync::Arc::default(),
        }
    }

    /// A fence on `key` under `leadership`: its token, its epoch, its deadline.
    #[must_use]
    pub fn led_by(key: &str, leadership: &std::sync::Arc<Leadership>) -> Self {
        Self {
            epoch: std::sync::Arc::clone(leadership.epoch()),
            leadership: Some(std::sync::Arc::clone(leadership)),
            ..Self::new(key, leadership.token())
        }
    }

    /// The same fence with the epoch `epoch` (a cell of its own).
    #[must_use]
    pub fn with_epoch(self, epoch: u64) -> Self {
        Self {
            epoch: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(epoch)),
            ..self
        }
    }

    /// The epoch to fence cluster writes with: `None` while this replica does not lead (no
    /// epoch, or its deadline passed).
    fn current_epoch(&self) -> Option<u64> {
        let leading = self.leadership.as_ref().is_none_or(|l| l.is_leader());
        match self.epoch.load(std::sync::atomic::Ordering::SeqCst) {
            0 => None,
            e => leading.then_some(e),
        }
    }
}

/// The key of `slot`'s epoch on a cluster: `regulator:epoch:{<tag>}`, where the tag is the
/// shortest decimal number whose hash slot is `slot`.
fn slot_epoch_key(slot: Slot) -> String {
    static TAGS: std::sync::LazyLock<std::collections::HashMap<Slot, u32>> =
        std::sync::LazyLock::new(|| {
            let mut tags = std::collections::HashMap::with_capacity(SLOTS);
            // Decimal numbers cover the 16,384 slots within about 200,000 (measured: the
            // test `every_slot_has_an_epoch_key` checks it).
            for n in 0..u32::MAX {
                tags.entry(Slot::for_key(n.to_string())).or_insert(n);
                if tags.len() == SLOTS {
                    break;
                }
            }
            tags
        });
    let tag = TAGS.get(&slot).copied().unwrap_or_default();
    format!("regulator:epoch:{{{tag}}}")
}

/// Hash slots of a Redis Cluster.
const SLOTS: usize = 16_384;

/// The Redis knob store.
#[derive(Debug, Clone)]
pub struct RedisStore {
    client: Client,
    keys: KeyLayout,
    knobs_ttl: Duration,
    history_len: u64,
    fence: Option<Fence>,
}

impl RedisStore {
    /// A store writing knobs with `knobs_ttl` and keeping about `history_len` entries of
    /// history per throttle.
    #[must_use]
    pub fn new(client: Client, knobs_ttl: Duration, history_len: u64) -> Self {
        Self {
            keys: client.keys(),
            client,
            knobs_ttl,
            history_len,
            fence: None,
        }
    }

    /// The same store, writing only while `fence.key` holds `fence.token` (checked by Redis
    /// in the same script as the write). On a cluster the lease key lives in another slot
    /// than the knobs, so there each write is checked against its slot's epoch key, which a
    /// leader raises before its first read of the slot, and the throttle's own fence key:
    /// refused once a writer with a later lease epoch has taken the slot or written the
    /// throttle. A cluster write also stops between its calls once `fence.leadership` no
    /// longer leads.
    #[must_use]
    pub fn fenced(self, fence: Fence) -> Self {
        Self {
            fence: Some(fence),
            ..self
        }
    }
}

impl RedisStore {
    /// The bound on a pipeline of `commands`: the call timeout, plus 50 µs a command (10,000
    /// throttles add half a second), since Redis executes them one after the other.
    fn bound(&self, commands: usize) -> Duration {
        self.client.call_timeout().saturating_add(
            Duration::from_micros(50).saturating_mul(u32::try_from(commands).unwrap_or(u32::MAX)),
        )
    }
}

/// The stored `concurrency` field as the knobs a concurrency policy works on: a whole number
/// of at least 1 (as the semaphore reads it), else unusable.
#[must_use]
pub fn concurrency_knobs(field: Option<&str>) -> StoredKnobs {
    let Some(text) = field else {
        return StoredKnobs::Absent;
    };
    match regulator::client::lua_tonumber(text) {
        Some(c) if c >= 1.0 && c.fract() == 0.0 && c <= f64::from(u32::MAX) => {
            StoredKnobs::Valid(Knobs {
                rps: c,
                burst: 1.0,
                window: 1.0,
            })
        }
        _ => StoredKnobs::Invalid(format!("concurrency {text:?} is not a whole number >= 1")),
    }
}

/// The fields whose values differ (all three when nothing valid was stored).
fn changed_fields(knob: Knob, old: Option<Knobs>, new: Knobs) -> Vec<(&'static str, f64)> {
    if knob == Knob::Concurrency {
        return if old.is_some_and(|o| o.rps == new.rps) {
            Vec::new()
        } else {
            vec![("concurrency", new.rps)]
        };
    }
    let fields = [
        ("rps", new.rps),
        ("burst", new.burst),
        ("window", new.window),
    ];
    match old {
        None => fields.to_vec(),
        Some(o) => fields
            .into_iter()
            .zip([o.rps, o.burst, o.window])
            .filter(|((_, n), o)| n != o)
            .map(|(f, _)| f)
            .collect(),
    }
}

impl KnobStore for RedisStore {
    async fn read(&self, names: &[String], knob: Knob) -> Result<Vec<StoredKnobs>> {
        if self.keys.cluster {
            let mut stored: Vec<Option<StoredKnobs>> = vec![None; names.len()];
            for batch in self.slot_batches(names.iter().map(String::as_str)) {
                self.raise_epoch(names, &batch).await?;
                let read = self.read_cluster(names, &batch, knob).await?;
                for (&i, knobs) in batch.iter().flatten().zip(read) {
                    stored[i] = Some(knobs);
                }
            }
            // A batch answers every name or fails: every position is filled.
            return Ok(stored.into_iter().flatten().collect());
        }
        let mut stored = Vec::with_capacity(names.len());
        // In slices, so that a tick over 100,000 throttles never holds all their commands
        // and replies at once (Redis refuses an empty pipeline: none is sent for none).
        for names in names.chunks(READ_CHUNK) {
            stored.extend(self.read_slice(names, knob).await?);
        }
        Ok(stored)
    }

    async fn write(&self, changes: &[KnobChange]) -> Result<Written> {
        let ttl_ms = u64::try_from(self.knobs_ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        if self.keys.cluster {
            // Grouped by hash slot: one script call writes a slot's changes (up to
            // WRITE_CHUNK), so 100,000 throttles over 16,384 slots take some 16,000 calls
            // rather than 100,000. As below, entries are built a batch at a time.
            for batch in self.slot_batches(changes.iter().map(|c| c.name.as_str())) {
                if self.write_cluster(changes, &batch, ttl_ms).await? == Written::Fenced {
                    return Ok(Written::Fenced);
                }
            }
            return Ok(Written::All);
        }
        let (lease_key, token) = self
            .fence
            .as_ref()
            .map_or(("", ""), |f| (f.key.as_str(), &*f.token));
        let script = &*WRITE_KNOBS;
        // Each slice's entries are built when it is sent: a tick changing 100,000 throttles
        // never holds all of them at once.
        let mut in_flight: Option<InFlight> = None;
        for changes in changes.chunks(WRITE_CHUNK) {
            let chunk: Vec<Entry> = changes.iter().filter_map(|c| self.entry(c)).collect();
            if chunk.is_empty() {
                continue;
            }
            let chunk = chunk.as_slice();
            let mut evalsha = redis::cmd("EVALSHA");
            evalsha
                .arg(script.get_hash())
                .arg(1 + 2 * chunk.len())
                .arg(if lease_key.is_empty() { "-" } else { lease_key });
            for e in chunk {
                evalsha.arg(&e.knobs_key).arg(&e.history_key);
            }
            evalsha.arg(token).arg(ttl_ms).arg(self.history_len);
            for e in chunk {
                evalsha.arg(e.fields.len());
                for (f, v) in &e.fields {
                    evalsha.arg(*f).arg(v);
                }
                evalsha.arg(e.history.len());
                for (f, v) in &e.history {
                    evalsha.arg(*f).arg(v);
                }
            }
            let (client, bound) = (self.client.clone(), self.bound(chunk.len() * 4));
            let mut call: InFlight = Box::pin(async move {
                client
                    .run_script_within::<i64>(bound, script, &evalsha)
                    .await
            });
            // Polled once, the call is on its way: Redis runs this slice while the next is
            // built. Each slice checks the lease itself, so one sent after a refused one is
            // refused too.
            if let std::task::Poll::Ready(written) = futures_util::poll!(&mut call) {
                if written? == 0 {
                    return Ok(Written::Fenced);
                }
                continue;
            }
            if let Some(previous) = in_flight.replace(call)
                && previous.await? == 0
            {
                return Ok(Written::Fenced);
            }
        }
        if let Some(last) = in_flight
            && last.await? == 0
        {
            return Ok(Written::Fenced);
        }
        Ok(Written::All)
    }
}

/// The knobs of one HMGET reply (see [`RedisStore::hmget`]).
fn stored_knobs(reply: &redis::Value, knob: Knob) -> Result<StoredKnobs> {
    let redis::Value::Array(fields) = reply else {
        return Err(regulator::Error::Script(format!(
            "unexpected HMGET reply: {reply:?}"
        )));
    };
    let field = |i: usize| fields.get(i).and_then(field_text);
    Ok(match knob {
        Knob::Rate => StoredKnobs::from_fields(
            field(0).as_deref(),
            field(1).as_deref(),
            field(2).as_deref(),
        ),
        Knob::Concurrency => concurrency_knobs(field(0).as_deref()),
    })
}

/// A stored field's text, borrowed from the reply: `None` when the field is absent. Bytes
/// that are not UTF-8 (typed by hand, written by a buggy tool) become text that no knob parses,
/// so that throttle's knobs are unusable and the others are read as usual.
fn field_text(value: &redis::Value) -> Option<std::borrow::Cow<'_, str>> {
    match value {
        redis::Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes)),
        redis::Value::SimpleString(text) => Some(text.as_str().into()),
        redis::Value::Int(n) => Some(n.to_string().into()),
        _ => None,
    }
}

/// A slice's write, started and not yet answered.
type InFlight = std::pin::Pin<Box<dyn Future<Output = Result<i64>> + Send>>;

/// Throttles whose stored knobs one pipeline reads (and, on a cluster, whose changes one
/// batch of script calls writes).
const READ_CHUNK: usize = 16_384;

/// Changes per script call: one call holds Redis for its whole run, so a tick that changes
/// 100,000 throttles goes in slices of this many rather than in one long stall. At about
/// 7.5 µs of Redis time per change, a slice holds the server under 1 ms (measured: 0.95 ms;
/// 1.9 ms at 256, for the same total), so a worker's call on the same server never waits
/// longer than that behind a tick.
const WRITE_CHUNK: usize = 128;

static WRITE_KNOBS: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(concat!(
        include_str!("../lua/history_repeated.lua"),
        include_str!("../lua/write_knobs.lua")
    ))
});

/// What one throttle's change writes.
struct Entry {
    fence_key: String,
    knobs_key: String,
    history_key: String,
    fields: Vec<(&'static str, String)>,
    history: Vec<(&'static str, String)>,
}

impl RedisStore {
    /// The stored knobs of `names` on one server, in one pipeline.
    async fn read_slice(&self, names: &[String], knob: Knob) -> Result<Vec<StoredKnobs>> {
        if names.is_empty() {
            // Redis refuses an empty pipeline.
            return Ok(Vec::new());
        }
        // One pipeline, its commands built in place.
        let mut pipe = redis::pipe();
        for name in names {
            pipe.add_command(self.hmget(name, knob));
        }
        let replies = self
            .client
            .run_pipeline(self.bound(names.len()), &pipe)
            .await?;
        replies.iter().map(|r| stored_knobs(r, knob)).collect()
    }

    /// Before a leader's first read of a slot in its tenure, raises the slot's epoch key to
    /// its epoch (`lua/write_knobs_cluster.lua` with no throttle): from then on a stale
    /// leader is refused on every throttle of the slot, the steady ones too, and what this
    /// leader reads next is what it starts from. Nothing for a replica that does not lead.
    async fn raise_epoch(&self, names: &[String], batch: &[Vec<usize>]) -> Result<()> {
        let Some(fence) = &self.fence else {
            return Ok(());
        };
        let Some(epoch) = fence.current_epoch() else {
            return Ok(());
        };
        let slots: Vec<Slot> = {
            let mut raised = fence
                .raised
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if raised.epoch != epoch {
                *raised = RaisedSlots {
                    epoch,
                    slots: std::collections::HashSet::new(),
                };
            }
            let mut slots: Vec<Slot> = batch
                .iter()
                .filter_map(|group| group.first())
                .map(|&i| Slot::for_key(self.keys.knobs(&names[i])))
                .filter(|slot| !raised.slots.contains(slot))
                .collect();
            slots.dedup();
            slots
        };
        if slots.is_empty() {
            return Ok(());
        }
        let epoch_arg = epoch.to_string();
        let groups: Vec<Vec<redis::Cmd>> = slots
            .iter()
            .map(|&slot| {
                let mut evalsha = redis::cmd("EVALSHA");
                evalsha
                    .arg(WRITE_KNOBS_CLUSTER.get_hash())
                    .arg(1)
                    .arg(slot_epoch_key(slot))
                    .arg(&epoch_arg)
                    .arg(1)
                    .arg(1);
                vec![evalsha]
            })
            .collect();
        self.client
            .run_script_groups(
                self.bound(groups.len()),
                WRITE_KNOBS_CLUSTER_SOURCE,
                &groups,
            )
            .await?;
        let mut raised = fence
            .raised
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if raised.epoch == epoch {
            raised.slots.extend(slots);
        }
        Ok(())
    }

    /// The stored knobs of the names at the positions of `batch` on a cluster, in the order
    /// of `batch` flattened: one pipeline per group, to its slot's master.
    async fn read_cluster(
        &self,
        names: &[String],
        batch: &[Vec<usize>],
        knob: Knob,
    ) -> Result<Vec<StoredKnobs>> {
        let groups: Vec<Vec<redis::Cmd>> = batch
            .iter()
            .map(|group| group.iter().map(|&i| self.hmget(&names[i], knob)).collect())
            .collect();
        let asked: usize = batch.iter().map(Vec::len).sum();
        let replies = self.client.run_groups(self.bound(asked), &groups).await?;
        let mut stored = Vec::with_capacity(asked);
        for (group, replies) in batch.iter().zip(&replies) {
            if replies.len() != group.len() {
                return Err(regulator::Error::Script(format!(
                    "{} HMGET replies for {} reads",
                    replies.len(),
                    group.len()
                )));
            }
            for reply in replies {
                stored.push(stored_knobs(reply, knob)?);
            }
        }
        Ok(stored)
    }

    /// The command reading `name`'s stored `knob` fields.
    fn hmget(&self, name: &str, knob: Knob) -> redis::Cmd {
        let mut hmget = redis::cmd("HMGET");
        hmget.arg(self.keys.knobs(name));
        match knob {
            Knob::Rate => hmget.arg("rps").arg("burst").arg("window"),
            Knob::Concurrency => hmget.arg("concurrency"),
        };
        hmget
    }

    /// The positions of `names`, grouped by their keys' hash slot (a group never longer than
    /// [`READ_CHUNK`]), in batches of about [`READ_CHUNK`] names: a tick over 100,000
    /// throttles never holds all their commands and replies at once, even when they share
    /// one hash tag.
    fn slot_batches<'a>(&self, names: impl Iterator<Item = &'a str>) -> Vec<Vec<Vec<usize>>> {
        let mut slots: std::collections::HashMap<Slot, Vec<usize>> =
            std::collections::HashMap::new();
        for (i, name) in names.enumerate() {
            let slot = Slot::for_key(self.keys.knobs(name));
            slots.entry(slot).or_default().push(i);
        }
        let (mut batches, mut batch, mut size) = (Vec::new(), Vec::new(), 0);
        for group in slots.into_values() {
            for part in group.chunks(READ_CHUNK) {
                size += part.len();
                batch.push(part.to_vec());
                if size >= READ_CHUNK {
                    batches.push(std::mem::take(&mut batch));
                    size = 0;
                }
            }
        }
        if !batch.is_empty() {
            batches.push(batch);
        }
        batches
    }

    /// The fields and history entry of `c`, or `None` when nothing changed.
    fn entry(&self, c: &KnobChange) -> Option<Entry> {
        let fields = changed_fields(c.knob, c.old, c.new);
        if fields.is_empty() {
            return None;
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let old = |f: fn(&Knobs) -> f64| c.old.as_ref().map_or(String::new(), |k| f(k).to_string());
        let mut history = vec![("ts_ms", now_ms.to_string())];
        match c.knob {
            Knob::Rate => history.extend([
                ("old_rps", old(|k| k.rps)),
                ("old_burst", old(|k| k.burst)),
                ("old_window", old(|k| k.window)),
                ("rps", c.new.rps.to_string()),
                ("burst", c.new.burst.to_string()),
                ("window", c.new.window.to_string()),
            ]),
            Knob::Concurrency => history.extend([
                ("old_concurrency", old(|k| k.rps)),
                ("concurrency", c.new.rps.to_string()),
            ]),
        }
        history.extend([
            ("signal", c.signal.map_or(String::new(), |s| s.to_string())),
            ("law", c.law.to_owned()),
            ("reason", c.reason.clone()),
        ]);
        if let Some(f) = &self.fence {
            history.push(("writer", f.token.to_string()));
        }
        Some(Entry {
            fence_key: self.keys.fence(&c.name),
            knobs_key: self.keys.knobs(&c.name),
            history_key: self.keys.history(&c.name),
            fields: fields
                .into_iter()
                .map(|(f, v)| (f, v.to_string()))
                .collect(),
            history,
        })
    }

    /// A cluster keeps a throttle's keys in its own slot, away from the lease key, so each
    /// throttle's change is fenced by the writer's lease epoch against the throttle's fence
    /// key (`lua/write_knobs_cluster.lua`), one script call for up to [`WRITE_CHUNK`]
    /// changes of one slot (`slots`: positions in `changes`, grouped by slot).
    async fn write_cluster(
        &self,
        changes: &[KnobChange],
        slots: &[Vec<usize>],
        ttl_ms: u64,
    ) -> Result<Written> {
        // '' when unfenced; none when this writer does not lead (any more): nothing to fence
        // with, so nothing is written. Read again for each batch: a write phase over many
        // slots stops when the lease could have run out.
        let epoch = match &self.fence {
            None => Some(String::new()),
            Some(f) => f.current_epoch().map(|e| e.to_string()),
        };
        let script = &*WRITE_KNOBS_CLUSTER;
        let mut groups: Vec<Vec<redis::Cmd>> = Vec::new();
        let mut written = 0;
        // Each call's entries are built with its command and dropped after it.
        for part in slots.iter().flat_map(|s| s.chunks(WRITE_CHUNK)) {
            let entries: Vec<Entry> = part
                .iter()
                .filter_map(|&i| self.entry(&changes[i]))
                .collect();
            if entries.is_empty() {
                continue;
            }
            let Some(epoch) = &epoch else {
                return Ok(Written::Fenced);
            };
            written += entries.len();
            let mut evalsha = redis::cmd("EVALSHA");
            evalsha
                .arg(script.get_hash())
                .arg(1 + 3 * entries.len())
                .arg(slot_epoch_key(Slot::for_key(&entries[0].knobs_key)));
            for e in &entries {
                evalsha
                    .arg(&e.fence_key)
                    .arg(&e.knobs_key)
                    .arg(&e.history_key);
            }
            evalsha.arg(epoch).arg(ttl_ms).arg(self.history_len);
            for e in &entries {
                evalsha.arg(e.fields.len());
                for (f, v) in &e.fields {
                    evalsha.arg(*f).arg(v);
                }
                evalsha.arg(e.history.len());
                for (f, v) in &e.history {
                    evalsha.arg(*f).arg(v);
                }
            }
            groups.push(vec![evalsha]);
        }
        if groups.is_empty() {
            return Ok(Written::All);
        }
        let replies = self
            .client
            .run_script_groups(
                // As on one server: the time allowed grows with the changes, not the calls.
                self.bound(written * 4),
                WRITE_KNOBS_CLUSTER_SOURCE,
                &groups,
            )
            .await?;
        // Each call answers how many of its throttles a later epoch had written.
        let mut refused = false;
        for reply in replies.iter().flatten() {
            match reply {
                redis::Value::Int(0) => {}
                redis::Value::Int(_) => refused = true,
                other => {
                    return Err(regulator::Error::Script(format!(
                        "unexpected reply of the knob write script: {other:?}"
                    )));
                }
            }
        }
        Ok(if refused {
            Written::Fenced
        } else {
            Written::All
        })
    }
}

const WRITE_KNOBS_CLUSTER_SOURCE: &str = concat!(
    include_str!("../lua/history_repeated.lua"),
    include_str!("../lua/write_knobs_cluster.lua")
);

static WRITE_KNOBS_CLUSTER: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(WRITE_KNOBS_CLUSTER_SOURCE));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changed_fields_are_written() {
        let k = |rps, burst, window| Knobs { rps, burst, window };
        let rate = Knob::Rate;
        assert_eq!(changed_fields(rate, None, k(1.0, 2.0, 3.0)).len(), 3);
        assert_eq!(
            changed_fields(rate, Some(k(1.0, 2.0, 3.0)), k(5.0, 2.0, 3.0)),
            vec![("rps", 5.0)]
        );
        assert!(changed_fields(rate, Some(k(1.0, 2.0, 3.0)), k(1.0, 2.0, 3.0)).is_empty());
        let c = Knob::Concurrency;
        assert_eq!(
            changed_fields(c, Some(k(4.0, 1.0, 1.0)), k(5.0, 1.0, 1.0)),
            vec![("concurrency", 5.0)]
        );
        assert!(changed_fields(c, Some(k(4.0, 1.0, 1.0)), k(4.0, 1.0, 1.0)).is_empty());
        assert_eq!(changed_fields(c, None, k(4.0, 1.0, 1.0)).len(), 1);
    }

    #[test]
    fn every_slot_has_an_epoch_key() {
        for n in 0..u16::try_from(SLOTS).unwrap() {
            let slot = Slot::new(n).unwrap();
            let key = slot_epoch_key(slot);
            assert_eq!(Slot::for_key(&key), slot, "{key}");
        }
    }

    #[test]
    fn stored_concurrency_must_be_a_whole_number() {
        assert_eq!(concurrency_knobs(None), StoredKnobs::Absent);
        assert!(matches!(concurrency_knobs(Some("12")), StoredKnobs::Valid(k) if k.rps == 12.0));
        for bad in ["0", "2.5", "-1", "nan", "x", "inf"] {
            assert!(
                matches!(concurrency_knobs(Some(bad)), StoredKnobs::Invalid(_)),
                "{bad}"
            );
        }
    }
}
