#![doc = include_str!("../README.md")]

mod backend;
mod sqlite;
mod webhook;
mod worker;

pub use backend::{DeadLetter, Enqueued, QueueBackend, QueueError, QueuedItem, partition_of};
pub use sqlite::{SqliteQueue, SqliteQueueBuilder};
/// The workers' runner settings and stop report, from `telehook-polling` (the workers run the
/// polling runner), re-exported so queue code needs no other import.
pub use telehook_polling::{RunnerConfig, StopReport};
pub use webhook::EnqueueHandler;
pub use worker::{DEFAULT_LEASE, QueueSource, Worker, Workers, WorkersReport, run_workers};
