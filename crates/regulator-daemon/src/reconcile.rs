//! One policy's tick: query its signal, read the stored knobs, step each throttle's
//! controller, write what changed (when this replica writes) and say why.
//!
//! A plain policy governs one throttle. A templated one (`signal.name_label`) governs one
//! throttle per series of its answer, named `<name><label value>`, all from one query per
//! tick. The stored knobs are the current ones: a value set by hand with `regulator set` is
//! where the controller continues from. Those of the throttles governed at the last tick are
//! read while Prometheus answers, so a value set while a tick is under way counts from the
//! next tick (that tick's own step may write over it).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::config::{Knob, Throttle};
use super::control::{Change, Controller, Step};
use super::metrics::Metrics;
use super::names::Names;
use super::source::{MetricSource, NoData, per_label, single};
use super::store::{KnobChange, KnobStore, Written};
use regulator::{Knobs, StoredKnobs};

/// A templated throttle missing from this many answers in a row is forgotten: no longer
/// ticked, its metrics dropped, its knobs left to expire.
pub const FORGET_AFTER: u32 = 10;

/// A throttle policy as it runs: the configured one with its effective interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// As configured.
    pub throttle: Throttle,
    /// Its control period (its own `interval`, else the top-level one).
    pub interval: Duration,
}

impl Policy {
    /// The policy's name (for a template, the prefix of its throttles' names).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.throttle.name
    }

    /// Samples older than this are stale: two intervals.
    #[must_use]
    pub fn max_age(&self) -> Duration {
        self.interval.saturating_mul(2)
    }
}

/// Whether this tick's changes are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// This replica holds the lease: write.
    Write,
    /// Another replica writes: compute, expose in metrics, write nothing.
    Shadow,
    /// `--dry-run`: compute and log, write nothing.
    DryRun,
}

/// What a tick needs from outside: the signal source, the knob store, the metrics, and who
/// decides whether to write.
pub struct Ctx<'a, S, K> {
    /// Where signals come from.
    pub source: &'a S,
    /// Where knobs live.
    pub store: &'a K,
    /// Where to count.
    pub metrics: &'a Metrics,
    /// Asked right before writing.
    pub mode: &'a (dyn Fn() -> Mode + Sync),
    /// Which policy governs each throttle name.
    pub names: &'a Names,
    /// Monotonic time since any fixed origin, for the controllers.
    pub now: Duration,
    /// Wall-clock Unix seconds, for the freshness of samples.
    pub wall: f64,
}

/// What one tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    /// Throttles ticked.
    pub throttles: usize,
    /// Knob changes decided (written only in [`Mode::Write`]).
    pub changes: usize,
    /// Throttles without a usable signal.
    pub no_data: usize,
    /// Where the tick's time went.
    pub phases: Phases,
}

/// A tick's time by phase, in the order they run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Phases {
    /// The query, and reading its answer into one signal per throttle; the stored knobs of
    /// the throttles governed at the last tick are read meanwhile.
    pub query: Duration,
    /// Reading the stored knobs of throttles new to this tick.
    pub read: Duration,
    /// Stepping the controllers and recording the metrics.
    pub compute: Duration,
    /// Writing the changes.
    pub write: Duration,
    /// Logging the changes.
    pub log: Duration,
}

struct Member {
    controller: Controller,
    absent: u32,
    /// The last step and when it was taken.
    last: Option<(Duration, Step)>,
}

impl Member {
    /// This tick's step from knobs `current`, in whole holders for a concurrency, and the
    /// reason the signal was missing if the step was taken on its absence. A quick retry
    /// after a failed write (within half an `interval` of the last step) re-issues the step
    /// it could not confirm rather than stepping again: one interval never moves a throttle
    /// twice.
    fn step(
        &mut self,
        knob: Knob,
        (signal, served): (&Result<f64, NoData>, Option<f64>),
        current: regulator::Knobs,
        now: Duration,
        interval: Duration,
    ) -> (Step, Option<&'static str>) {
        let recent = self
            .last
            .filter(|(at, _)| now.saturating_sub(*at) < interval / 2)
            .map(|(_, step)| step);
        let (step, no_data) = match (recent, signal) {
            (Some(step), _) => (step, None),
            (None, Ok(value)) => (
                self.controller.tick_served(current, *value, served, now),
                None,
            ),
            (None, Err(no_data)) => (self.controller.no_data(current), Some(no_data.reason())),
        };
        if recent.is_none() {
            self.last = Some((now, step));
        }
        let step = whole_levels(knob, step, current);
        if recent.is_none() && signal.is_ok() {
            // The law's proposal is what the store keeps, in whole holders for a
            // concurrency: next tick, that is the value that shows it was written.
            self.controller.stored_as(step.knobs.rps);
        }
        (step, no_data)
    }
}

/// One policy's running state: a controller per throttle, kept across ticks and reloads
/// that leave the policy unchanged.
pub struct PolicyState {
    policy: Arc<Policy>,
    /// A fresh controller, cloned for each new throttle so that they share its settings.
    prototype: Controller,
    /// The bounds of the policy's knobs, for the metrics of each of its throttles.
    bounds: Arc<[(&'static str, f64, f64)]>,
    members: BTreeMap<String, Member>,
    failing: Option<&'static str>,
    /// Whether the throughput query failed at the last tick whose signal was usable.
    throughput_failing: bool,
    /// Names refused at the last tick, by reason: logged when these change.
    refused: template::Refused,
}

impl PolicyState {
    /// A fresh state for `policy`.
    #[must_use]
    pub fn new(policy: Arc<Policy>) -> Self {
        Self {
            prototype: Controller::new(&policy.throttle, policy.interval),
            bounds: template::knob_bounds(&policy.throttle).into(),
            policy,
            members: BTreeMap::new(),
            failing: None,
            throughput_failing: false,
            refused: template::Refused::default(),
        }
    }

    /// The policy.
    #[must_use]
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// The throttles this policy currently governs.
    pub fn throttles(&self) -> impl Iterator<Item = &str> {
        self.members.keys().map(String::as_str)
    }

    /// One tick.
    ///
    /// # Errors
    /// A Redis error reading or writing knobs: nothing was written, and the controllers of a
    /// failed read were not stepped.
    pub async fn reconcile<S: MetricSource, K: KnobStore>(
        &mut self,
        ctx: &Ctx<'_, S, K>,
    ) -> regulator::Result<Report> {
        let policy = Arc::clone(&self.policy);
        let knob = policy.throttle.knob;
        let mut lap = Lap(std::time::Instant::now());
        // The knobs of the throttles governed at the last tick are read while Prometheus
        // answers; only throttles new to this tick are read after.
        let known: Vec<String> = self.members.keys().cloned().collect();
        let ((answer, served), early) =
            tokio::join!(ask(&policy, ctx.source), read(ctx.store, &known, knob));
        let (names, signals): (Vec<String>, Vec<_>) = self.signals(answer, ctx).into_iter().unzip();
        let served = self.served(served, signals.first().is_some_and(Result::is_ok), ctx);
        let query = lap.next();
        let stored = read_new(ctx.store, &names, &known, early?, knob).await?;
        let mut report = Report {
            throttles: names.len(),
            ..Report::default()
        };
        report.phases.query = query;
        report.phases.read = lap.next();
        let mut directions = [0_u64; 3];
        let mut reasons: BTreeMap<&'static str, u64> = BTreeMap::new();
        let mut changes = Vec::new();
        for ((name, signal), stored) in names.into_iter().zip(signals).zip(stored) {
            let member = self.member(&name, ctx.metrics);
            let (current, old) = match stored {
                StoredKnobs::Valid(k) => (k, Some(k)),
                StoredKnobs::Absent => (member.controller.initial(), None),
                StoredKnobs::Invalid(why) => {
                    tracing::warn!(throttle = %name, problem = %why, "stored knobs unusable; writing the policy's");
                    (member.controller.initial(), None)
                }
            };
            let (step, no_data) =
                member.step(knob, (&signal, served), current, ctx.now, policy.interval);
            if let Some(reason) = no_data {
                report.no_data += 1;
                *reasons.entry(reason).or_default() += 1;
            }
            // The controller keeps knobs inside validated bounds; this is the last guard
            // before Redis, so a bug there can never reach the workers.
            if let Err(e) = step.knobs.validate() {
                ctx.metrics.error("invalid_knob");
                tracing::error!(throttle = %name, error = %e, "computed knobs are invalid; not written");
                continue;
            }
            ctx.metrics.throttle(
                &name,
                policy.throttle.knob,
                step.knobs,
                signal.as_ref().ok().copied(),
            );
            directions[match step.change {
                Change::Up => 0,
                Change::Down => 1,
                Change::Hold => 2,
            }] += 1;
            if old != Some(step.knobs) {
                changes.push(KnobChange {
                    name,
                    knob: policy.throttle.knob,
                    old,
                    new: step.knobs,
                    signal: signal.ok(),
                    law: policy.throttle.control.law(),
                    reason: step.reason.to_owned(),
                    aim: member.controller.aim(),
                });
            }
        }
        let p = policy.name();
        record_policy(
            ctx.metrics,
            &policy,
            directions,
            reasons,
            self.members.len(),
        );
        report.changes = changes.len();
        report.phases.compute = lap.next();
        let mode = write(ctx, p, &changes).await?;
        report.phases.write = lap.next();
        for c in &changes {
            log_change(c, mode);
        }
        report.phases.log = lap.next();
        Ok(report)
    }

    /// `name`'s state, made (with its bounds' metrics) when it is new.
    fn member(&mut self, name: &str, metrics: &Metrics) -> &mut Member {
        // Looked up before inserting: a known throttle's name is not copied to find it.
        if !self.members.contains_key(name) {
            metrics.bounds(name, Arc::clone(&self.bounds));
            let member = Member {
                controller: self.prototype.clone(),
                absent: 0,
                last: None,
            };
            self.members.insert(name.to_owned(), member);
        }
        self.members
            .get_mut(name)
            .expect("a member is inserted before it is looked up")
    }

    /// Each throttle's signal (or why it has none) from the policy's answer.
    fn signals<S, K>(
        &mut self,
        answer: Result<Vec<super::source::Series>, NoData>,
        ctx: &Ctx<'_, S, K>,
    ) -> Vec<(String, Result<f64, NoData>)> {
        let policy = Arc::clone(&self.policy);
        let name = policy.name();
        let Some(label) = &policy.throttle.signal.name_label else {
            let signal = answer.and_then(|series| single(&series, ctx.wall, policy.max_age()));
            self.note_policy(signal.as_ref().err());
            return vec![(name.to_owned(), signal)];
        };
        let series = match answer {
            Ok(series) => series,
            Err(e) => {
                self.note_policy(Some(&e));
                if self.members.is_empty() {
                    ctx.metrics.no_data(name, e.reason(), 1);
                }
                return self
                    .members
                    .keys()
                    .map(|m| (m.clone(), Err(e.clone())))
                    .collect();
            }
        };
        let found = per_label(&series, label, ctx.wall, policy.max_age());
        if found.is_empty() && self.members.is_empty() {
            self.note_policy(Some(&NoData::Empty));
            ctx.metrics.no_data(name, NoData::Empty.reason(), 1);
        } else {
            self.note_policy(None);
        }
        let mut signals: BTreeMap<String, Result<f64, NoData>> = found
            .into_iter()
            .map(|(value, signal)| (format!("{name}{value}"), signal))
            .collect();
        self.members.retain(|member, state| {
            if signals.contains_key(member) {
                state.absent = 0;
                return true;
            }
            state.absent += 1;
            if state.absent > FORGET_AFTER {
                tracing::info!(throttle = %member, policy = %name, "left the template's answer; no longer controlled");
                ctx.metrics.forget_throttle(member);
                ctx.names.release(member, name);
                return false;
            }
            signals.insert(member.clone(), Err(NoData::Empty));
            true
        });
        self.govern(signals, ctx)
    }

    /// The rate served from the throughput query's answer, if the policy has one and it is
    /// usable. An unusable one while the signal is usable is counted (`throughput` errors) and
    /// logged when it starts and ends: the law then cuts from the limit alone.
    fn served<S, K>(
        &mut self,
        answer: Option<Answer>,
        signal_ok: bool,
        ctx: &Ctx<'_, S, K>,
    ) -> Option<f64> {
        let served = answer?
            .and_then(|series| single(&series, ctx.wall, self.policy.max_age()))
            .and_then(|v| {
                if v >= 0.0 {
                    Ok(v)
                } else {
                    Err(NoData::Malformed(format!("a negative rate: {v}")))
                }
            });
        let policy = self.policy.name();
        match (&served, self.throughput_failing) {
            (Err(e), false) if signal_ok => {
                ctx.metrics.error("throughput");
                tracing::warn!(policy, reason = e.reason(), error = %e, "no usable throughput: cuts follow the limit alone");
                self.throughput_failing = true;
            }
            (Err(_), true) if signal_ok => ctx.metrics.error("throughput"),
            (Ok(_), true) => {
                tracing::info!(policy, "throughput usable again");
                self.throughput_failing = false;
            }
            _ => {}
        }
        served.ok()
    }

    /// Logs the moment a policy loses its signal and the moment it is back, once each.
    fn note_policy(&mut self, problem: Option<&NoData>) {
        let policy = self.policy.name();
        match (problem, self.failing) {
            (Some(e), was) if was != Some(e.reason()) => {
                tracing::warn!(policy, reason = e.reason(), error = %e, on_no_data = ?self.policy.throttle.on_no_data, "no usable signal");
                self.failing = Some(e.reason());
            }
            (None, Some(_)) => {
                tracing::info!(policy, "signal usable again");
                self.failing = None;
            }
            _ => {}
        }
    }
}

type Answer = Result<Vec<super::source::Series>, NoData>;

/// The answers to the policy's signal query and, if it has one, its throughput query, asked
/// at once.
async fn ask<S: MetricSource>(policy: &Policy, source: &S) -> (Answer, Option<Answer>) {
    let signal = &policy.throttle.signal;
    let throughput = signal.throughput_query();
    tokio::join!(
        source.query(&signal.query, signal.name_label.as_deref()),
        async {
            match &throughput {
                Some(q) => Some(source.query(q, None).await),
                None => None,
            }
        }
    )
}

/// A tick's counts for the whole policy: decisions by direction, missing signals by reason,
/// the target and the number of throttles.
fn record_policy(
    metrics: &Metrics,
    policy: &Policy,
    directions: [u64; 3],
    reasons: BTreeMap<&'static str, u64>,
    throttles: usize,
) {
    let p = policy.name();
    for (direction, n) in ["up", "down", "hold"].into_iter().zip(directions) {
        metrics.decisions(p, direction, n);
    }
    for (reason, n) in reasons {
        metrics.no_data(p, reason, n);
    }
    metrics.policy(p, policy.throttle.signal.target, throttles);
}

/// The stored knobs of `names`, none read for none.
async fn read<K: KnobStore>(
    store: &K,
    names: &[String],
    knob: Knob,
) -> regulator::Result<Vec<StoredKnobs>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    store.read(names, knob).await
}

/// The stored knobs of `names`: taken from `early` (those of `known`, sorted, read while
/// Prometheus answered) where it has them, read now for the others.
async fn read_new<K: KnobStore>(
    store: &K,
    names: &[String],
    known: &[String],
    early: Vec<StoredKnobs>,
    knob: Knob,
) -> regulator::Result<Vec<StoredKnobs>> {
    let short = |asked: usize, got: usize| {
        regulator::Error::Script(format!("the knob store answered {got} of {asked} reads"))
    };
    if early.len() != known.len() {
        return Err(short(known.len(), early.len()));
    }
    let mut early: Vec<Option<StoredKnobs>> = early.into_iter().map(Some).collect();
    let mut stored: Vec<Option<StoredKnobs>> = names
        .iter()
        .map(|n| {
            let i = known.binary_search(n).ok()?;
            early.get_mut(i)?.take()
        })
        .collect();
    let missing: Vec<usize> = (0..names.len()).filter(|&i| stored[i].is_none()).collect();
    if !missing.is_empty() {
        let fresh: Vec<String> = missing.iter().map(|&i| names[i].clone()).collect();
        let read = read(store, &fresh, knob).await?;
        if read.len() != fresh.len() {
            return Err(short(fresh.len(), read.len()));
        }
        for (i, knobs) in missing.into_iter().zip(read) {
            stored[i] = Some(knobs);
        }
    }
    // Every name has its knobs now: a store that answered short was refused above, so no
    // throttle is ever taken for one without knobs.
    Ok(stored.into_iter().flatten().collect())
}

/// Time since the last lap.
struct Lap(std::time::Instant);

impl Lap {
    fn next(&mut self) -> Duration {
        let now = std::time::Instant::now();
        now - std::mem::replace(&mut self.0, now)
    }
}

/// One event per knob change: INFO when written or in a dry run, DEBUG in shadow (the
/// leader logs the same change).
/// A concurrency is a whole number of holders: a step up rounds up and a step down rounds
/// down, so every step the law takes moves it (bounds are whole numbers, so they hold).
/// Rates are left as they are.
fn whole_levels(knob: Knob, mut step: Step, current: regulator::Knobs) -> Step {
    if knob == Knob::Rate {
        return step;
    }
    // Float noise in a law's arithmetic is not a step.
    let level = step.knobs.rps;
    let noise = 1e-9 * current.rps.abs().max(1.0);
    step.knobs.rps = if level > current.rps + noise {
        level.ceil()
    } else if level < current.rps - noise {
        level.floor()
    } else {
        current.rps.round()
    };
    step
}

/// Writes `changes` when this replica writes; says how they are to be logged.
async fn write<S, K: KnobStore>(
    ctx: &Ctx<'_, S, K>,
    policy: &str,
    changes: &[KnobChange],
) -> regulator::Result<Mode> {
    let mode = (ctx.mode)();
    if mode != Mode::Write || changes.is_empty() {
        return Ok(mode);
    }
    Ok(match ctx.store.write(changes).await? {
        Written::All => {
            ctx.metrics.writes(policy, changes.len() as u64);
            Mode::Write
        }
        Written::Fenced => {
            ctx.metrics.error("fenced");
            tracing::warn!(%policy, "the lease passed to another replica during this tick: Redis refused the write");
            Mode::Shadow
        }
    })
}

fn log_change(c: &KnobChange, mode: Mode) {
    let from = c.old.map_or_else(|| "none".to_owned(), |k| show(&k));
    let to = show(&c.new);
    let signal = c
        .signal
        .map_or_else(|| "none".to_owned(), |s| s.to_string());
    match mode {
        Mode::Write => {
            tracing::info!(throttle = %c.name, %from, %to, %signal, aim = c.aim, law = c.law, reason = %c.reason, "knobs changed");
        }
        Mode::DryRun => {
            tracing::info!(throttle = %c.name, %from, %to, %signal, aim = c.aim, law = c.law, reason = %c.reason, "knobs would change (dry run)");
        }
        Mode::Shadow => {
            tracing::debug!(throttle = %c.name, %from, %to, %signal, aim = c.aim, law = c.law, reason = %c.reason, "knobs would change (shadow)");
        }
    }
}

fn show(k: &Knobs) -> String {
    format!("rps={} burst={} window={}", k.rps, k.burst, k.window)
}

mod template;
#[cfg(test)]
mod tests;
