//! The Prometheus source against a real `prometheus` scraping an exporter the test controls,
//! and against servers that answer badly: every kind of unusable answer has its own reason.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use regulator_daemon::config::PrometheusConfig;
use regulator_daemon::source::{self, MetricSource, NoData, Prometheus};
use regulator_testing::{Answer, Exporter, PrometheusServer, Scripted};

const AGE: Duration = Duration::from_secs(60);

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn client(url: &str, timeout: Duration) -> Prometheus {
    Prometheus::new(&PrometheusConfig {
        url: url.to_owned(),
        timeout,
        ..PrometheusConfig::default()
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_prometheus_answers_are_read_or_refused_with_a_reason() {
    let exporter = Exporter::start().unwrap();
    exporter.set("db_latency_seconds", 0.3);
    exporter.set(r#"pool_free{pool="a"}"#, 1.0);
    exporter.set(r#"pool_free{pool="b"}"#, 2.0);
    exporter.set("broken_ratio", f64::NAN);
    exporter.set("broken_inf", f64::INFINITY);
    exporter.set(r#"tenant_errors{tenant="acme"}"#, 0.01);
    exporter.set(r#"tenant_errors{tenant="globex"}"#, 0.2);
    let mut prom = tokio::task::spawn_blocking(move || {
        let targets = [exporter.target()];
        (PrometheusServer::start(&targets).unwrap(), exporter)
    })
    .await
    .unwrap();
    let p = client(&prom.0.url(), Duration::from_secs(2));

    // The first scrape lands a few seconds after start.
    let start = Instant::now();
    let value = loop {
        if let Ok(v) = source::single(
            &p.query("db_latency_seconds", None).await.unwrap(),
            now(),
            AGE,
        ) {
            break v;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "never scraped");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(value, 0.3);

    let single = |series: Vec<source::Series>| source::single(&series, now(), AGE);
    assert_eq!(
        single(p.query("absent_metric", None).await.unwrap()),
        Err(NoData::Empty)
    );
    assert_eq!(
        single(p.query("pool_free", None).await.unwrap()),
        Err(NoData::Ambiguous(2))
    );
    assert!(
        matches!(single(p.query("broken_ratio", None).await.unwrap()), Err(NoData::NotFinite(v)) if v.is_nan())
    );
    assert_eq!(
        single(p.query("broken_inf", None).await.unwrap()),
        Err(NoData::NotFinite(f64::INFINITY))
    );
    assert_eq!(
        single(
            p.query("scalar(db_latency_seconds) * 2", None)
                .await
                .unwrap()
        ),
        Ok(0.6)
    );
    let err = p.query("sum by (", None).await.unwrap_err();
    assert_eq!(err.reason(), "rejected", "{err}");
    let err = p.query("db_latency_seconds[1m]", None).await.unwrap_err();
    assert_eq!(err.reason(), "malformed", "{err}");

    let per = source::per_label(
        &p.query("tenant_errors", Some("tenant")).await.unwrap(),
        "tenant",
        now(),
        AGE,
    );
    assert_eq!(per.get("acme"), Some(&Ok(0.01)));
    assert_eq!(per.get("globex"), Some(&Ok(0.2)));

    // Prometheus goes away: unreachable, quickly.
    prom.0.stop();
    let start = Instant::now();
    let err = p.query("db_latency_seconds", None).await.unwrap_err();
    assert_eq!(err.reason(), "unreachable", "{err}");
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn http_errors_garbage_and_silence_each_have_a_reason() {
    let bad_gateway = Scripted::start(Answer::Status(502, "Bad Gateway".into())).unwrap();
    let err = client(&bad_gateway.url(), Duration::from_secs(2))
        .query("up", None)
        .await
        .unwrap_err();
    assert_eq!(err, NoData::Http(502));

    let garbage =
        Scripted::start(Answer::Status(200, "<html>not prometheus</html>".into())).unwrap();
    let err = client(&garbage.url(), Duration::from_secs(2))
        .query("up", None)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "malformed", "{err}");

    // An answer past the size limit is refused, whatever it holds.
    let answer = format!(
        r#"{{"status":"success","data":{{"resultType":"scalar","result":[1,"{}"]}}}}"#,
        "1".repeat(4096)
    );
    let big = Scripted::start(Answer::Status(200, answer)).unwrap();
    let err = client(&big.url(), Duration::from_secs(2))
        .max_answer(4096)
        .query("up", None)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "malformed", "{err}");
    assert!(err.to_string().contains("larger than 4096 bytes"), "{err}");
    // Under the default limit the same answer is read: a scalar too large to be finite.
    let series = client(&big.url(), Duration::from_secs(2))
        .query("up", None)
        .await
        .unwrap();
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].value, f64::INFINITY);

    let silent = Scripted::start(Answer::Hang).unwrap();
    let start = Instant::now();
    let err = client(&silent.url(), Duration::from_millis(300))
        .query("up", None)
        .await
        .unwrap_err();
    assert_eq!(err, NoData::Timeout);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn secrets_that_cannot_be_read_are_errors_naming_them() {
    let config = PrometheusConfig {
        bearer_token_env: Some("REGULATOR_TEST_UNSET_TOKEN".into()),
        ..PrometheusConfig::default()
    };
    let err = Prometheus::new(&config).unwrap_err().to_string();
    assert!(err.contains("REGULATOR_TEST_UNSET_TOKEN"), "{err}");
    let config = PrometheusConfig {
        ca_file: Some("/nonexistent/ca.pem".into()),
        ..PrometheusConfig::default()
    };
    assert!(
        Prometheus::new(&config)
            .unwrap_err()
            .to_string()
            .contains("ca_file")
    );
}
