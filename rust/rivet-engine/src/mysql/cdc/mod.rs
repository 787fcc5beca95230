//! Change capture from MySQL/MariaDB: the binary log in ROW format.

pub mod binlog;
pub mod changes;
pub mod replication;
pub mod row;
