//! Reading a MySQL/MariaDB binary log as a replica: where the log ends now, and a dump of it
//! from a position, event by event, checksums verified.

use crate::conn::ConnectOptions;
use crate::error::{Error, Result};
use crate::mysql::cdc::binlog::{Event, event};
use crate::mysql::wire::MyConnection;

/// A position in the binary log: a file and an offset in it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogPosition {
    /// The log file (`bin.000042`).
    pub file: String,
    /// The offset of the next event in it.
    pub offset: u32,
}

/// A replica connection reading the binary log.
pub struct BinlogReader {
    conn: MyConnection,
    checksum: bool,
    dumping: bool,
}

fn field(rows: &[Vec<Option<String>>], column: usize) -> Option<String> {
    rows.first().and_then(|r| r.get(column).cloned().flatten())
}

impl BinlogReader {
    /// Connect with `options` (the same settings as any connection).
    pub fn connect(options: &ConnectOptions) -> Result<Self> {
        let params = options.resolve_mysql()?;
        Ok(BinlogReader {
            conn: MyConnection::connect(&params)?,
            checksum: false,
            dumping: false,
        })
    }

    /// Where the log ends now (`SHOW MASTER STATUS`, `SHOW BINARY LOG STATUS` on MySQL 8.4).
    pub fn end(&mut self) -> Result<LogPosition> {
        let rows = match self.conn.query("SHOW MASTER STATUS") {
            Ok(rows) => rows,
            Err(_) => self.conn.query("SHOW BINARY LOG STATUS")?,
        };
        let file = field(&rows, 0).ok_or_else(|| Error::Query {
            message:
                "the server writes no binary log: start it with log_bin (and binlog_format=ROW)"
                    .into(),
            code: None,
        })?;
        let offset = field(&rows, 1)
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| Error::Query {
                message: "the server's binary log position is not a number".into(),
                code: None,
            })?;
        Ok(LogPosition { file, offset })
    }

    /// Dump the log from `from` as replica `server_id` (unique among the server's replicas);
    /// with `until_end`, the dump ends at the end of the log instead of waiting for more.
    pub fn start(&mut self, from: &LogPosition, server_id: u32, until_end: bool) -> Result<()> {
        let algorithm =
            field(&self.conn.query("SELECT @@global.binlog_checksum")?, 0).unwrap_or_default();
        self.checksum = algorithm.eq_ignore_ascii_case("CRC32");
        // A replica says it verifies checksums, or a server that writes them refuses it.
        self.conn
            .execute("SET @master_binlog_checksum = @@global.binlog_checksum")?;
        if self.conn.is_mariadb() {
            // GTID events as they are (capability 4), rather than rewritten for old replicas.
            self.conn.execute("SET @mariadb_slave_capability = 4")?;
        }
        self.conn
            .binlog_dump(&from.file, from.offset, server_id, until_end)?;
        self.dumping = true;
        Ok(())
    }

    /// The next event of the dump, checksum verified (None once the server ended the dump).
    pub fn next_event(&mut self) -> Result<Option<Event<'_>>> {
        if !self.dumping {
            return Ok(None);
        }
        let checksum = self.checksum;
        let Some(raw) = self.conn.binlog_event()? else {
            self.dumping = false;
            return Ok(None);
        };
        event(raw, checksum).map(|(e, _)| Some(e))
    }
}
