//! The client's error type: one variant per thing a caller can act on differently.

use std::time::Duration;

use redis::{ErrorKind, RedisError, ServerErrorKind};

/// Result alias for client operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong talking to Redis, or with what was asked of it.
///
/// Each variant has a stable [`Error::kind`] label for metrics and logs.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request was rejected before anything was sent: a bad token count, knob value,
    /// throttle name or URL.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// Redis could not be reached: connection refused or reset, DNS or TLS failure.
    #[error("redis is unreachable: {source}")]
    Unreachable {
        /// The underlying connection error.
        #[source]
        source: RedisError,
    },

    /// Redis did not answer within the call timeout.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),

    /// Redis refused the credentials (`WRONGPASS`, `NOAUTH`) or the ACL denies the command or
    /// key (`NOPERM`).
    #[error("redis refused access (check the user, the password and the user's ACL): {source}")]
    Auth {
        /// The server's refusal.
        #[source]
        source: RedisError,
    },

    /// A Lua script failed on the server, or returned a reply it should not.
    #[error("redis script failed: {0}")]
    Script(String),

    /// The server is a Redis Cluster node and the keys live on another node, or in more than
    /// one slot (they share one only when hash-tagged): the client was not connected in
    /// cluster mode ([`ClientBuilder::cluster`](crate::ClientBuilder::cluster)).
    #[error(
        "redis is a cluster node and the keys are on another node or in several slots ({source}); connect in cluster mode (--cluster, redis.cluster: true, ClientBuilder::cluster)"
    )]
    NotClusterMode {
        /// The server's redirection.
        #[source]
        source: RedisError,
    },

    /// Any other error Redis returned (out of memory, read-only replica, cluster down, ...).
    #[error("redis error: {source}")]
    Redis {
        /// The server's error.
        #[source]
        source: RedisError,
    },

    /// [`TokenBucket::wait`](crate::TokenBucket::wait),
    /// [`Semaphore::acquire`](crate::Semaphore::acquire) or
    /// [`ScheduledBucket::reserve`](crate::ScheduledBucket::reserve) would have had to wait
    /// longer than `max_wait`; it returns as soon as it knows, without sleeping past the
    /// deadline, and holds nothing.
    #[error("not allowed within max_wait: waited {waited:?}, next chance in {retry_after:?}")]
    MaxWaitExceeded {
        /// How long the call waited before giving up.
        waited: Duration,
        /// The limiter's hint for when a retry could succeed.
        retry_after: Duration,
    },

    /// A semaphore [`Permit`](crate::Permit)'s hold ran out before it was renewed or
    /// released: its slot may have gone to another holder, so the capacity may have been
    /// exceeded. Renew more often than the hold, or choose a longer one.
    #[error("the hold on semaphore {name:?} ran out: its slot may be another holder's now")]
    PermitExpired {
        /// The semaphore's name.
        name: String,
    },
}

impl Error {
    /// A short, stable label for metrics (`errors_total{kind=...}`) and log fields.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidArgument(_) => "invalid_argument",
            Self::Unreachable { .. } => "unreachable",
            Self::Timeout(_) => "timeout",
            Self::Auth { .. } => "auth",
            Self::Script(_) => "script",
            Self::NotClusterMode { .. } => "not_cluster_mode",
            Self::Redis { .. } => "redis",
            Self::MaxWaitExceeded { .. } => "max_wait_exceeded",
            Self::PermitExpired { .. } => "permit_expired",
        }
    }

    /// True when the error says Redis could not be used at all (unreachable or timed out):
    /// the case a fail-open or fail-closed policy is for.
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unreachable { .. } | Self::Timeout(_))
    }

    /// Classifies an error from redis-rs. `script` says whether the failed command ran a
    /// script, so that a plain `ERR` from it is reported as a script failure.
    pub(crate) fn from_redis(err: RedisError, script: bool, timeout: Duration) -> Self {
        if err.is_timeout() {
            return Self::Timeout(timeout);
        }
        if matches!(err.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
            || acl_denied_in_script(&err)
        {
            return Self::Auth { source: err };
        }
        match err.kind() {
            ErrorKind::AuthenticationFailed | ErrorKind::Server(ServerErrorKind::NoPerm) => {
                Self::Auth { source: err }
            }
            ErrorKind::Io => Self::Unreachable { source: err },
            // A client in cluster mode hash-tags every key of a limiter into one slot, so a
            // cross-slot call comes only from one that is not.
            ErrorKind::Server(
                ServerErrorKind::Moved | ServerErrorKind::Ask | ServerErrorKind::CrossSlot,
            ) => Self::NotClusterMode { source: err },
            ErrorKind::InvalidClientConfig => Self::InvalidArgument(err.to_string()),
            ErrorKind::Server(ServerErrorKind::ResponseError) if script => {
                Self::Script(err.to_string())
            }
            _ if err.is_connection_refusal() || err.is_connection_dropped() => {
                Self::Unreachable { source: err }
            }
            ErrorKind::Parse | ErrorKind::UnexpectedReturnType if script => {
                Self::Script(err.to_string())
            }
            _ => Self::Redis { source: err },
        }
    }
}

/// A command a script ran was refused by the caller's ACL. Redis reports it as a plain `ERR`
/// ("The user executing the script can't run this command or subcommand"), which would
/// otherwise read as a bug in the script rather than a user missing a permission.
fn acl_denied_in_script(err: &RedisError) -> bool {
    err.code() == Some("ERR")
        && err.detail().is_some_and(|d| {
            d.contains("user executing the script can't run this command")
                || d.contains("user executing the script can't access")
                || d.contains("no permissions to access")
        })
}
