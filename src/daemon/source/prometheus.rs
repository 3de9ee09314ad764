//! The Prometheus HTTP API client: connect and request timeouts, authentication from files
//! or the environment, a private CA, and every failure classified as a [`NoData`] reason.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};

use super::{MetricSource, NoData, Series, series};
use crate::daemon::config::PrometheusConfig;

/// The Prometheus HTTP API, through `prometheus-http-query` over a `reqwest` client with
/// connect and request timeouts and the configured authentication.
#[derive(Clone)]
pub struct Prometheus {
    client: prometheus_http_query::Client,
    url: String,
    timeout: Duration,
}

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prometheus")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Why the Prometheus client could not be built: a secret or CA file that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("prometheus: {0}")]
pub struct SourceError(String);

impl Prometheus {
    /// A client for `config`. Secrets are read now (and again on reload), never logged.
    ///
    /// # Errors
    /// A secret file, environment variable or CA file that cannot be read, or a bad URL.
    pub fn new(config: &PrometheusConfig) -> Result<Self, SourceError> {
        // reqwest is built without a bundled crypto provider; use the one the client uses.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut headers = HeaderMap::new();
        if let Some(token) = bearer_token(config)? {
            headers.insert(AUTHORIZATION, sensitive(&format!("Bearer {token}"))?);
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .timeout(config.timeout);
        if let Some(auth) = &config.basic_auth {
            let password = secret(
                auth.password_file.as_deref(),
                auth.password_env.as_deref(),
                "basic_auth password",
            )?
            .unwrap_or_default();
            let basic = basic_auth(&auth.username, &password);
            headers.insert(AUTHORIZATION, sensitive(&basic)?);
        }
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| SourceError(format!("ca_file {}: {e}", path.display())))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| SourceError(format!("ca_file {}: {e}", path.display())))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .default_headers(headers)
            .build()
            .map_err(|e| SourceError(format!("HTTP client: {e}")))?;
        let client = prometheus_http_query::Client::from(http, &config.url)
            .map_err(|e| SourceError(format!("url {:?}: {e}", config.url)))?;
        Ok(Self {
            client,
            url: config.url.clone(),
            timeout: config.timeout,
        })
    }
}

impl MetricSource for Prometheus {
    async fn query(&self, promql: &str) -> Result<Vec<Series>, NoData> {
        let request = self.client.query(promql).get();
        // reqwest's own timeout covers the request; this one covers everything else.
        let answer = match tokio::time::timeout(
            self.timeout.saturating_add(Duration::from_millis(100)),
            request,
        )
        .await
        {
            Err(_) => return Err(NoData::Timeout),
            Ok(Err(e)) => return Err(classify(&e)),
            Ok(Ok(answer)) => answer,
        };
        series(answer)
    }
}

fn classify(e: &prometheus_http_query::Error) -> NoData {
    use prometheus_http_query::Error;
    match e {
        Error::Prometheus(p) if p.is_timeout() => NoData::Timeout,
        Error::Prometheus(p) => NoData::Rejected(p.message().to_owned()),
        Error::Client(c) => match c.inner() {
            Some(r) if r.is_timeout() => NoData::Timeout,
            Some(r) if r.is_connect() => NoData::Unreachable(r.to_string()),
            Some(r) => match r.status() {
                Some(status) => NoData::Http(status.as_u16()),
                None if r.is_decode() || r.is_body() => NoData::Malformed(r.to_string()),
                None => NoData::Unreachable(r.to_string()),
            },
            None => NoData::Malformed(c.to_string()),
        },
        other => NoData::Malformed(other.to_string()),
    }
}

fn secret(
    file: Option<&std::path::Path>,
    env: Option<&str>,
    what: &str,
) -> Result<Option<String>, SourceError> {
    crate::daemon::secret::read(file, env, what).map_err(|e| SourceError(e.0))
}

fn bearer_token(config: &PrometheusConfig) -> Result<Option<String>, SourceError> {
    secret(
        config.bearer_token_file.as_deref(),
        config.bearer_token_env.as_deref(),
        "bearer token",
    )
}

fn sensitive(value: &str) -> Result<HeaderValue, SourceError> {
    let mut v = HeaderValue::from_str(value)
        .map_err(|_| SourceError("a credential holds characters not allowed in a header".into()))?;
    v.set_sensitive(true);
    Ok(v)
}

fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

#[cfg(test)]
mod tests {
    use super::basic_auth;

    #[test]
    fn basic_auth_is_standard_base64() {
        assert_eq!(
            basic_auth("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(basic_auth("a", "b"), "Basic YTpi");
    }
}
