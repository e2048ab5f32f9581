//! Where background work runs. On a proxy worker thread (`workers > 1`, see
//! `crate::workers`) a request may start work that outlives it and that other threads wait
//! on: a token fetch every worker shares, and the store writes and refresh-token rotation
//! that follow it. That work goes to the main thread's runtime, which lives until the
//! process has drained, not to the worker's, which stops when its own connections are done.
//! Elsewhere (the main runtime, in-process tests) it is a plain `tokio::spawn`.

use std::cell::RefCell;
use std::future::Future;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

thread_local! {
    /// The main runtime, on a proxy worker thread.
    static MAIN: RefCell<Option<Handle>> = const { RefCell::new(None) };
}

/// Marks the calling thread as a worker whose background work runs on `main`.
pub fn set_main(main: Handle) {
    MAIN.with(|m| *m.borrow_mut() = Some(main));
}

/// Spawns `fut` on the main runtime from a worker thread, else on the current runtime.
pub fn spawn<F>(fut: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    MAIN.with(|m| match &*m.borrow() {
        Some(main) => main.spawn(fut),
        None => tokio::spawn(fut),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Work a worker thread starts keeps running after the worker's runtime is gone, on
    /// the main runtime's thread.
    #[tokio::test]
    async fn work_a_worker_starts_outlives_the_worker_runtime() {
        let main = Handle::current();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            set_main(main);
            rt.block_on(async move {
                spawn(async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let _ = tx.send(std::thread::current().id());
                });
            });
            drop(rt);
        })
        .join()
        .unwrap();
        let ran_on = rx.await.expect("the task survived its worker's runtime");
        assert_eq!(ran_on, std::thread::current().id(), "on the main runtime");
    }

    /// Off a worker thread it is `tokio::spawn`.
    #[tokio::test]
    async fn elsewhere_it_runs_on_the_current_runtime() {
        let here = std::thread::current().id();
        assert_eq!(
            spawn(async move { std::thread::current().id() })
                .await
                .unwrap(),
            here
        );
    }
}
