//! [`ScriptCall`]: what every Redis limiter does to decide: one `EVALSHA` of its script on its
//! throttle's keys, with the caller's defaults, the knobs TTL and the operation's arguments.

use std::sync::Arc;
use std::time::Duration;

use super::connection::Client;
use super::error::Result;
use super::knobs::DEFAULT_KNOBS_TTL;
use super::scripts::{ScriptId, Scripts};

/// A limiter's script call, its fixed part built once: `EVALSHA <sha> <numkeys> <keys..>
/// <defaults..>`. Each call clones that prefix and appends the knobs TTL, then the operation's
/// own arguments, so every script reads `ARGV` in that order. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct ScriptCall {
    client: Client,
    name: Arc<str>,
    script: ScriptId,
    knobs_ttl: u64,
    prefix: Arc<redis::Cmd>,
    /// The same prefix for the script's other forms, if it has any: the coalesced form, which
    /// decides many requests in one call, and the leased one.
    variants: Arc<[(ScriptId, redis::Cmd)]>,
}

impl ScriptCall {
    /// `keys` are the throttle's keys the script touches, in its `KEYS` order; `defaults`
    /// appends the arguments that stay the same for every call (the caller's parameters).
    pub(crate) fn new(
        client: Client,
        name: String,
        script: ScriptId,
        keys: &[String],
        defaults: impl Fn(&mut redis::Cmd),
    ) -> Self {
        let prefix = |id: ScriptId| {
            let mut prefix = redis::cmd("EVALSHA");
            prefix
                .arg(client.inner.scripts.get(id).get_hash())
                .arg(keys.len());
            for key in keys {
                prefix.arg(key);
            }
            defaults(&mut prefix);
            prefix
        };
        let variants: &[ScriptId] = match script {
            ScriptId::TokenBucket => &[ScriptId::TokenBucketBatch, ScriptId::TokenBucketLease],
            _ => &[],
        };
        Self {
            prefix: Arc::new(prefix(script)),
            variants: variants.iter().map(|&id| (id, prefix(id))).collect(),
            client,
            name: name.into(),
            script,
            knobs_ttl: DEFAULT_KNOBS_TTL.as_secs(),
        }
    }

    /// The throttle's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// Sets the TTL a call whose stored knobs applied gives the knobs hash, in whole seconds
    /// (zero leaves the TTL alone).
    pub(crate) fn set_knobs_ttl(&mut self, ttl: Duration) {
        self.knobs_ttl = ttl.as_secs();
    }

    /// Runs another form of the script once (`variant`: its coalesced or leased form): that
    /// form's prefix, the knobs TTL, then what `args` appends.
    ///
    /// # Errors
    /// As [`ScriptCall::run`]; [`Error::Script`](super::Error::Script) when the script has
    /// no such form.
    pub(crate) async fn run_as<T: redis::FromRedisValue>(
        &self,
        variant: ScriptId,
        args: impl FnOnce(&mut redis::Cmd),
    ) -> Result<T> {
        let Some((id, prefix)) = self.variants.iter().find(|(id, _)| *id == variant) else {
            return Err(super::Error::Script(format!(
                "{:?} has no {variant:?} form",
                self.script
            )));
        };
        let mut cmd = prefix.clone();
        cmd.arg(self.knobs_ttl);
        args(&mut cmd);
        let script = self.client.inner.scripts.get(*id);
        self.client.run_script(script, &cmd).await
    }

    /// Runs the script once: the prefix, the knobs TTL, then what `args` appends.
    ///
    /// # Errors
    /// The connection's errors; a script failure is [`Error::Script`](super::Error::Script).
    pub(crate) async fn run<T: redis::FromRedisValue>(
        &self,
        args: impl FnOnce(&mut redis::Cmd),
    ) -> Result<T> {
        let mut cmd = (*self.prefix).clone();
        cmd.arg(self.knobs_ttl);
        args(&mut cmd);
        let script = self.client.inner.scripts.get(self.script);
        self.client.run_script(script, &cmd).await
    }
}

/// Declares the accessors every Redis limiter `$ty` shares: `with_knobs_ttl` and `name`, from
/// its [`ScriptCall`] field `$call`, and `$getter`, its `$params` field.
macro_rules! limiter_accessors {
    ($ty:ident, $call:ident, $getter:ident: $params:ty) => {
        impl $ty {
            /// Sets the TTL a call whose stored knobs applied gives the knobs hash (whole
            /// seconds; zero leaves the TTL alone, as limitlion's `knobs_ttl=0`). Default:
            /// [`DEFAULT_KNOBS_TTL`](crate::client::DEFAULT_KNOBS_TTL).
            #[must_use]
            pub fn with_knobs_ttl(mut self, ttl: std::time::Duration) -> Self {
                self.$call.set_knobs_ttl(ttl);
                self
            }

            /// The throttle's name.
            #[must_use]
            pub fn name(&self) -> &str {
                self.$call.name()
            }

            /// The parameters used where the knobs hold none.
            #[must_use]
            pub fn $getter(&self) -> $params {
                self.$getter
            }
        }
    };
}
pub(crate) use limiter_accessors;

impl Scripts {
    pub(crate) fn get(&self, id: ScriptId) -> &redis::Script {
        match id {
            ScriptId::TokenBucket => &self.token_bucket,
            ScriptId::TokenBucketBatch => &self.token_bucket_batch,
            ScriptId::TokenBucketLease => &self.token_bucket_lease,
            ScriptId::LeakyBucket => &self.leaky_bucket,
            ScriptId::ContinuousBucket => &self.continuous_bucket,
            ScriptId::SemaphoreAcquire => &self.semaphore_acquire,
            ScriptId::ScheduledBucket => &self.scheduled_bucket,
        }
    }
}
