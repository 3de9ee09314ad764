//! In-memory stand-ins for Prometheus and Redis, for unit tests of the tick and the loop.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::source::{MetricSource, NoData, Series};
use super::store::{KnobChange, KnobStore, Written};
use regulator::StoredKnobs;

#[derive(Default)]
pub struct FakeSource {
    pub answer: Mutex<Option<Result<Vec<Series>, NoData>>>,
    /// Answers to particular queries, instead of `answer`.
    pub by_query: Mutex<HashMap<String, Result<Vec<Series>, NoData>>>,
    pub queries: AtomicUsize,
}

impl FakeSource {
    pub fn set(&self, answer: Result<Vec<Series>, NoData>) {
        *self.answer.lock().unwrap() = Some(answer);
    }
}

impl MetricSource for FakeSource {
    async fn query(&self, promql: &str, _label: Option<&str>) -> Result<Vec<Series>, NoData> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        if let Some(answer) = self.by_query.lock().unwrap().get(promql) {
            return answer.clone();
        }
        self.answer
            .lock()
            .unwrap()
            .clone()
            .unwrap_or(Ok(Vec::new()))
    }
}

#[derive(Default)]
pub struct MemStore {
    pub knobs: Mutex<HashMap<String, StoredKnobs>>,
    pub writes: Mutex<Vec<KnobChange>>,
    pub down: Mutex<bool>,
    pub fail_writes: Mutex<bool>,
    /// The names of each read, in order.
    pub reads: Mutex<Vec<Vec<String>>>,
    /// Answer each read one short (a broken store).
    pub short_reads: Mutex<bool>,
}

impl MemStore {
    pub fn rps(&self, name: &str) -> Option<f64> {
        match self.knobs.lock().unwrap().get(name) {
            Some(StoredKnobs::Valid(k)) => Some(k.rps),
            _ => None,
        }
    }

    fn fail_if_down(&self) -> regulator::Result<()> {
        if *self.down.lock().unwrap() {
            return Err(regulator::Error::Timeout(Duration::from_millis(250)));
        }
        Ok(())
    }
}

impl KnobStore for MemStore {
    async fn read(
        &self,
        names: &[String],
        _knob: crate::config::Knob,
    ) -> regulator::Result<Vec<StoredKnobs>> {
        self.fail_if_down()?;
        self.reads.lock().unwrap().push(names.to_vec());
        let knobs = self.knobs.lock().unwrap();
        let short = usize::from(*self.short_reads.lock().unwrap());
        Ok(names[short.min(names.len())..]
            .iter()
            .map(|n| knobs.get(n).cloned().unwrap_or(StoredKnobs::Absent))
            .collect())
    }

    async fn write(&self, changes: &[KnobChange]) -> regulator::Result<Written> {
        self.fail_if_down()?;
        if *self.fail_writes.lock().unwrap() {
            return Err(regulator::Error::Timeout(Duration::from_millis(250)));
        }
        let mut knobs = self.knobs.lock().unwrap();
        for c in changes {
            knobs.insert(c.name.clone(), StoredKnobs::Valid(c.new));
        }
        self.writes.lock().unwrap().extend_from_slice(changes);
        Ok(Written::All)
    }
}

/// A series with `labels`.
pub fn series(value: f64, timestamp: f64, labels: &[(&str, &str)]) -> Series {
    Series {
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        value,
        timestamp,
    }
}
