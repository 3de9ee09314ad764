//! The Prometheus HTTP API client: connect and request timeouts, authentication from files
//! or the environment, a private CA, and every failure classified as a [`NoData`] reason.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};

use super::{MetricSource, NoData, Series, parse_answer};
use crate::config::PrometheusConfig;

/// The Prometheus HTTP API's instant queries, over a `reqwest` client with connect and request
/// timeouts and the configured authentication. Answers are read by [`super::parse_answer`].
#[derive(Clone)]
pub struct Prometheus {
    http: reqwest::Client,
    /// `<url>/api/v1/query`.
    endpoint: reqwest::Url,
    /// The largest answer read, in bytes.
    max_answer: usize,
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
        let endpoint = endpoint(&config.url)?;
        Ok(Self {
            http,
            endpoint,
            max_answer: MAX_ANSWER,
            url: config.url.clone(),
            timeout: config.timeout,
        })
    }
}

/// The largest answer read by default: a templated policy over 100,000 throttles gets about
/// 13 MB, so this allows some 2,000,000 series while a broken proxy streaming without end
/// cannot exhaust the daemon's memory within the request timeout.
pub const MAX_ANSWER: usize = 256 << 20;

impl Prometheus {
    /// Refuses answers larger than `bytes` as malformed ([`MAX_ANSWER`] by default).
    #[must_use]
    pub fn max_answer(mut self, bytes: usize) -> Self {
        self.max_answer = bytes;
        self
    }
}

/// The body of `response`, read up to `limit` bytes.
async fn body(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, NoData> {
    let too_big = || NoData::Malformed(format!("the answer is larger than {limit} bytes"));
    let announced = response.content_length().unwrap_or(0);
    if announced > limit as u64 {
        return Err(too_big());
    }
    let mut body = Vec::with_capacity(usize::try_from(announced).unwrap_or(0));
    while let Some(chunk) = response.chunk().await.map_err(|e| classify(&e))? {
        if chunk.len() > limit - body.len() {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl MetricSource for Prometheus {
    async fn query(&self, promql: &str, label: Option<&str>) -> Result<Vec<Series>, NoData> {
        let mut url = self.endpoint.clone();
        url.query_pairs_mut().append_pair("query", promql);
        let request = async {
            let response = self.http.get(url).send().await.map_err(|e| classify(&e))?;
            let status = response.status();
            if status.is_success() {
                return parse_answer(&body(response, self.max_answer).await?, label);
            }
            // A failed status is an HTTP error unless its body is Prometheus's own error (a
            // bad query, a query that timed out), which is short: a proxy's page, a body cut
            // off or too long, is the status.
            let failed = body(response, MAX_ERROR_BODY).await.ok();
            Err(failed.map_or(NoData::Http(status.as_u16()), |b| error_answer(status, &b)))
        };
        // reqwest's own timeout covers the request; this one covers everything else.
        tokio::time::timeout(
            self.timeout.saturating_add(Duration::from_millis(100)),
            request,
        )
        .await
        .unwrap_or(Err(NoData::Timeout))
    }
}

/// The most of a failed answer's body that is read: Prometheus's own errors are far shorter.
const MAX_ERROR_BODY: usize = 64 << 10;

/// Why an answer with the failed HTTP `status` has no data. Prometheus sends its own errors (a
/// bad query, a query that timed out) as JSON with a 4xx or 5xx status; any other failed
/// answer (a proxy's 502) is an HTTP error.
fn error_answer(status: reqwest::StatusCode, body: &[u8]) -> NoData {
    match parse_answer(body, None) {
        Err(e @ (NoData::Rejected(_) | NoData::Timeout)) => e,
        _ => NoData::Http(status.as_u16()),
    }
}

/// `<url>/api/v1/query`, under the URL's own path (a Prometheus behind a path prefix).
fn endpoint(url: &str) -> Result<reqwest::Url, SourceError> {
    let bad = |e: &dyn std::fmt::Display| SourceError(format!("url {url:?}: {e}"));
    let mut endpoint = reqwest::Url::parse(url).map_err(|e| bad(&e))?;
    if !matches!(endpoint.scheme(), "http" | "https") {
        return Err(bad(&"not an http or https URL"));
    }
    let path = format!("{}/api/v1/query", endpoint.path().trim_end_matches('/'));
    endpoint.set_path(&path);
    // Parameters of the URL itself (a proxy's tenant, say) go with every query.
    Ok(endpoint)
}

fn classify(e: &reqwest::Error) -> NoData {
    if e.is_timeout() {
        NoData::Timeout
    } else if let Some(status) = e.status() {
        NoData::Http(status.as_u16())
    } else if e.is_connect() {
        NoData::Unreachable(e.to_string())
    } else if e.is_decode() || e.is_body() {
        NoData::Malformed(e.to_string())
    } else {
        NoData::Unreachable(e.to_string())
    }
}

fn secret(
    file: Option<&std::path::Path>,
    env: Option<&str>,
    what: &str,
) -> Result<Option<String>, SourceError> {
    crate::secret::read(file, env, what).map_err(|e| SourceError(e.0))
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
    use super::{NoData, basic_auth, endpoint, error_answer};

    #[test]
    fn basic_auth_is_standard_base64() {
        assert_eq!(
            basic_auth("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(basic_auth("a", "b"), "Basic YTpi");
    }

    #[test]
    fn the_query_endpoint_keeps_a_path_prefix() {
        for (url, want) in [
            (
                "http://127.0.0.1:9090",
                "http://127.0.0.1:9090/api/v1/query",
            ),
            ("http://p:9090/", "http://p:9090/api/v1/query"),
            ("https://p/prometheus", "https://p/prometheus/api/v1/query"),
            (
                "https://p/prometheus/?tenant=x",
                "https://p/prometheus/api/v1/query?tenant=x",
            ),
        ] {
            assert_eq!(endpoint(url).unwrap().as_str(), want);
        }
        for bad in ["127.0.0.1:9090", "ftp://p/", "not a url"] {
            assert!(
                endpoint(bad).unwrap_err().to_string().contains(bad),
                "{bad}"
            );
        }
    }

    #[test]
    fn prometheus_errors_keep_their_reason_whatever_the_status() {
        use reqwest::StatusCode;
        let rejected = br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        let timeout = br#"{"status":"error","errorType":"timeout","error":"query timed out"}"#;
        assert_eq!(
            error_answer(StatusCode::BAD_REQUEST, rejected),
            NoData::Rejected("parse error".into())
        );
        assert_eq!(
            error_answer(StatusCode::SERVICE_UNAVAILABLE, timeout),
            NoData::Timeout
        );
        assert_eq!(
            error_answer(StatusCode::BAD_GATEWAY, b"<html>"),
            NoData::Http(502)
        );
        assert_eq!(
            error_answer(StatusCode::BAD_GATEWAY, b""),
            NoData::Http(502)
        );
    }
}
