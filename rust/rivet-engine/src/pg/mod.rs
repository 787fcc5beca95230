//! The PostgreSQL source: wire protocol, type mapping, binary decoding, streaming.

pub mod batch;
pub mod catalog;
pub mod cdc;
pub mod connect;
pub mod decode;
pub mod numeric;
pub mod probe;
pub mod scan;
pub mod session;
pub mod tuple;
pub mod types;
pub mod wire;
