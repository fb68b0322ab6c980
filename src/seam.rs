//! The one seam between async code and the blocking store.
//!
//! A store blocks: SQLite on its file and its locks, the `postgres` client on a runtime
//! of its own, which tokio refuses to start on a thread that is driving async tasks. So
//! a store is only ever called from a thread that drives none, in one of two ways:
//!
//! - [`block_on`]: a thread that owns a store runs its async work (a run's driver, a
//!   CLI command, the notifier) through `seam::block_on`. The root future is polled on
//!   this thread *outside* the runtime: it calls its store directly, as a sync program
//!   would (a batch's commit blocks the thread, and no step's task runs meanwhile), with
//!   no thread hop. What it spawns (the steps' tasks) and its timers, signals and pipes
//!   are driven by a current-thread runtime between its polls. The runtime is kept for
//!   the thread's next call, unless tasks outlive the future: then it is dropped, and
//!   they with it, as a runtime built for one run would be.
//! - [`Stores`]: async code on a multi-threaded runtime (the server's requests) hands a
//!   closure to a pool of threads, each owning one connection: `stores.call(f).await`.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use crate::store::{Durability, Store, StoreError};

/// Runs `future` to its end on this thread, polled outside the runtime that drives
/// the tasks it spawns (see the module's documentation). Must not be called from a
/// thread that drives async tasks (inside a runtime); the future may call it again.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    let runtime = RUNTIME.with(|r| r.borrow_mut().take()).unwrap_or_else(|| {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime starts")
    });
    let root = Arc::new(Root::default());
    let waker = Waker::from(root.clone());
    let mut cx = Context::from_waker(&waker);
    let mut future = Box::pin(future);
    let output = loop {
        let polled = {
            let _handle = runtime.enter();
            future.as_mut().poll(&mut cx)
        };
        if let Poll::Ready(output) = polled {
            break output;
        }
        runtime.block_on(turn(&root));
    };
    {
        let _handle = runtime.enter();
        drop(future);
    }
    // Tasks left running (a step of a run given up) end with their runtime.
    if runtime.metrics().num_alive_tasks() == 0 {
        RUNTIME.with(|r| *r.borrow_mut() = Some(runtime));
    }
    output
}

thread_local! {
    /// This thread's runtime between two calls of [`block_on`].
    static RUNTIME: std::cell::RefCell<Option<tokio::runtime::Runtime>> = const { std::cell::RefCell::new(None) };
}

/// Whether the root future was woken since it was last polled, and how to tell the
/// runtime's turn that it was.
#[derive(Default)]
struct Root {
    woken: AtomicBool,
    turn: Mutex<Option<Waker>>,
}

impl Wake for Root {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        if let Some(turn) = self.turn.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            turn.wake();
        }
    }
}

/// One turn of the runtime: it runs until the root future is woken; when it was woken
/// already (it yielded), the tasks that are ready take one step first, as they would
/// when a future yields on the runtime.
async fn turn(root: &Root) {
    if root.woken.swap(false, Ordering::Acquire) {
        return tokio::task::yield_now().await;
    }
    std::future::poll_fn(|cx| {
        *root.turn.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(cx.waker().clone());
        if root.woken.swap(false, Ordering::Acquire) { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
}

/// A closure given to a thread of the pool, with that thread's store (or why it could
/// not be opened); false when it panicked (the store may be mid-transaction: it goes).
type Job = Box<dyn FnOnce(Result<&mut dyn Store, StoreError>) -> bool + Send>;

/// Stores for async code on a multi-threaded runtime: a pool of threads, each owning a
/// connection (opened at its first call, kept), that run the closures given to
/// [`Stores::call`] one at a time, in the order they come.
pub(crate) struct Stores {
    jobs: Mutex<std::sync::mpsc::Sender<Job>>,
}

/// Why a call of [`Stores::call`] has no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a database call panicked: {0}")]
    Panicked(String),
}

impl Stores {
    /// `threads` threads (so at most that many connections, and calls at once) on the
    /// database `db`.
    pub(crate) fn new(db: PathBuf, durability: Durability, threads: usize) -> Stores {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let (rx, db) = (rx.clone(), db.clone());
            let spawned =
                std::thread::Builder::new().name(format!("store-{i}")).spawn(move || serve_calls(&rx, &db, durability));
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "Could not start a database thread.");
            }
        }
        Stores { jobs: Mutex::new(tx) }
    }

    /// Runs `f` on a store of the pool, on the pool's thread, and returns its answer.
    pub(crate) async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Store) -> T + Send + 'static,
    ) -> Result<T, CallError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |store| {
            // Its caller gave up (a request timed out): nothing to do.
            if tx.is_closed() {
                return true;
            }
            let answer = store.map_err(CallError::from).and_then(|store| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(store))).map_err(|panic| {
                    let text = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    CallError::Panicked(text)
                })
            });
            let whole = !matches!(answer, Err(CallError::Panicked(_)));
            let _ = tx.send(answer);
            whole
        });
        let sent = self.jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).send(job);
        if sent.is_err() {
            return Err(CallError::Panicked("no database thread is left".into()));
        }
        rx.await.unwrap_or_else(|_| Err(CallError::Panicked("the database thread ended".into())))
    }
}

/// A thread of the pool: takes the next closure, runs it on its store.
fn serve_calls(jobs: &Mutex<std::sync::mpsc::Receiver<Job>>, db: &std::path::Path, durability: Durability) {
    let mut store: Option<Box<dyn Store>> = None;
    loop {
        let job = match jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        let ready = match store.as_mut() {
            Some(store) => {
                // Others (other threads, other processes) wrote since its last call.
                store.forget_cached();
                Ok(store)
            }
            None => crate::store::open(db, durability).map(|opened| store.insert(opened)),
        };
        if !job(ready.map(|s| -> &mut dyn Store { s.as_mut() })) {
            store = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_future_runs_outside_the_runtime_and_its_tasks_inside() {
        let answer = block_on(async {
            // Here a nested runtime may block (the `postgres` client does).
            let nested = tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async { 40 });
            let task = tokio::spawn(async {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                2
            });
            nested + task.await.unwrap()
        });
        assert_eq!(answer, 42);
        // The runtime is kept for the next call, which may run on it.
        assert_eq!(block_on(async { tokio::task::spawn_blocking(|| 7).await.unwrap() }), 7);
    }

    #[test]
    fn a_task_left_running_ends_with_its_runtime() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        block_on(async move {
            tokio::spawn(async move {
                let _tx = tx;
                std::future::pending::<()>().await;
            });
            tokio::task::yield_now().await;
        });
        assert!(rx.recv().is_err(), "the task was dropped with the runtime");
    }
}
