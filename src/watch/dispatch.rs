//! The per-container job queues of the daemon and the threads its jobs run on: jobs of one
//! container run in order from a queue that exists only while the container has work; every job
//! runs on a fresh thread (at most [`MAX_JOB_THREADS`] at once) so the event loop never blocks.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};

use anyhow::{Result, anyhow};

use super::jobs::run_job;
use super::labels::Job;
use super::{Shared, locked};

/// One ordered queue (and worker task) per container with work pending. A queue exists while
/// its container has a job queued or running and is dropped as soon as it is idle (not only on
/// `destroy`), so the map holds busy containers only.
#[derive(Default)]
pub struct Dispatcher {
    queues: Arc<Mutex<HashMap<String, VecDeque<Job>>>>,
}

impl Dispatcher {
    pub fn dispatch(&self, shared: &Arc<Shared>, job: Job) {
        let id = job.container_id().to_string();
        let mut queues = locked(&self.queues);
        if let Some(queue) = queues.get_mut(&id) {
            queue.push_back(job);
            return;
        }
        queues.insert(id.clone(), VecDeque::from([job]));
        shared.metrics.set_queues(queues.len());
        drop(queues);
        let mut worker = Worker {
            queues: self.queues.clone(),
            id,
            shared: shared.clone(),
            done: false,
        };
        tokio::spawn(async move {
            while let Some(job) = worker.next() {
                run_job(&worker.shared, job).await;
            }
        });
    }
}

/// The worker of one container's queue; dropping it (also when a job panics) drops the queue.
struct Worker {
    queues: Arc<Mutex<HashMap<String, VecDeque<Job>>>>,
    id: String,
    shared: Arc<Shared>,
    done: bool,
}

impl Worker {
    /// The next job, or `None` once the queue is empty, which is then removed under the same
    /// lock that `dispatch` takes, so no job is ever left in a queue without a worker.
    fn next(&mut self) -> Option<Job> {
        let mut queues = locked(&self.queues);
        let job = queues.get_mut(&self.id).and_then(VecDeque::pop_front);
        if job.is_none() {
            queues.remove(&self.id);
            self.shared.metrics.set_queues(queues.len());
            self.done = true;
        }
        job
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if !self.done {
            let mut queues = locked(&self.queues);
            queues.remove(&self.id);
            self.shared.metrics.set_queues(queues.len());
        }
    }
}

/// Job threads (attach, cleanup, gc) running at once; further jobs wait (as tasks) for one.
pub const MAX_JOB_THREADS: usize = 16;
static JOB_THREADS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_JOB_THREADS);

/// Job threads running now.
pub fn job_threads_busy() -> usize {
    MAX_JOB_THREADS.saturating_sub(JOB_THREADS.available_permits())
}

/// Runs `work` through [`crate::worker::spawn`] (a thread of its own, in the daemon's namespace,
/// with a runtime of its own) and awaits it without blocking the event loop. At most
/// [`MAX_JOB_THREADS`] run at once: the call waits for a free slot first.
pub async fn on_thread<T, F, Fut>(name: &str, work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T>>,
{
    let permit = JOB_THREADS
        .acquire()
        .await
        .map_err(|_| anyhow!("the job thread bound was closed"))?;
    crate::worker::spawn(name, None, move || async move {
        // The slot is the thread's: freed when its work ends, whoever awaits it.
        let _permit = permit;
        work().await
    })
    .await
}
