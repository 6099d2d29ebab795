//! The threads that build image turns ([`crate::FakeConfig::build_images_apart`]): drawing an image not yet
//! in the cache (a multi-MB PNG) takes tens of ms of CPU, which on an async worker would hold up every
//! other stream of the server (a benchmark's text turns); serializing the events costs little (`splice.rs`). One thread per core, fixed for the server's life,
//! as many builds at once as the async workers used to do — not the runtime's blocking pool, whose threads
//! come and go with the load.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

/// The build threads; they end when this is dropped.
pub(crate) struct Builders(Mutex<Sender<Job>>);

impl Builders {
    pub(crate) fn start() -> Self {
        let threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("fake-builder-{i}"))
                .spawn(move || work(&rx));
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "fake: cannot start an image builder thread");
            }
        }
        Self(Mutex::new(tx))
    }

    /// Runs `f` on a build thread; `None` if it panicked (or no thread could be started).
    pub(crate) async fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> Option<R> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.0.lock().ok()?.send(job).ok()?;
        rx.await.ok()
    }
}

fn work(rx: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for a job, not while running it.
        let next = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = next else { return };
        // A panicking build drops its answer (the request gets a 500); the thread stays for the next one.
        let _ = catch_unwind(AssertUnwindSafe(job));
    }
}
