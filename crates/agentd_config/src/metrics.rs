//! `METRICS_ADDR`: where the Prometheus endpoint (`/metrics`) listens — a listener of its own, never the public
//! port. Empty turns metrics off; port 0 picks a free port (the bound address is logged).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;

/// The default: loopback only, Prometheus' conventional exporter port range.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9464";

/// `METRICS_ADDR`: an address, or off (empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MetricsAddr(Option<SocketAddr>);

impl MetricsAddr {
    /// Metrics off.
    pub const OFF: Self = Self(None);

    /// Where to listen, or `None` when metrics are off.
    pub fn addr(self) -> Option<SocketAddr> {
        self.0
    }
}

impl Default for MetricsAddr {
    fn default() -> Self {
        Self(DEFAULT_METRICS_ADDR.parse().ok())
    }
}

impl TryFrom<String> for MetricsAddr {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(Self::OFF);
        }
        s.parse().map(|a| Self(Some(a))).map_err(|_| {
            format!(
                "METRICS_ADDR={s} is not allowed: use IP:PORT such as {DEFAULT_METRICS_ADDR}, or leave it empty to \
                 turn metrics off"
            )
        })
    }
}

impl From<MetricsAddr> for String {
    fn from(m: MetricsAddr) -> String {
        m.to_string()
    }
}

impl fmt::Display for MetricsAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(a) => write!(f, "{a}"),
            None => Ok(()),
        }
    }
}
