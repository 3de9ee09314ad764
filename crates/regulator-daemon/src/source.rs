//! Signals from Prometheus: one instant query per policy per tick, and the rules that decide
//! whether an answer is usable.
//!
//! An answer is usable only if it is exactly what the policy expects: one finite, fresh sample
//! per throttle. Anything else is a [`NoData`] with its own reason, so operators can tell an
//! empty result from a timeout from a broken proxy, and `on_no_data` applies.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

mod prometheus;

pub use prometheus::{MAX_ANSWER, Prometheus, SourceError};

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
    /// Its labels: from Prometheus, only the one the query asked to keep.
    pub labels: Vec<(String, String)>,
    /// Its value.
    pub value: f64,
    /// Its timestamp, Unix seconds.
    pub timestamp: f64,
}

impl Series {
    /// The value of the label `name`, if the series has it.
    #[must_use]
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find_map(|(k, v)| (k == name).then_some(v.as_str()))
    }
}

/// Where signals come from. Prometheus in production; fakes in unit tests.
pub trait MetricSource: Send + Sync {
    /// Runs an instant query, keeping only `label` of each series' labels (none for `None`).
    fn query(
        &self,
        promql: &str,
        label: Option<&str>,
    ) -> impl Future<Output = Result<Vec<Series>, NoData>> + Send;
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
        if let Some(v) = s.label(label) {
            groups.entry(v.to_owned()).or_default().push(s);
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
    // A NaN age (a broken timestamp) is stale too, never fresh.
    if age.is_nan() || age > max_age.as_secs_f64() {
        return Err(NoData::Stale(age));
    }
    Ok(s.value)
}

/// The series of a whole `/api/v1/query` response body, as [`Prometheus`] reads it (also for
/// replaying recorded answers and for fuzzing the parser with hostile ones): an instant
/// vector's samples, or a scalar as one series without labels. A range vector is malformed: a
/// policy's query must give one value per throttle.
///
/// Of each series' labels only `label` is kept (none for `None`): the one a templated policy
/// names its throttles by. The body is read in one pass, strings borrowed where they can be,
/// so an answer costs little more memory than its body, however many labels it carries (a
/// templated policy's answer over 100,000 throttles is about 13 MB).
///
/// # Errors
/// [`NoData::Rejected`] for an error response ([`NoData::Timeout`] for a query that timed out
/// in Prometheus), [`NoData::Malformed`] for anything that is not a Prometheus API response
/// with an instant vector or a scalar.
pub fn parse_answer(body: &[u8], label: Option<&str>) -> Result<Vec<Series>, NoData> {
    let body: Body<'_> = serde_json::from_slice(body).map_err(malformed)?;
    match (&*body.status, body.data) {
        ("success", Some(data)) => data.series(label),
        ("error", _) if body.error_type.as_deref() == Some("timeout") => Err(NoData::Timeout),
        ("error", _) => Err(NoData::Rejected(body.error.unwrap_or_default())),
        (status, _) => Err(NoData::Malformed(format!("status {status:?} without data"))),
    }
}

#[allow(clippy::needless_pass_by_value)] // the shape `map_err` wants
fn malformed(e: serde_json::Error) -> NoData {
    NoData::Malformed(e.to_string())
}

/// A Prometheus API response; unknown fields (`warnings`, `infos`) are ignored.
#[derive(serde::Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    status: Cow<'a, str>,
    #[serde(borrow)]
    data: Option<Data<'a>>,
    error: Option<String>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
}

/// A query's `data`: its result is kept as raw JSON until its type is known, so the body is
/// never buffered into a generic tree first.
#[derive(serde::Deserialize)]
struct Data<'a> {
    #[serde(rename = "resultType", borrow)]
    result_type: Cow<'a, str>,
    #[serde(borrow)]
    result: &'a serde_json::value::RawValue,
}

impl Data<'_> {
    fn series(&self, label: Option<&str>) -> Result<Vec<Series>, NoData> {
        let result = self.result.get();
        match &*self.result_type {
            "vector" => {
                use serde::de::DeserializeSeed as _;
                let mut json = serde_json::Deserializer::from_str(result);
                let series = Vector(label).deserialize(&mut json).map_err(malformed)?;
                json.end().map_err(malformed)?;
                Ok(series)
            }
            "scalar" => {
                let point: Point<'_> = serde_json::from_str(result).map_err(malformed)?;
                Ok(vec![Series {
                    labels: Vec::new(),
                    value: point.value().map_err(NoData::Malformed)?,
                    timestamp: point.0,
                }])
            }
            "matrix" => Err(NoData::Malformed(
                "a range vector; the query must give an instant vector or a scalar".to_owned(),
            )),
            other => Err(NoData::Malformed(format!(
                "result type {other:?}; the query must give an instant vector or a scalar"
            ))),
        }
    }
}

/// `[timestamp, "value"]`: Prometheus writes values as strings (`"NaN"`, `"+Inf"` included).
#[derive(serde::Deserialize)]
struct Point<'a>(f64, #[serde(borrow)] Cow<'a, str>);

impl Point<'_> {
    fn value(&self) -> Result<f64, String> {
        self.1
            .parse()
            .map_err(|_| format!("sample value {:?} is not a number", self.1))
    }
}

/// A JSON string, borrowed from the body unless it has escapes.
#[derive(serde::Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// An instant vector's samples, keeping one label (`.0`) of each.
struct Vector<'k>(Option<&'k str>);

impl<'de> serde::de::DeserializeSeed<'de> for Vector<'_> {
    type Value = Vec<Series>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Vec<Series>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Vector<'_> {
    type Value = Vec<Series>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of samples")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Series>, A::Error> {
        let mut series = Vec::new();
        while let Some(s) = seq.next_element_seed(Sample(self.0))? {
            series.push(s);
        }
        Ok(series)
    }
}

/// One sample of an instant vector: `{"metric": {...}, "value": [t, "v"]}`.
struct Sample<'k>(Option<&'k str>);

impl<'de> serde::de::DeserializeSeed<'de> for Sample<'_> {
    type Value = Series;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Series, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Sample<'_> {
    type Value = Series;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a sample with metric and value")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Series, A::Error> {
        use serde::de::{Error as _, IgnoredAny};
        let (mut labels, mut point) = (None, None::<Point<'de>>);
        while let Some(key) = map.next_key::<Text<'de>>()? {
            match &*key.0 {
                "metric" => labels = Some(map.next_value_seed(Labels(self.0))?),
                "value" => point = Some(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let labels = labels.ok_or_else(|| A::Error::missing_field("metric"))?;
        let point = point.ok_or_else(|| A::Error::missing_field("value"))?;
        Ok(Series {
            labels,
            value: point.value().map_err(A::Error::custom)?,
            timestamp: point.0,
        })
    }
}

/// A sample's label set, of which only the label `.0` is kept (the last, if it repeats).
struct Labels<'k>(Option<&'k str>);

impl<'de> serde::de::DeserializeSeed<'de> for Labels<'_> {
    type Value = Vec<(String, String)>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Labels<'_> {
    type Value = Vec<(String, String)>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a map of label names to values")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut kept = Vec::new();
        while let Some(name) = map.next_key::<Text<'de>>()? {
            if Some(&*name.0) == self.0 {
                let value: Text<'de> = map.next_value()?;
                kept = vec![(name.0.into_owned(), value.0.into_owned())];
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::fakes::series as s;

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
    fn a_sample_with_a_broken_timestamp_is_stale_not_fresh() {
        assert!(matches!(
            single(&[s(0.3, f64::NAN, &[])], 100.0, AGE),
            Err(NoData::Stale(_))
        ));
    }

    #[test]
    fn only_the_asked_label_is_kept_escapes_and_repeats_included() {
        let vector = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"__name__":"load","tenant":"ac\u006de","job":"x"},"value":[1,"1"],"extra":[{}]},
            {"metric":{"tenant":"first","tenant":"last"},"value":[1,"2"]},
            {"metric":{"job":"no tenant"},"value":[1,"3"]}]},"warnings":["w"]}"#;
        let got = parse_answer(vector, Some("tenant")).unwrap();
        let labels: Vec<_> = got.iter().map(|s| s.labels.clone()).collect();
        assert_eq!(
            labels,
            [
                vec![("tenant".to_owned(), "acme".to_owned())],
                vec![("tenant".to_owned(), "last".to_owned())],
                vec![],
            ]
        );
        let none = parse_answer(vector, None).unwrap();
        assert!(none.iter().all(|s| s.labels.is_empty()));
        assert_eq!(none.iter().map(|s| s.value).sum::<f64>(), 6.0);
    }

    #[test]
    fn recorded_answers_parse_as_prometheus_sends_them() {
        let vector = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"tenant":"acme"},"value":[1700000000.5,"0.25"]},
            {"metric":{"tenant":"globex"},"value":[1700000000.5,"NaN"]}]}}"#;
        let got = parse_answer(vector, Some("tenant")).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].label("tenant"), Some("acme"));
        assert_eq!(got[0].value, 0.25);
        assert!(got[1].value.is_nan());
        let scalar = br#"{"status":"success","data":{"resultType":"scalar","result":[1.5,"2"]}}"#;
        assert_eq!(parse_answer(scalar, None).unwrap()[0].value, 2.0);
        let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(matches!(
            parse_answer(matrix, None),
            Err(NoData::Malformed(_))
        ));
        let error = br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        assert_eq!(
            parse_answer(error, None),
            Err(NoData::Rejected("parse error".to_owned()))
        );
        let timeout = br#"{"status":"error","errorType":"timeout","error":"query timed out"}"#;
        assert_eq!(parse_answer(timeout, None), Err(NoData::Timeout));
        for junk in [
            &b"<html>502</html>"[..],
            b"",
            b"{}",
            b"{\"status\":\"success\"}",
            br#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"1"]}]}}"#,
            br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{}}]}}"#,
            br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"one"]}]}}"#,
            br#"{"status":"success","data":{"resultType":"string","result":[1,"x"]}}"#,
        ] {
            assert!(
                matches!(parse_answer(junk, None), Err(NoData::Malformed(_))),
                "{junk:?}"
            );
        }
    }
}
