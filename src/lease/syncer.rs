//! The lease-sync thread: writes an attach's records and makes them durable (fdatasync, directory
//! fsync) while the attach goes on with its kernel work; for a one-shot attach
//! ([`Syncer::let_syncs_outlive`]) a child it forks syncs them (`durable.rs`). One per process
//! ([`Syncer::shared`]), started by the first attach early (before its Docker requests go out), so
//! that neither its start nor a sync is on the attach's path; the daemon's jobs share it (they do
//! their store work one at a time, under the store lock, so its queue stays short). It starts a
//! second thread of its own ([`Beside`]), for a sync that is to run at the same time as the one it
//! is doing: two syncs on one ext4 file system issued together complete in one journal commit, one
//! after the other they take two (a record's `fdatasync` and a directory's `fsync`: 0.69-0.73 ms
//! together against 0.85-0.87 in a row, medians of 150, a C loop on this VM). Side effects: two
//! threads, which a one-shot command ends ([`Syncer::retire_shared`]) once it has nothing more to
//! sync.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};

type Job = Box<dyn FnOnce() + Send>;

/// A thread that runs jobs in order, or, when it could not be started, runs them at once on
/// the caller's thread (correct, only slower). Dropped, it lets the thread end on its own (it is
/// not joined: every result that matters was waited for through its [`Ticket`]).
pub struct Syncer {
    jobs: Queue,
    beside: Beside,
    outlive: AtomicBool,
}

/// The sending end of a thread's queue, until it is closed: the thread runs what was sent and
/// ends; from then on jobs run in line. (A job is never lost: a job sent before the close
/// runs on the thread, one sent after runs on the caller's.)
#[derive(Default)]
struct Queue(Mutex<Option<mpsc::Sender<Job>>>);

impl Queue {
    fn open(tx: mpsc::Sender<Job>) -> Queue {
        Queue(Mutex::new(Some(tx)))
    }

    fn set(&self, tx: mpsc::Sender<Job>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
    }

    /// A sender of its own (not the lock held while the job is sent or run in line).
    fn sender(&self) -> Option<mpsc::Sender<Job>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn close(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// The syncer's second thread, for a job that should run beside the one the first thread is
/// running ([`Beside::run`]). Started by the first thread, off the caller's path; until it runs
/// (or when it could not be started) its jobs run in line on the calling thread, one after the
/// other as before. Cloned into a job of the first thread.
#[derive(Clone, Default)]
pub struct Beside(Arc<Queue>);

impl Beside {
    /// Runs `f` on the second thread, or at once on this one when there is none.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Ticket<T> {
        submit(self.0.sender(), f)
    }

    /// Starts the thread (called on the first thread, at its start).
    fn start(&self) {
        let (tx, rx) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("lease-sync-2".into())
            .spawn(move || {
                for job in rx {
                    job();
                }
            });
        match spawned {
            Ok(_detached) => self.0.set(tx),
            Err(e) => tracing::debug!("cannot start the second lease-sync thread ({e})"),
        }
    }
}

static SHARED: OnceLock<Syncer> = OnceLock::new();

impl Syncer {
    /// The process's syncer, its thread started on first use.
    pub fn shared() -> &'static Syncer {
        SHARED.get_or_init(Syncer::start)
    }

    /// Starts a thread of its own.
    pub fn start() -> Syncer {
        let (tx, rx) = mpsc::channel::<Job>();
        let beside = Beside::default();
        let second = beside.clone();
        let spawned = std::thread::Builder::new()
            .name("lease-sync".into())
            .spawn(move || {
                second.start();
                for job in rx {
                    job();
                }
                // Retired (every sender dropped, every job run): the second thread ends too,
                // once it has run what was sent to it.
                second.0.close();
            });
        match spawned {
            Ok(_detached) => Syncer {
                jobs: Queue::open(tx),
                beside,
                outlive: AtomicBool::new(false),
            },
            Err(e) => {
                tracing::debug!("cannot start the lease-sync thread ({e}); syncing in line");
                Syncer::inline()
            }
        }
    }

    /// No thread: every job runs at once on the caller's thread.
    pub fn inline() -> Syncer {
        Syncer {
            jobs: Queue::default(),
            beside: Beside::default(),
            outlive: AtomicBool::new(false),
        }
    }

    /// Lets the syncs of a completion end after this process has exited, in a child process
    /// (`durable.rs`): for a one-shot `attach`, never the daemon.
    pub fn let_syncs_outlive(&self) {
        self.outlive.store(true, Ordering::Relaxed);
    }

    /// Whether [`let_syncs_outlive`](Self::let_syncs_outlive) was called. (Whether a child
    /// would be left to finish them is `forked::can_outlive`, asked on the syncer's thread.)
    pub fn syncs_may_outlive(&self) -> bool {
        self.outlive.load(Ordering::Relaxed)
    }

    /// Runs `f` on the thread; [`Ticket::wait`] gives its result.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Ticket<T> {
        submit(self.jobs.sender(), f)
    }

    /// Ends both threads once they have run what was sent to them; later jobs run in line.
    /// The threads end beside what is left of the command, not in its `exit`: a process whose
    /// other threads are blocked takes longer to be reaped (0.09-0.11 ms of an attach,
    /// scripts/bench_ab.py).
    pub fn retire(&self) {
        self.jobs.close();
    }

    /// [`retire`](Self::retire) of the process's syncer, if it was started: for a one-shot
    /// command that has nothing more to sync (never the daemon, whose jobs share it).
    pub fn retire_shared() {
        if let Some(syncer) = SHARED.get() {
            syncer.retire();
        }
    }

    /// The second thread, to hand to a job of the first (an inline syncer has none).
    pub fn beside(&self) -> Beside {
        self.beside.clone()
    }
}

/// Sends `f` to a thread's queue, or runs it at once without one.
fn submit<T: Send + 'static>(
    jobs: Option<mpsc::Sender<Job>>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Ticket<T> {
    let Some(jobs) = jobs else {
        return Ticket(Waiting::Ready(f()));
    };
    let (tx, rx) = mpsc::sync_channel(1);
    let job: Job = Box::new(move || {
        let _ = tx.send(f());
    });
    match jobs.send(job) {
        Ok(()) => Ticket(Waiting::On(rx)),
        // The thread is gone (it died with a panic); the job comes back undone.
        Err(mpsc::SendError(job)) => {
            job();
            Ticket(Waiting::On(rx))
        }
    }
}

/// The result of a job to come.
pub struct Ticket<T>(Waiting<T>);

enum Waiting<T> {
    Ready(T),
    On(mpsc::Receiver<T>),
}

impl<T> Ticket<T> {
    /// Waits for the job; `None` if it panicked.
    pub fn wait(self) -> Option<T> {
        match self.0 {
            Waiting::Ready(t) => Some(t),
            Waiting::On(rx) => rx.recv().ok(),
        }
    }
}

impl<T> Ticket<std::io::Result<T>> {
    /// Waits for a sync job: its result, or an error when it panicked.
    pub fn synced(self) -> std::io::Result<T> {
        self.wait()
            .unwrap_or_else(|| Err(std::io::Error::other("the lease-sync thread panicked")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_in_order_on_the_thread_or_in_line() {
        for syncer in [Syncer::start(), Syncer::inline()] {
            let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let tickets: Vec<Ticket<usize>> = (0..3)
                .map(|i| {
                    let log = log.clone();
                    syncer.run(move || {
                        log.lock().unwrap().push(i);
                        i * 10
                    })
                })
                .collect();
            let results: Vec<_> = tickets.into_iter().map(|t| t.wait()).collect();
            assert_eq!(results, [Some(0), Some(10), Some(20)]);
            assert_eq!(*log.lock().unwrap(), [0, 1, 2]);
        }
    }

    #[test]
    fn a_job_beside_runs_on_the_second_thread_at_the_same_time_or_in_line_without_one() {
        let syncer = Syncer::start();
        // The first thread starts the second before it takes its first job.
        let beside = syncer.beside();
        let (first, second) = syncer
            .run(move || {
                let me = std::thread::current().id();
                // This job waits for a sign from the one beside it: they run at the same time.
                let (tx, rx) = mpsc::channel();
                let other = beside.run(move || {
                    tx.send(()).unwrap();
                    std::thread::current().id()
                });
                rx.recv_timeout(std::time::Duration::from_secs(10))
                    .expect("the job beside did not run while this one waited");
                (me, other.wait().unwrap())
            })
            .wait()
            .unwrap();
        assert_ne!(first, second);
        assert_ne!(first, std::thread::current().id());

        let inline = Syncer::inline();
        let here = std::thread::current().id();
        assert_eq!(
            inline
                .beside()
                .run(move || std::thread::current().id())
                .wait(),
            Some(here)
        );
    }

    #[test]
    fn retired_the_threads_run_what_was_sent_and_end_and_later_jobs_run_in_line() {
        let syncer = Syncer::start();
        let beside = syncer.beside();
        let here = std::thread::current().id();
        let (go, wait) = mpsc::channel::<()>();
        // Still queued when the syncer retires: it runs on the thread all the same.
        let held = syncer.run(move || {
            let _ = wait.recv_timeout(std::time::Duration::from_secs(10));
            std::thread::current().id()
        });
        syncer.retire();
        assert_eq!(
            syncer.run(move || std::thread::current().id()).wait(),
            Some(here)
        );
        go.send(()).unwrap();
        assert!(held.wait().is_some_and(|id| id != here));
        // The first thread ends and closes the second one's queue (which then ends too).
        let t0 = std::time::Instant::now();
        while beside.0.sender().is_some() {
            assert!(t0.elapsed().as_secs() < 10, "the first thread did not end");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(
            beside.run(move || std::thread::current().id()).wait(),
            Some(here)
        );
    }

    #[test]
    fn a_job_that_panics_gives_none_and_later_jobs_still_run() {
        let syncer = Syncer::start();
        let bad: Ticket<()> = syncer.run(|| panic!("boom"));
        assert_eq!(bad.wait(), None);
        // The thread died with the panic: the next job runs in line.
        assert_eq!(syncer.run(|| 7).wait(), Some(7));
    }
}
