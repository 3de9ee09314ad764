//! Where the admin commands (`status`, `set`, `reset`) find Redis: a URL given on the
//! command line, else the `redis:` section of a configuration file (its password file,
//! variable and certificates included), else `$REGULATOR_REDIS_URL`, else the local default.

use std::path::PathBuf;

use super::backend::RedisSettings;
use super::config::{self, ConfigErrors};
use super::secret::SecretError;
use regulator::ClientBuilder;

/// The default when nothing names a Redis.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379/0";

/// The variable consulted when neither a URL nor a configuration is given.
pub const URL_ENV: &str = "REGULATOR_REDIS_URL";

/// What an admin command was told about Redis.
#[derive(Debug, Clone, Default)]
pub struct RedisTarget {
    /// A URL given on the command line.
    pub url: Option<String>,
    /// A configuration file to take `redis:` from.
    pub config: Option<PathBuf>,
    /// The URL is a cluster's seed node (a configuration's `redis.cluster` also counts).
    pub cluster: bool,
}

/// Why an admin command cannot connect.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The configuration file is not valid: every problem in it.
    #[error("{}", .0.to_string().trim_end())]
    Config(ConfigErrors),
    /// A secret or certificate it names cannot be read.
    #[error("redis: {0}")]
    Secret(#[from] SecretError),
}

impl RedisTarget {
    /// A client builder for this target.
    ///
    /// # Errors
    /// An invalid configuration file, or a secret or certificate it names that cannot be read.
    pub fn builder(&self) -> Result<ClientBuilder, TargetError> {
        if let Some(url) = &self.url {
            return Ok(regulator::Client::builder(url).cluster(self.cluster));
        }
        if let Some(path) = &self.config {
            let config = config::load(path).map_err(TargetError::Config)?;
            let cluster = config.redis.cluster || self.cluster;
            return Ok(RedisSettings::read(&config.redis)?
                .builder()
                .cluster(cluster));
        }
        let url = std::env::var(URL_ENV).unwrap_or_else(|_| DEFAULT_URL.to_owned());
        Ok(regulator::Client::builder(&url).cluster(self.cluster))
    }
}
