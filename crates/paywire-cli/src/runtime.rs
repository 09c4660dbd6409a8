//! The async runtime of a long-running service, built from its `[runtime]`
//! table. Shared by `paywire facilitator`/`paywire gateway` and the dedicated
//! service binaries (which include this file with `#[path]`).

use paywire_core::RuntimeConfig;

/// The runtime with the configured worker and blocking threads. With one
/// worker, the tasks run on the thread that started the service (a
/// current-thread runtime): a multi-threaded runtime would add a second
/// thread, with its own stack and malloc arena, to an idle main thread
/// (about 0.5 MB of the facilitator's resident set; BENCHMARKS.md).
pub(crate) fn service_runtime(config: &RuntimeConfig) -> Result<tokio::runtime::Runtime, String> {
    let workers = config.worker_threads();
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers);
        builder
    };
    builder
        .max_blocking_threads(config.max_blocking_threads)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

#[cfg(test)]
mod tests {
    use tokio::runtime::RuntimeFlavor;

    use super::*;

    fn with_workers(workers: usize) -> RuntimeConfig {
        let mut config = RuntimeConfig::default();
        config.worker_threads = Some(workers);
        config
    }

    #[test]
    fn one_worker_runs_the_tasks_on_the_calling_thread() {
        let runtime = service_runtime(&with_workers(1)).unwrap();
        assert_eq!(
            runtime.handle().runtime_flavor(),
            RuntimeFlavor::CurrentThread
        );
        let caller = std::thread::current().id();
        let (task_thread, blocking) = runtime.block_on(async {
            let task_thread = tokio::spawn(async { std::thread::current().id() })
                .await
                .unwrap();
            let blocking = tokio::task::spawn_blocking(|| 7).await.unwrap();
            (task_thread, blocking)
        });
        assert_eq!(task_thread, caller);
        assert_eq!(blocking, 7, "blocking work still has its pool");
    }

    #[test]
    fn more_workers_run_a_multi_threaded_runtime() {
        let runtime = service_runtime(&with_workers(2)).unwrap();
        assert_eq!(
            runtime.handle().runtime_flavor(),
            RuntimeFlavor::MultiThread
        );
        assert_eq!(runtime.metrics().num_workers(), 2);
    }
}
