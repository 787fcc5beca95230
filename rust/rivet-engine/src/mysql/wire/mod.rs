//! The MySQL client/server protocol, spoken directly: handshake, authentication
//! (mysql_native_password, caching_sha2_password), TLS, text queries, and
//! prepared statements whose binary rows are handed over as buffer slices.

pub mod auth;
pub mod conn;
pub mod packets;

pub use conn::{MyConnection, cancel};
pub use packets::{ColumnDef, Packet, Reader};
