//! Blocking work that releases the GIL yet still lets Ctrl-C through.

use crossbeam_channel::{RecvTimeoutError, bounded};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use pyo3::prelude::*;
use rivet_engine::Error;

use crate::sources::finish;

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

/// Run `work` on the connection behind `inner` as [`run_interruptible`] does, one call at a
/// time, and map its error to Python's.
pub fn with_locked<C, T>(
    py: Python<'_>,
    inner: &Arc<Mutex<C>>,
    work: impl FnOnce(&mut C) -> Result<T, Error> + Send + 'static,
) -> PyResult<T>
where
    C: Send + 'static,
    T: Send + 'static,
{
    let inner = Arc::clone(inner);
    let result = run_interruptible(py, move || match inner.lock() {
        Ok(mut conn) => work(&mut conn),
        Err(_) => Err(Error::Internal(
            "a previous call on this connection panicked".into(),
        )),
    })?;
    finish(py, result)
}
