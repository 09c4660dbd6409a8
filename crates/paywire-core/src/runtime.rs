//! `[runtime]`: the async runtime's thread counts, one configuration table
//! shared by the long-running services (facilitator, gateway). The binaries
//! that build the runtime read it; the libraries only parse and check it.

use serde::Deserialize;

/// Most worker threads by default: services wait on nodes, upstreams and
/// facilitators, so more cores add threads (each with its stack and malloc
/// arena) rather than throughput.
pub const DEFAULT_MAX_WORKER_THREADS: usize = 4;

/// Most threads for blocking work (resolving host names, file I/O) by default.
pub const DEFAULT_MAX_BLOCKING_THREADS: usize = 16;

/// `[runtime]`: worker and blocking thread counts.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RuntimeConfig {
    /// Worker threads (default: one per core, at most
    /// [`DEFAULT_MAX_WORKER_THREADS`]; at least 1).
    #[serde(default)]
    pub worker_threads: Option<usize>,
    /// Most threads for blocking work (default
    /// [`DEFAULT_MAX_BLOCKING_THREADS`]; at least 1). Idle ones exit after 10 s.
    #[serde(default = "default_max_blocking_threads")]
    pub max_blocking_threads: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            worker_threads: None,
            max_blocking_threads: DEFAULT_MAX_BLOCKING_THREADS,
        }
    }
}

/// A `[runtime]` value out of range: the field's dotted path and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct RuntimeConfigError {
    /// `runtime.worker_threads` or `runtime.max_blocking_threads`.
    pub field: &'static str,
    /// What the value must satisfy.
    pub rule: &'static str,
}

impl RuntimeConfig {
    /// The worker threads to start: the configured number, else one per
    /// core up to [`DEFAULT_MAX_WORKER_THREADS`].
    pub fn worker_threads(&self) -> usize {
        self.worker_threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(1, std::num::NonZeroUsize::get)
                .min(DEFAULT_MAX_WORKER_THREADS)
        })
    }

    /// Refuses zero threads of either kind.
    pub fn validate(&self) -> Result<(), RuntimeConfigError> {
        let at_least_one = |field| RuntimeConfigError {
            field,
            rule: "must be at least 1",
        };
        if self.worker_threads == Some(0) {
            return Err(at_least_one("runtime.worker_threads"));
        }
        if self.max_blocking_threads == 0 {
            return Err(at_least_one("runtime.max_blocking_threads"));
        }
        Ok(())
    }
}

fn default_max_blocking_threads() -> usize {
    DEFAULT_MAX_BLOCKING_THREADS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_workers_are_the_cores_capped_and_zero_is_refused() {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let default = RuntimeConfig::default();
        assert_eq!(
            default.worker_threads(),
            cores.min(DEFAULT_MAX_WORKER_THREADS)
        );
        assert_eq!(default.max_blocking_threads, DEFAULT_MAX_BLOCKING_THREADS);
        assert_eq!(default.validate(), Ok(()));
        let set = RuntimeConfig {
            worker_threads: Some(7),
            max_blocking_threads: 2,
        };
        assert_eq!(set.worker_threads(), 7);
        let no_workers = RuntimeConfig {
            worker_threads: Some(0),
            ..RuntimeConfig::default()
        };
        assert_eq!(
            no_workers.validate().map_err(|e| e.field),
            Err("runtime.worker_threads")
        );
        let no_blocking = RuntimeConfig {
            max_blocking_threads: 0,
            ..RuntimeConfig::default()
        };
        assert_eq!(
            no_blocking.validate().map_err(|e| e.field),
            Err("runtime.max_blocking_threads")
        );
    }
}
