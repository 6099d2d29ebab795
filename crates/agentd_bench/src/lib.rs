//! Shared parts of the agentd benchmarks: `bench-relay` (latency, throughput, CPU and SQL per relayed text
//! turn, `src/main.rs`), `bench-images` (memory, attachment latency, CPU and SQL of image turns stored in
//! S3 stand-ins, and text turns beside image turns, `src/bin/bench-images.rs`) and `bench-resume` (streams
//! dropped on one replica and resumed on another: exactly-once delivery, cross-replica latency, the run event
//! log's size, `src/bin/bench-resume.rs`). All start the fake upstream in-process, a database, and agentd as
//! child processes; the first two compare sides in interleaved batches.
//!
//! Layers, bottom up: processes and their cost (`agentd`, `procfs`, `pg`, `pgstats`, `db`, `s3`, `s3sfs`,
//! `proxy`, `deframe`), turns and batches (`clients`, `turns`, `sse_scan`, `phase`, `interleave`, `load`, `stats`),
//! the sections (`images`, `mixed`, `resume` with `resume_check` and `resume_latency`), and the reports (`fmt`, `report`, `compare`, `sql_report`,
//! `images_report`, `resume_report`, `ingest_log`). `harness` is what every bench sets up the same way.

pub mod agentd;
pub mod clients;
pub mod compare;
pub mod db;
pub mod deframe;
pub mod fmt;
pub mod harness;
pub mod images;
pub mod images_report;
pub mod ingest_log;
pub mod interleave;
pub mod load;
pub mod mixed;
pub mod pg;
pub mod pgstats;
pub mod phase;
pub mod procfs;
pub mod proxy;
pub mod report;
pub mod resume;
pub mod resume_check;
pub mod resume_latency;
pub mod resume_report;
pub mod s3;
pub mod s3sfs;
pub mod sql_report;
pub mod sse_scan;
pub mod stats;
pub mod turns;
