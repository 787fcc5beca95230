//! Blocking work that releases the GIL yet still lets Ctrl-C through.

use crossbeam_channel::{RecvTimeoutError, bounded};
use std::thread;
use std::time::Duration;

use pyo3::prelude::*;

/// How often a waiting call re-attaches to check for signals.
pub const SIGNAL_POLL: Duration = Duration::from_millis(100);

/// Run `work` on a helper thread without the GIL, checking for signals while it runs.
/// On Ctrl-C the work is abandoned (it finishes or fails on its own) and
/// `KeyboardInterrupt` is raised at once.
pub fn run_interruptible<T, F>(py: Python<'_>, work: F) -> PyResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = bounded(1);
    thread::Builder::new()
        .name("rivet-call".into())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .map_err(|e| {
            crate::errors::InternalError::new_err(format!("cannot start a thread: {e}"))
        })?;
    loop {
        match py.detach(|| rx.recv_timeout(SIGNAL_POLL)) {
            Ok(value) => return Ok(value),
            Err(RecvTimeoutError::Timeout) => py.check_signals()?,
            Err(RecvTimeoutError::Disconnected) => {
                return Err(crate::errors::InternalError::new_err(
                    "a native call panicked",
                ));
            }
        }
    }
}
