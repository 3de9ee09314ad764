//! The supervisor: starts, restarts and stops policy tasks, reloads the configuration on
//! request or when its file changes, and drains them on shutdown.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Handle, RunOptions};
use crate::backend::{BackendError, Backends};
use crate::config::{self, Config};
use crate::reconcile::{Policy, PolicyState};
use crate::schedule::{self, Shared};

/// One policy's task: waits for its predecessor, then drives the policy until cancelled. A
/// panic (a bug) is logged, counted and followed by a fresh start after one interval, so it
/// never leaves a throttle uncontrolled or takes another policy down.
async fn supervised(
    policy: Arc<Policy>,
    previous: Option<JoinHandle<()>>,
    backends: watch::Receiver<Arc<Backends>>,
    shared: Arc<Shared>,
    token: CancellationToken,
) {
    if let Some(previous) = previous {
        let _ = previous.await;
    }
    let metrics = Arc::clone(&shared.metrics);
    loop {
        let run = tokio::spawn(schedule::drive(
            PolicyState::new(Arc::clone(&policy)),
            backends.clone(),
            Arc::clone(&shared),
            token.clone(),
        ));
        match run.await {
            Ok(state) => {
                for throttle in state.throttles() {
                    metrics.forget_throttle(throttle);
                }
                metrics.forget_policy(policy.name());
                return;
            }
            Err(e) => {
                metrics.error("panic");
                tracing::error!(policy = %policy.name(), error = %e, "policy task failed; restarting it with fresh state");
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(policy.interval) => {}
                }
            }
        }
    }
}

fn policies(config: &Config) -> Vec<Arc<Policy>> {
    config
        .throttles
        .iter()
        .map(|t| {
            Arc::new(Policy {
                throttle: t.clone(),
                interval: t.interval.unwrap_or(config.interval),
            })
        })
        .collect()
}

struct Running {
    policy: Arc<Policy>,
    token: CancellationToken,
    task: JoinHandle<()>,
}

pub(super) struct Supervisor {
    config: Config,
    options: RunOptions,
    backends: watch::Sender<Arc<Backends>>,
    reachable: Arc<AtomicBool>,
    shared: Arc<Shared>,
    tasks: BTreeMap<String, Running>,
    /// Removed policies whose last tick may still be in flight: one re-added under the same
    /// name starts only after it.
    stopping: BTreeMap<String, JoinHandle<()>>,
    tracker: TaskTracker,
    /// The file's content when it was last read.
    last_seen: Option<Vec<u8>>,
    /// New content seen by one poll: applied when the next poll finds it unchanged, so a
    /// file caught half-written is never applied.
    changed: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Request,
    FileChanged,
}

impl Supervisor {
    pub(super) fn new(
        config: Config,
        options: RunOptions,
        backends: watch::Sender<Arc<Backends>>,
        reachable: Arc<AtomicBool>,
        shared: Arc<Shared>,
    ) -> Self {
        let last_seen = options
            .config_path
            .as_ref()
            .and_then(|p| std::fs::read(p).ok());
        Self {
            config,
            options,
            backends,
            reachable,
            shared,
            tasks: BTreeMap::new(),
            stopping: BTreeMap::new(),
            tracker: TaskTracker::new(),
            last_seen,
            changed: None,
        }
    }

    /// Starts every policy, then tells systemd the daemon runs.
    pub(super) fn start(&mut self) {
        let policies = policies(&self.config);
        self.start_policies(policies);
        self.notify_ready();
    }

    /// Tells systemd the drain starts.
    pub(super) fn notify_stopping(&self) {
        self.options.notify.stopping();
    }

    pub(super) async fn supervise(&mut self, handle: &Handle) {
        let watch = self
            .options
            .watch
            .filter(|_| self.options.config_path.is_some());
        loop {
            let poll = async {
                match watch {
                    Some(every) => tokio::time::sleep(every).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = handle.shutdown.cancelled() => return,
                () = handle.reload.notified() => self.reload(Trigger::Request),
                () = poll => self.reload(Trigger::FileChanged),
            }
        }
    }

    /// Starts each policy that is not running as it is; a changed (or just removed) one
    /// starts after its old task has finished, so one throttle never has two controllers.
    fn start_policies(&mut self, policies: Vec<Arc<Policy>>) {
        self.shared.names.reserve(
            policies
                .iter()
                .filter(|p| p.throttle.signal.name_label.is_none())
                .map(|p| p.name()),
        );
        for policy in policies {
            let name = policy.name().to_owned();
            let previous = match self.tasks.remove(&name) {
                Some(running) if running.policy == policy => {
                    self.tasks.insert(name, running);
                    continue;
                }
                Some(running) => {
                    running.token.cancel();
                    // A changed template may produce other names: it claims them afresh.
                    self.shared.names.release_policy(&name);
                    Some(running.task)
                }
                None => self.stopping.remove(&name),
            };
            let token = CancellationToken::new();
            let task = self.tracker.spawn(supervised(
                Arc::clone(&policy),
                previous,
                self.backends.subscribe(),
                Arc::clone(&self.shared),
                token.clone(),
            ));
            self.tasks.insert(
                name,
                Running {
                    policy,
                    token,
                    task,
                },
            );
        }
    }

    fn reload(&mut self, trigger: Trigger) {
        let Some(path) = self.options.config_path.clone() else {
            tracing::warn!("reload requested, but the daemon was started without a config file");
            return;
        };
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) => {
                if trigger == Trigger::Request || self.last_seen.is_some() {
                    tracing::error!(path = %path.display(), error = %e, "reload failed: cannot read the config; the running one stays");
                    self.shared.metrics.reload("error");
                }
                // Report a vanished file once, not every poll.
                self.last_seen = None;
                return;
            }
        };
        if trigger == Trigger::FileChanged {
            if self.last_seen.as_ref() == Some(&text) {
                self.changed = None;
                return;
            }
            if self.changed.as_ref() != Some(&text) {
                self.changed = Some(text);
                return;
            }
        }
        self.changed = None;
        self.last_seen = Some(text.clone());
        self.options.notify.reloading();
        let source = path.display().to_string();
        let result = std::str::from_utf8(&text)
            .map_err(|e| format!("{source}: not UTF-8: {e}"))
            .and_then(|t| config::parse(t, &source).map_err(|e| e.to_string()))
            .and_then(|c| self.apply(c).map_err(|e| e.to_string()));
        match result {
            Ok(()) => self.shared.metrics.reload("ok"),
            Err(errors) => {
                tracing::error!(trigger = ?trigger, errors = %errors.trim_end(), "reload rejected; the running configuration stays");
                self.shared.metrics.reload("error");
            }
        }
        self.notify_ready();
    }

    /// Tells systemd the daemon runs, with what.
    fn notify_ready(&self) {
        let n = self.config.throttles.len();
        let mode = if self.options.dry_run {
            ", dry run"
        } else {
            ""
        };
        self.options
            .notify
            .ready(&format!("running {n} throttle policies{mode}"));
    }

    fn apply(&mut self, new: Config) -> Result<(), BackendError> {
        let backends = Backends::new(
            &new,
            Some(&self.backends.borrow()),
            &self.reachable,
            &self.shared.leadership,
        )?;
        if !backends.same_lease(&self.backends.borrow()) {
            // Stop writing before the first write under the new settings: the lease held
            // under the old ones says nothing about the new Redis or key.
            self.shared.leadership.step_down();
        }
        if new.listen != self.config.listen {
            tracing::warn!(listen = %new.listen, running = %self.config.listen, "a new listen address takes effect at restart");
        }
        self.backends.send_replace(Arc::new(backends));
        let policies = policies(&new);
        let names: std::collections::BTreeSet<&str> = policies.iter().map(|p| p.name()).collect();
        let removed: Vec<String> = self
            .tasks
            .keys()
            .filter(|n| !names.contains(n.as_str()))
            .cloned()
            .collect();
        self.stopping.retain(|_, task| !task.is_finished());
        for name in &removed {
            if let Some(running) = self.tasks.remove(name) {
                running.token.cancel();
                self.stopping.insert(name.clone(), running.task);
            }
            self.shared.names.release_policy(name);
            self.shared.first_tick_done(name);
        }
        let added = policies
            .iter()
            .filter(|p| !self.tasks.contains_key(p.name()))
            .count();
        let changed = policies
            .iter()
            .filter(|p| self.tasks.get(p.name()).is_some_and(|r| r.policy != **p))
            .count();
        let kept = policies.len() - added - changed;
        self.start_policies(policies);
        tracing::info!(
            added,
            changed,
            kept,
            removed = removed.len(),
            removed_names = ?removed,
            "configuration reloaded"
        );
        self.config = new;
        Ok(())
    }

    pub(super) async fn drain(&mut self) {
        for running in self.tasks.values() {
            running.token.cancel();
        }
        self.tracker.close();
        let deadline = self.options.drain;
        if tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                ?deadline,
                "ticks still in flight at the drain deadline; stopping anyway"
            );
        }
    }
}
