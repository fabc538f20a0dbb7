//! Long work started from a page (back up, restore, check, prune) runs
//! as a job on tokio's blocking pool; the page polls its state. The job's
//! [`JobProgress`] is the library's `Progress` sink, and the Cancel
//! button sets what `Progress::cancelled` answers, so a cancelled backup
//! stops and gives its references back as an interrupted CLI run does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{Value, json};

use crate::progress::Progress;

/// Counters the library bumps while a job runs.
#[derive(Default)]
pub struct JobProgress {
    phase: Mutex<String>,
    total_files: AtomicU64,
    total_bytes: AtomicU64,
    walked: AtomicU64,
    files: AtomicU64,
    bytes: AtomicU64,
    cancel: AtomicBool,
}

impl Progress for JobProgress {
    fn phase(&self, what: &str, total_files: u64, total_bytes: u64) {
        *self.phase.lock().unwrap_or_else(|p| p.into_inner()) = what.to_owned();
        self.total_files.store(total_files, Ordering::Relaxed);
        self.total_bytes.store(total_bytes, Ordering::Relaxed);
        self.files.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
    }
    fn walked(&self) {
        self.walked.fetch_add(1, Ordering::Relaxed);
    }
    fn file_done(&self, bytes: u64) {
        self.files.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

/// Where a job is.
#[derive(Clone, Debug)]
pub enum JobState {
    Running,
    /// Finished; what it did, as the API shows it.
    Done(Value),
    Failed(String),
}

pub struct Job {
    pub id: u64,
    pub kind: &'static str,
    pub title: String,
    pub progress: JobProgress,
    started: Instant,
    state: Mutex<JobState>,
}

impl Job {
    pub fn cancel(&self) {
        self.progress.cancel.store(true, Ordering::Relaxed);
    }

    pub fn finish(&self, state: JobState) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = state;
    }

    /// The job as `/api/jobs/ID` shows it: counters, rate and ETA.
    pub fn to_json(&self) -> Value {
        let p = &self.progress;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let secs = self.started.elapsed().as_secs_f64();
        let (bytes, total_bytes) = (get(&p.bytes), get(&p.total_bytes));
        let rate = if secs > 0.0 { bytes as f64 / secs } else { 0.0 };
        let eta = (total_bytes > bytes && rate > 0.0)
            .then(|| ((total_bytes - bytes) as f64 / rate).round());
        let (state, result, error) = match &*self.state.lock().unwrap_or_else(|e| e.into_inner()) {
            JobState::Running => ("running", Value::Null, Value::Null),
            JobState::Done(v) => ("done", v.clone(), Value::Null),
            JobState::Failed(e) => ("failed", Value::Null, json!(e)),
        };
        json!({
            "id": self.id,
            "kind": self.kind,
            "title": self.title,
            "state": state,
            "cancel_requested": p.cancelled(),
            "phase": p.phase.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            "walked": get(&p.walked),
            "files": get(&p.files),
            "total_files": get(&p.total_files),
            "bytes": bytes,
            "total_bytes": total_bytes,
            "elapsed_secs": secs,
            "rate_bytes_per_sec": rate,
            "eta_secs": eta,
            "result": result,
            "error": error,
        })
    }
}

/// The jobs of this launch.
#[derive(Default)]
pub struct Jobs {
    next: AtomicU64,
    jobs: Mutex<HashMap<u64, Arc<Job>>>,
}

impl Jobs {
    /// Starts `work` on the blocking pool as a new job.
    pub fn start(
        &self,
        kind: &'static str,
        title: String,
        work: impl FnOnce(&Job) -> Result<Value, String> + Send + 'static,
    ) -> Arc<Job> {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let job = Arc::new(Job {
            id,
            kind,
            title,
            progress: JobProgress::default(),
            started: Instant::now(),
            state: Mutex::new(JobState::Running),
        });
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, job.clone());
        let running = job.clone();
        tokio::task::spawn_blocking(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&running)))
                .unwrap_or_else(|_| {
                    Err("the job failed unexpectedly (a bug: please report it)".into())
                });
            running.finish(match outcome {
                Ok(v) => JobState::Done(v),
                Err(e) => JobState::Failed(e),
            });
        });
        job
    }

    pub fn get(&self, id: u64) -> Option<Arc<Job>> {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    /// Every job, newest first.
    pub fn all(&self) -> Vec<Arc<Job>> {
        let mut v: Vec<_> = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by_key(|j| std::cmp::Reverse(j.id));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_counts_and_cancel() {
        let p = JobProgress::default();
        p.phase("storing", 2, 100);
        p.file_done(60);
        assert_eq!(p.bytes.load(Ordering::Relaxed), 60);
        assert!(!p.cancelled());
        p.cancel.store(true, Ordering::Relaxed);
        assert!(p.cancelled());
    }
}
