//! The PostgreSQL wire protocol, spoken directly: startup and authentication
//! (cleartext, MD5, SCRAM-SHA-256), TLS, simple and extended queries with binary
//! results, and COPY OUT.

pub mod auth;
pub mod conn;
pub mod messages;
pub mod socket;

pub use conn::PgConnection;
pub use messages::FieldDesc;
