//! MySQL and MariaDB.
pub mod cdc;
pub mod connect;
pub mod decode;
pub mod session;
pub mod types;
pub mod wire;
