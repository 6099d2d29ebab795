//! The agentd application as a library: [`app::AppBuilder`] wires it from settings — the one wiring that both
//! the `agentd` binary and the test kit use.

pub mod app;
pub mod server;
mod startup;

pub use app::{AppBuilder, Application, OFFLINE_LABEL};
