//! pgoutput, PostgreSQL's built-in logical decoding output: the CopyData payloads of a
//! `START_REPLICATION ... LOGICAL` stream (XLogData and keepalives), the standby status
//! updates rivet answers with, and the pgoutput messages inside XLogData (protocol version 1:
//! whole transactions, never streamed in progress).
//!
//! Everything is bounded by the message it came in: every count and length is checked against
//! the bytes that are there before anything is allocated for it, so a malformed or hostile
//! message is an error, never a panic or an allocation it asked for.

use std::fmt;

use crate::error::{Error, Result};
use crate::pg::wire::messages::Body;

/// A position in the write-ahead log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Parse PostgreSQL's `X/Y` form (two hexadecimal halves).
    pub fn parse(text: &str) -> Result<Lsn> {
        let bad = || {
            Error::Config(format!(
                "'{text}' is not a WAL position (X/Y in hexadecimal)"
            ))
        };
        let (hi, lo) = text.split_once('/').ok_or_else(bad)?;
        let hi = u32::from_str_radix(hi, 16).map_err(|_| bad())?;
        let lo = u32::from_str_radix(lo, 16).map_err(|_| bad())?;
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 00:00 UTC).
pub const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

fn malformed(what: &str) -> Error {
    Error::ConnectionLost(format!("malformed {what} in the replication stream"))
}

fn lsn(b: &mut Body<'_>) -> Result<Lsn> {
    let raw = b.bytes(8)?.try_into().map_err(|_| malformed("position"))?;
    Ok(Lsn(u64::from_be_bytes(raw)))
}

/// An unsigned 32-bit field (an OID, a transaction id).
fn oid(b: &mut Body<'_>) -> Result<u32> {
    let raw = b.bytes(4)?.try_into().map_err(|_| malformed("oid"))?;
    Ok(u32::from_be_bytes(raw))
}

/// One CopyData payload of the replication stream.
#[derive(Debug, PartialEq)]
pub enum CopyMessage<'a> {
    /// WAL data: a pgoutput message (see [`message`]).
    XLogData {
        /// Where the data starts.
        start: Lsn,
        /// The end of the server's WAL when it sent this.
        wal_end: Lsn,
        /// When it was sent (microseconds since 2000-01-01).
        sent_at: i64,
        /// The pgoutput message.
        data: &'a [u8],
    },
    /// The server's keepalive.
    Keepalive {
        /// The end of the server's WAL.
        wal_end: Lsn,
        /// When it was sent (microseconds since 2000-01-01).
        sent_at: i64,
        /// The server wants a status update now (or it will end the connection).
        reply_requested: bool,
    },
}

/// Read one CopyData payload of the replication stream.
pub fn copy_message(payload: &[u8]) -> Result<CopyMessage<'_>> {
    let mut b = Body::new(payload);
    match b.u8()? {
        b'w' => Ok(CopyMessage::XLogData {
            start: lsn(&mut b)?,
            wal_end: lsn(&mut b)?,
            sent_at: b.i64()?,
            data: b.rest(),
        }),
        b'k' => Ok(CopyMessage::Keepalive {
            wal_end: lsn(&mut b)?,
            sent_at: b.i64()?,
            reply_requested: b.u8()? != 0,
        }),
        other => Err(malformed(&format!(
            "message '{}'",
            char::from(other).escape_default()
        ))),
    }
}

/// The Standby Status Update telling the server how far rivet has `written`, `flushed` (made
/// durable: the slot may move past it) and `applied`, at `now` (microseconds since 2000-01-01).
pub fn standby_status(written: Lsn, flushed: Lsn, applied: Lsn, now: i64, reply: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(34);
    out.push(b'r');
    for position in [written, flushed, applied] {
        out.extend_from_slice(&position.0.to_be_bytes());
    }
    out.extend_from_slice(&now.to_be_bytes());
    out.push(u8::from(reply));
    out
}

/// Which old values an update or delete carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaIdentity {
    /// The primary key (the default).
    Default,
    /// Nothing: updates and deletes cannot be published.
    Nothing,
    /// The whole old row.
    Full,
    /// The columns of one unique index.
    Index,
}

/// One column of a published table, as the Relation message describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// Name.
    pub name: String,
    /// Type OID.
    pub type_oid: u32,
    /// Type modifier (precision and scale, length), -1 if none.
    pub typmod: i32,
    /// Part of the replica identity (the key an update or delete names the row by).
    pub key: bool,
}

/// A published table: sent before its first change in a session, and again when it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// Its OID: changes name their table by it.
    pub oid: u32,
    /// Schema (`pg_catalog` when the server sends an empty one).
    pub namespace: String,
    /// Table name.
    pub name: String,
    /// Which old values its updates and deletes carry.
    pub replica_identity: ReplicaIdentity,
    /// Its columns, in order.
    pub columns: Vec<RelationColumn>,
}

/// One value of a changed row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// SQL NULL.
    Null,
    /// A TOASTed value the change did not touch: not sent (the old one still holds).
    Unchanged,
    /// The value in the type's text form.
    Text(&'a [u8]),
    /// The value in the type's binary (send) form, with the `binary` option.
    Binary(&'a [u8]),
}

/// The values of one row version, one per column of its relation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuple<'a>(pub Vec<Value<'a>>);

/// The old row an update or delete carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldRow<'a> {
    /// Only the replica identity's columns (the rest are NULL).
    Key(Tuple<'a>),
    /// The whole old row (`REPLICA IDENTITY FULL`).
    Full(Tuple<'a>),
}

/// One pgoutput message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// A transaction starts; its changes follow.
    Begin {
        /// Where its commit record ends.
        final_lsn: Lsn,
        /// Commit time (microseconds since 2000-01-01).
        committed_at: i64,
        /// Transaction id.
        xid: u32,
    },
    /// The transaction's changes are complete.
    Commit {
        /// Where its commit record starts.
        commit_lsn: Lsn,
        /// Where it ends: the position to confirm once its changes are durable.
        end_lsn: Lsn,
        /// Commit time (microseconds since 2000-01-01).
        committed_at: i64,
    },
    /// The transaction came from another node (replication origin).
    Origin {
        /// The origin's commit position.
        commit_lsn: Lsn,
        /// Its name.
        name: &'a str,
    },
    /// A table's description.
    Relation(Relation),
    /// A data type's name (for types outside `pg_catalog`).
    Type {
        /// Its OID.
        oid: u32,
        /// Its schema.
        namespace: &'a str,
        /// Its name.
        name: &'a str,
    },
    /// A row was inserted.
    Insert {
        /// The table's OID.
        relation: u32,
        /// The row.
        new: Tuple<'a>,
    },
    /// A row was updated.
    Update {
        /// The table's OID.
        relation: u32,
        /// The old key (when it changed) or the old row (identity FULL).
        old: Option<OldRow<'a>>,
        /// The new row (unchanged TOASTed values marked so).
        new: Tuple<'a>,
    },
    /// A row was deleted.
    Delete {
        /// The table's OID.
        relation: u32,
        /// Its key, or the whole row (identity FULL).
        old: OldRow<'a>,
    },
    /// Tables were truncated.
    Truncate {
        /// Their OIDs.
        relations: Vec<u32>,
        /// `TRUNCATE ... CASCADE`.
        cascade: bool,
        /// `TRUNCATE ... RESTART IDENTITY`.
        restart_identity: bool,
    },
    /// A message written with `pg_logical_emit_message`.
    Logical {
        /// Sent inside its transaction.
        transactional: bool,
        /// Its position.
        lsn: Lsn,
        /// Its prefix.
        prefix: &'a str,
        /// Its content.
        content: &'a [u8],
    },
}

/// The most columns a PostgreSQL table can have.
const MAX_COLUMNS: usize = 1664;

fn count(n: i32, what: &str, each_at_least: usize, b: &Body<'_>) -> Result<usize> {
    usize::try_from(n)
        .ok()
        .filter(|n| n.saturating_mul(each_at_least) <= b.rest().len())
        .ok_or_else(|| malformed(what))
}

fn tuple<'a>(b: &mut Body<'a>) -> Result<Tuple<'a>> {
    let n = count(i32::from(b.i16()?), "tuple", 1, b)?;
    if n > MAX_COLUMNS {
        return Err(malformed("tuple"));
    }
    let mut values = Vec::with_capacity(n);
    for _ in 0..n {
        values.push(match b.u8()? {
            b'n' => Value::Null,
            b'u' => Value::Unchanged,
            kind @ (b't' | b'b') => {
                let len = count(b.i32()?, "value length", 1, b)?;
                let data = b.bytes(len)?;
                if kind == b't' {
                    Value::Text(data)
                } else {
                    Value::Binary(data)
                }
            }
            _ => return Err(malformed("value")),
        });
    }
    Ok(Tuple(values))
}

fn old_row<'a>(kind: u8, b: &mut Body<'a>) -> Result<OldRow<'a>> {
    match kind {
        b'K' => Ok(OldRow::Key(tuple(b)?)),
        b'O' => Ok(OldRow::Full(tuple(b)?)),
        _ => Err(malformed("old row")),
    }
}

fn relation(b: &mut Body<'_>) -> Result<Relation> {
    let table = oid(b)?;
    let namespace = match b.cstr()? {
        "" => "pg_catalog".to_string(),
        s => s.to_string(),
    };
    let name = b.cstr()?.to_string();
    let replica_identity = match b.u8()? {
        b'd' => ReplicaIdentity::Default,
        b'n' => ReplicaIdentity::Nothing,
        b'f' => ReplicaIdentity::Full,
        b'i' => ReplicaIdentity::Index,
        _ => return Err(malformed("replica identity")),
    };
    // Each column: flags, a name of at least its NUL, type OID and modifier.
    let n = count(i32::from(b.i16()?), "relation", 10, b)?;
    let mut columns = Vec::with_capacity(n);
    for _ in 0..n {
        let key = b.u8()? & 1 == 1;
        columns.push(RelationColumn {
            name: b.cstr()?.to_string(),
            type_oid: oid(b)?,
            typmod: b.i32()?,
            key,
        });
    }
    Ok(Relation {
        oid: table,
        namespace,
        name,
        replica_identity,
        columns,
    })
}

/// Read one pgoutput message (the data of an XLogData). Bytes after a complete message are
/// refused: a message is never partly understood.
pub fn message(data: &[u8]) -> Result<Message<'_>> {
    let mut b = Body::new(data);
    let m = match b.u8()? {
        b'B' => Message::Begin {
            final_lsn: lsn(&mut b)?,
            committed_at: b.i64()?,
            xid: oid(&mut b)?,
        },
        b'C' => {
            let _flags = b.u8()?;
            Message::Commit {
                commit_lsn: lsn(&mut b)?,
                end_lsn: lsn(&mut b)?,
                committed_at: b.i64()?,
            }
        }
        b'O' => Message::Origin {
            commit_lsn: lsn(&mut b)?,
            name: b.cstr()?,
        },
        b'R' => Message::Relation(relation(&mut b)?),
        b'Y' => Message::Type {
            oid: oid(&mut b)?,
            namespace: b.cstr()?,
            name: b.cstr()?,
        },
        b'I' => {
            let relation = oid(&mut b)?;
            if b.u8()? != b'N' {
                return Err(malformed("insert"));
            }
            Message::Insert {
                relation,
                new: tuple(&mut b)?,
            }
        }
        b'U' => {
            let relation = oid(&mut b)?;
            let mut kind = b.u8()?;
            let old = if kind == b'N' {
                None
            } else {
                let old = old_row(kind, &mut b)?;
                kind = b.u8()?;
                Some(old)
            };
            if kind != b'N' {
                return Err(malformed("update"));
            }
            Message::Update {
                relation,
                old,
                new: tuple(&mut b)?,
            }
        }
        b'D' => {
            let relation = oid(&mut b)?;
            let kind = b.u8()?;
            Message::Delete {
                relation,
                old: old_row(kind, &mut b)?,
            }
        }
        b'T' => {
            let n = b.i32()?;
            let options = b.u8()?;
            let n = count(n, "truncate", 4, &b)?;
            let relations = (0..n).map(|_| oid(&mut b)).collect::<Result<Vec<_>>>()?;
            Message::Truncate {
                relations,
                cascade: options & 1 != 0,
                restart_identity: options & 2 != 0,
            }
        }
        b'M' => {
            let transactional = b.u8()? & 1 != 0;
            let lsn = lsn(&mut b)?;
            let prefix = b.cstr()?;
            let len = count(b.i32()?, "message length", 1, &b)?;
            Message::Logical {
                transactional,
                lsn,
                prefix,
                content: b.bytes(len)?,
            }
        }
        other => {
            return Err(malformed(&format!(
                "pgoutput message '{}'",
                char::from(other).escape_default()
            )));
        }
    };
    if !b.rest().is_empty() {
        return Err(malformed("pgoutput message (bytes after its end)"));
    }
    Ok(m)
}

#[cfg(test)]
mod tests;
