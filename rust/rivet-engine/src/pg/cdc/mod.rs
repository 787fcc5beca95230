//! Change capture from PostgreSQL: logical replication through the built-in `pgoutput` plugin.

pub mod changes;
pub mod pgoutput;
pub mod replication;
