//! Chat turns, from a validated request to a persisted assistant message. Knows nothing of HTTP: the HTTP
//! crate renders [`TurnEvent`]s as SSE or JSON and [`TurnError`]s as status codes.
//!
//! A turn runs in a task of its own, tracked for graceful shutdown: a client that goes away does not cancel
//! it. One turn runs per conversation at a time (a lease on the conversation row, so it holds across
//! replicas); per-tenant limits bound turns per minute and concurrent turns.

mod error;
mod event;
mod ingest;
mod inputs;
mod limits;
mod run;
mod settings;
mod turn_images;
mod turns;
mod upstream;

pub use error::TurnError;
pub use event::{ImageUsage, TurnEvent, TurnResult, Usage};
pub use ingest::ImageFormat;
pub use settings::TurnSettings;
pub use turns::{Mode, OFFLINE_LABEL, Started, TurnParts, TurnRequest, Turns, client_config};
