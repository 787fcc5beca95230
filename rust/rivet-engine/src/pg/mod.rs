//! The PostgreSQL source: connection, type mapping, binary decoding, streaming.

pub mod batch;
pub mod connect;
pub mod copy;
pub mod decode;
pub mod errors;
pub mod numeric;
pub mod probe;
pub mod scan;
pub mod types;
