//! A background load: N clients that each run turns back to back until told to stop, then finish the turn
//! they are in. The mixed case of `bench-images` runs image turns this way beside the text turns it measures.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::phase::{self, PhaseResult};
use crate::turns::{self, TurnRequest, TurnTiming};

/// A running load.
pub struct Load {
    stop: Arc<AtomicBool>,
    set: JoinSet<Vec<Result<TurnTiming, String>>>,
    clients: usize,
    started: Instant,
}

impl Load {
    /// Starts one client per request.
    pub fn start(client: &reqwest::Client, requests: Vec<TurnRequest>, turn_timeout: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut set = JoinSet::new();
        let clients = requests.len();
        for req in requests {
            let (client, stop) = (client.clone(), Arc::clone(&stop));
            set.spawn(async move {
                let mut out = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    out.push(turns::run_turn(&client, &req, turn_timeout).await);
                }
                out
            });
        }
        Self {
            stop,
            set,
            clients,
            started: Instant::now(),
        }
    }

    /// Tells the clients to stop and waits for their last turns.
    pub async fn stop(mut self) -> PhaseResult {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        while let Some(joined) = self.set.join_next().await {
            match joined {
                Ok(v) => all.extend(v),
                Err(e) => all.push(Err(format!("load client failed: {e}"))),
            }
        }
        phase::summarize(all, self.clients, self.started.elapsed(), 0)
    }
}
