//! Shared parts of the agentd benchmarks: `bench-relay` (latency, throughput and memory of relayed text turns,
//! `src/main.rs`) and `bench-images` (memory, storage throughput and attachment latency of image turns
//! stored in an S3 stand-in, `src/bin/bench-images.rs`). Both start the fake upstream in-process and agentd
//! as a child process, and drive streamed turns through the modules below.

pub mod agentd;
pub mod clients;
pub mod compare;
pub mod images_report;
pub mod ingest_log;
pub mod phase;
pub mod report;
pub mod s3;
pub mod stats;
pub mod turns;
