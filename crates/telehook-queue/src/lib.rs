#![doc = include_str!("../README.md")]

mod backend;
mod sqlite;
mod webhook;
mod worker;

pub use backend::{DeadLetter, Enqueued, QueueBackend, QueueError, QueuedItem, partition_of};
pub use sqlite::{SqliteQueue, SqliteQueueBuilder};
pub use webhook::EnqueueHandler;
pub use worker::{DEFAULT_LEASE, QueueSource, Worker, Workers, WorkersReport, run_workers};
