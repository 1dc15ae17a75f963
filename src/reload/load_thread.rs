//! The one thread that builds every configuration: the first one at start and every reload.
//!
//! glibc's allocator gives each thread an arena of its own and keeps the memory freed in an
//! arena for that arena. A configuration built on whatever thread happens to be free (the
//! runtime's blocking pool starts a new thread whenever none is idle at that instant, which a
//! burst of reloads hits often) leaves the memory of each replaced snapshot behind in a
//! different arena: at 10,000 names a storm of `SIGHUP`s tripled the resident size and kept it
//! there. Built on one long-lived thread, every snapshot reuses the memory its predecessor
//! freed. The thread is started on first use and serves jobs one at a time, which is also what
//! keeps reloads from interleaving.

use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// Why a job did not run to the end.
#[derive(Debug, thiserror::Error)]
pub enum LoadThreadError {
    /// The load thread could not be started.
    #[error("cannot start the configuration load thread: {0}")]
    Spawn(String),
    /// The job panicked (a bug), so it returned nothing.
    #[error("the configuration load panicked")]
    Panicked,
}

/// The sender of the load thread's queue, the thread started with the first job.
fn queue() -> Result<&'static Mutex<mpsc::Sender<Job>>, LoadThreadError> {
    static QUEUE: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    if let Some(queue) = QUEUE.get() {
        return Ok(queue);
    }
    let (sender, jobs) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("config-load".to_string())
        .spawn(move || {
            for job in jobs {
                // A panicking job drops its reply sender, which the caller sees; the thread
                // itself keeps serving.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
        })
        .map_err(|error| LoadThreadError::Spawn(error.to_string()))?;
    // Two first callers at once: one thread's queue wins, the other thread ends at once (its
    // receiver sees every sender gone).
    Ok(QUEUE.get_or_init(|| Mutex::new(sender)))
}

/// Runs `job` on the load thread and waits for its result without blocking the runtime.
pub async fn run<R: Send + 'static>(
    job: impl FnOnce() -> R + Send + 'static,
) -> Result<R, LoadThreadError> {
    let (reply, result) = oneshot::channel();
    let wrapped: Job = Box::new(move || {
        let _ = reply.send(job());
    });
    queue()?
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .send(wrapped)
        .map_err(|_| LoadThreadError::Spawn("the load thread has stopped".to_string()))?;
    result.await.map_err(|_| LoadThreadError::Panicked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_job_runs_on_the_same_thread() {
        let mut threads = Vec::new();
        for _ in 0..4 {
            threads.push(run(|| std::thread::current().id()).await.expect("ran"));
        }
        assert!(threads.iter().all(|id| *id == threads[0]), "{threads:?}");
        assert_ne!(threads[0], std::thread::current().id());
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error_and_the_thread_serves_on() {
        let panicked = run(|| -> u8 { panic!("a bug in a load") }).await;
        assert!(matches!(panicked, Err(LoadThreadError::Panicked)));
        assert_eq!(run(|| 7).await.expect("still serving"), 7);
    }
}
