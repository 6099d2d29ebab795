//! Shared parts of the agentd benchmarks: `bench-relay` (latency, throughput, CPU and SQL per relayed text
//! turn, `src/main.rs`) and `bench-images` (memory, attachment latency, CPU and SQL of image turns stored in
//! S3 stand-ins, and text turns beside image turns, `src/bin/bench-images.rs`). Both start the fake upstream
//! in-process, a database, and agentd as a child process, and compare sides in interleaved batches.
//!
//! Layers, bottom up: processes and their cost (`agentd`, `procfs`, `pg`, `pgstats`, `db`, `s3`, `s3sfs`,
//! `proxy`, `deframe`), turns and batches (`clients`, `turns`, `sse_scan`, `phase`, `interleave`, `load`, `stats`),
//! the sections (`images`, `mixed`), and the reports (`fmt`, `report`, `compare`, `sql_report`,
//! `images_report`, `ingest_log`). `harness` is what every bench sets up the same way.

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
pub mod s3;
pub mod s3sfs;
pub mod sql_report;
pub mod sse_scan;
pub mod stats;
pub mod turns;
