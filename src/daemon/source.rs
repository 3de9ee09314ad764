//! Signals from Prometheus: one instant query per policy per tick, and the rules that decide
//! whether an answer is usable.
//!
//! An answer is usable only if it is exactly what the policy expects: one finite, fresh sample
//! per throttle. Anything else is a [`NoData`] with its own reason, so operators can tell an
//! empty result from a timeout from a broken proxy, and `on_no_data` applies.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};

use super::config::PrometheusConfig;

/// Why a tick has no usable signal. Each reason is counted and logged under [`NoData::reason`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NoData {
    /// The query returned no series (the metric is absent, or every series went stale).
    #[error("the query returned no series")]
    Empty,
    /// The query returned several series where one was expected.
    #[error("the query returned {0} series where one was expected")]
    Ambiguous(usize),
    /// The value is NaN or infinite.
    #[error("the value is not finite: {0}")]
    NotFinite(f64),
    /// The sample is older than allowed (a lagging clock or a cached answer).
    #[error("the sample is {0:.1}s old")]
    Stale(f64),
    /// Prometheus (or a proxy in front of it) answered with an HTTP error status.
    #[error("HTTP status {0}")]
    Http(u16),
    /// No answer within the timeout.
    #[error("no answer within the timeout")]
    Timeout,
    /// Prometheus could not be reached.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The answer is not a Prometheus API response, or not an instant vector or scalar.
    #[error("malformed answer: {0}")]
    Malformed(String),
    /// Prometheus refused the query (a PromQL error, an execution error).
    #[error("query rejected: {0}")]
    Rejected(String),
}

impl NoData {
    /// A short, stable label for metrics (`no_data_total{reason=...}`).
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Ambiguous(_) => "ambiguous",
            Self::NotFinite(_) => "not_finite",
            Self::Stale(_) => "stale",
            Self::Http(_) => "http_error",
            Self::Timeout => "timeout",
            Self::Unreachable(_) => "unreachable",
            Self::Malformed(_) => "malformed",
            Self::Rejected(_) => "rejected",
        }
    }
}

/// One series of an instant query's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its labels.
    pub labels: HashMap<String, String>,
    /// Its value.
    pub value: f64,
    /// Its timestamp, Unix seconds.
    pub timestamp: f64,
}

/// Where signals come from. Prometheus in production; fakes in unit tests.
pub trait MetricSource: Send + Sync {
    /// Runs an instant query.
    fn query(&self, promql: &str) -> impl Future<Output = Result<Vec<Series>, NoData>> + Send;
}

/// The one sample a plain policy expects.
///
/// # Errors
/// The [`NoData`] reason when the answer is not exactly one finite sample at most `max_age`
/// old at `now` (Unix seconds).
pub fn single(series: &[Series], now: f64, max_age: Duration) -> Result<f64, NoData> {
    match series {
        [] => Err(NoData::Empty),
        [one] => usable(one, now, max_age),
        many => Err(NoData::Ambiguous(many.len())),
    }
}

/// One sample per value of `label`, for a templated policy. Series without the label are
/// ignored; a label value seen twice is ambiguous for that throttle only.
#[must_use]
pub fn per_label(
    series: &[Series],
    label: &str,
    now: f64,
    max_age: Duration,
) -> BTreeMap<String, Result<f64, NoData>> {
    let mut groups: BTreeMap<String, Vec<&Series>> = BTreeMap::new();
    for s in series {
        if let Some(v) = s.labels.get(label) {
            groups.entry(v.clone()).or_default().push(s);
        }
    }
    groups
        .into_iter()
        .map(|(name, group)| {
            let result = match group.as_slice() {
                [one] => usable(one, now, max_age),
                many => Err(NoData::Ambiguous(many.len())),
            };
            (name, result)
        })
        .collect()
}

fn usable(s: &Series, now: f64, max_age: Duration) -> Result<f64, NoData> {
    if !s.value.is_finite() {
        return Err(NoData::NotFinite(s.value));
    }
    let age = now - s.timestamp;
    if age > max_age.as_secs_f64() {
        return Err(NoData::Stale(age));
    }
    Ok(s.value)
}

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
        match answer.into_inner().0 {
            prometheus_http_query::response::Data::Vector(v) => Ok(v
                .into_iter()
                .map(|iv| {
                    let (labels, sample) = iv.into_inner();
                    Series {
                        labels,
                        value: sample.value(),
                        timestamp: sample.timestamp(),
                    }
                })
                .collect()),
            prometheus_http_query::response::Data::Scalar(s) => Ok(vec![Series {
                labels: HashMap::new(),
                value: s.value(),
                timestamp: s.timestamp(),
            }]),
            prometheus_http_query::response::Data::Matrix(_) => Err(NoData::Malformed(
                "a range vector; the query must give an instant vector or a scalar".to_owned(),
            )),
        }
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
    super::secret::read(file, env, what).map_err(|e| SourceError(e.0))
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
    use super::*;

    use crate::daemon::fakes::series as s;

    const AGE: Duration = Duration::from_secs(20);

    #[test]
    fn one_fresh_finite_sample_is_usable() {
        assert_eq!(single(&[s(0.3, 100.0, &[])], 105.0, AGE), Ok(0.3));
    }

    #[test]
    fn every_unusable_answer_has_its_reason() {
        assert_eq!(single(&[], 100.0, AGE), Err(NoData::Empty));
        let two = [s(1.0, 100.0, &[]), s(2.0, 100.0, &[])];
        assert_eq!(single(&two, 100.0, AGE), Err(NoData::Ambiguous(2)));
        assert!(matches!(
            single(&[s(f64::NAN, 100.0, &[])], 100.0, AGE),
            Err(NoData::NotFinite(_))
        ));
        assert!(matches!(
            single(&[s(f64::INFINITY, 100.0, &[])], 100.0, AGE),
            Err(NoData::NotFinite(_))
        ));
        assert_eq!(
            single(&[s(1.0, 50.0, &[])], 100.0, AGE),
            Err(NoData::Stale(50.0))
        );
        let reasons: std::collections::HashSet<&str> = [
            NoData::Empty,
            NoData::Ambiguous(2),
            NoData::NotFinite(f64::NAN),
            NoData::Stale(1.0),
            NoData::Http(502),
            NoData::Timeout,
            NoData::Unreachable(String::new()),
            NoData::Malformed(String::new()),
            NoData::Rejected(String::new()),
        ]
        .iter()
        .map(NoData::reason)
        .collect();
        assert_eq!(reasons.len(), 9, "every reason is distinct");
    }

    #[test]
    fn templated_answers_split_by_label() {
        let series = [
            s(0.1, 100.0, &[("tenant", "acme")]),
            s(0.2, 100.0, &[("tenant", "globex")]),
            s(0.3, 100.0, &[("tenant", "globex")]),
            s(f64::NAN, 100.0, &[("tenant", "initech")]),
            s(0.4, 100.0, &[]),
        ];
        let got = per_label(&series, "tenant", 100.0, AGE);
        assert_eq!(got.len(), 3);
        assert_eq!(got["acme"], Ok(0.1));
        assert_eq!(got["globex"], Err(NoData::Ambiguous(2)));
        assert!(matches!(got["initech"], Err(NoData::NotFinite(_))));
    }

    #[test]
    fn basic_auth_is_standard_base64() {
        assert_eq!(
            basic_auth("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(basic_auth("a", "b"), "Basic YTpi");
    }
}
