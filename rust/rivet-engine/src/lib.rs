//! rivet's engine: source readers that stream query results as bounded Arrow
//! record batches, with exact type mapping. No Python here; the `rivet-py`
//! crate binds it.

pub mod batch;
pub mod changes;
pub mod conn;
pub mod decimal;
#[cfg(test)]
mod differential;
pub mod error;
pub mod failpoint;
#[cfg(test)]
mod fuzz;
pub mod metadata;
pub mod mysql;
pub mod net;
pub mod pg;
pub mod rowhash;
pub mod session;
pub mod source;
pub mod sqlite;
pub mod stream;
pub mod temporal;
pub mod tls;
pub mod uuids;
pub mod views;

pub use error::{Error, Result, UnsupportedColumn};
pub use stream::{BatchStream, EndOfData, Poll};
