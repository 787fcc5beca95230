//! A logical replication connection (`replication=database`): the system's WAL position,
//! slots, and the stream of a slot's changes with the status updates that move the slot.

use crate::conn::ConnectOptions;
use crate::error::{Error, Result};
use crate::pg::cdc::pgoutput::{CopyMessage, Lsn, Message, copy_message, message, standby_status};
use crate::pg::wire::PgConnection;

/// A connection that speaks the replication protocol. It streams once: the server does not
/// restart a logical stream on the connection that ran one, so each stream opens its own.
pub struct Replication {
    conn: PgConnection,
    streaming: bool,
    streamed: bool,
}

/// What `IDENTIFY_SYSTEM` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemInfo {
    /// The cluster's system identifier.
    pub system_id: String,
    /// Its timeline.
    pub timeline: u32,
    /// Where its WAL has been flushed to now.
    pub wal_position: Lsn,
}

/// A slot just created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedSlot {
    /// Its name.
    pub name: String,
    /// The first position it will stream changes from: everything committed before it is in
    /// the exported snapshot, everything after it in the stream.
    pub consistent_point: Lsn,
    /// The snapshot to read the table in (`SET TRANSACTION SNAPSHOT`), while this connection
    /// stays open and runs nothing else.
    pub snapshot: Option<String>,
}

/// A slot name PostgreSQL accepts (lower-case letters, digits and `_`, at most 63), checked
/// here so a name from a config can never reach a replication command as anything else.
pub fn check_slot_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "slot name {name:?}: a replication slot is named with lower-case letters, digits and _ \
             (at most 63)"
        )))
    }
}

/// `publication_names`' value: quoted identifiers, comma-separated, as a string literal.
fn publication_list(publications: &[String]) -> Result<String> {
    if publications.is_empty() {
        return Err(Error::Config("no publication to stream".into()));
    }
    let names: Vec<String> = publications
        .iter()
        .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
        .collect();
    Ok(format!("'{}'", names.join(",").replace('\'', "''")))
}

fn text(rows: &[Vec<Option<String>>], column: usize, what: &str) -> Result<String> {
    rows.first()
        .and_then(|r| r.get(column).cloned().flatten())
        .ok_or_else(|| Error::Query {
            message: format!("the server's answer to {what} lacks a column"),
            code: None,
        })
}

impl Replication {
    /// Open a replication connection with `options` (the same settings as any connection).
    pub fn connect(options: &ConnectOptions) -> Result<Self> {
        let mut params = options.resolve_postgres()?;
        params.protocol.replication = true;
        Ok(Replication {
            conn: PgConnection::connect(&params)?,
            streaming: false,
            streamed: false,
        })
    }

    /// The cluster's identity and current WAL position.
    pub fn identify_system(&mut self) -> Result<SystemInfo> {
        let rows = self.conn.simple_query("IDENTIFY_SYSTEM")?;
        let what = "IDENTIFY_SYSTEM";
        Ok(SystemInfo {
            system_id: text(&rows, 0, what)?,
            timeline: text(&rows, 1, what)?.parse().map_err(|_| {
                Error::Config("IDENTIFY_SYSTEM: a timeline that is not a number".into())
            })?,
            wal_position: Lsn::parse(&text(&rows, 2, what)?)?,
        })
    }

    /// Create a logical slot decoding with pgoutput; with `export_snapshot`, the snapshot its
    /// stream starts after (valid until this connection runs its next command).
    pub fn create_slot(&mut self, name: &str, export_snapshot: bool) -> Result<CreatedSlot> {
        check_slot_name(name)?;
        let snapshot = if export_snapshot {
            "EXPORT_SNAPSHOT"
        } else {
            "NOEXPORT_SNAPSHOT"
        };
        let what = "CREATE_REPLICATION_SLOT";
        let rows = self.conn.simple_query(&format!(
            "CREATE_REPLICATION_SLOT \"{name}\" LOGICAL pgoutput {snapshot}"
        ))?;
        Ok(CreatedSlot {
            name: text(&rows, 0, what)?,
            consistent_point: Lsn::parse(&text(&rows, 1, what)?)?,
            snapshot: rows.first().and_then(|r| r.get(2).cloned().flatten()),
        })
    }

    /// Drop a slot (it must not be streaming).
    pub fn drop_slot(&mut self, name: &str) -> Result<()> {
        check_slot_name(name)?;
        self.conn
            .execute(&format!("DROP_REPLICATION_SLOT \"{name}\""))
    }

    /// Stream the changes of `slot` committed after `from`, for the tables of `publications`;
    /// with `binary`, values come in their types' binary form.
    pub fn start(
        &mut self,
        slot: &str,
        from: Lsn,
        publications: &[String],
        binary: bool,
    ) -> Result<()> {
        check_slot_name(slot)?;
        if self.streamed {
            return Err(Error::Internal(
                "this replication connection has streamed once already; open another".into(),
            ));
        }
        let list = publication_list(publications)?;
        let binary = if binary { ", \"binary\" 'true'" } else { "" };
        self.conn.start_copy_both(&format!(
            "START_REPLICATION SLOT \"{slot}\" LOGICAL {from} (\"proto_version\" '1', \
             \"publication_names\" {list}{binary})"
        ))?;
        self.streaming = true;
        self.streamed = true;
        Ok(())
    }

    /// The next message of the stream (None once the server ended it). It blocks until the
    /// server sends one: a change, or a keepalive (ask for one with [`Replication::confirm`]).
    pub fn next_message(&mut self) -> Result<Option<CopyMessage<'_>>> {
        match self.conn.copy_data()? {
            Some(payload) => copy_message(payload).map(Some),
            None => {
                self.streaming = false;
                Ok(None)
            }
        }
    }

    /// Tell the server everything up to `flushed` is durable (the slot may move past it and
    /// the WAL before it be recycled); with `reply`, ask for a keepalive back at once.
    pub fn confirm(&mut self, flushed: Lsn, now: i64, reply: bool) -> Result<()> {
        self.conn
            .send_copy_data(&standby_status(flushed, flushed, flushed, now, reply))
    }

    /// Hand `on_message` every change committed before `until` (the WAL end when a bounded run
    /// started), whole transactions only, and return the end of the last commit handed over.
    /// It returns as soon as the server has sent everything up to `until`, even when none of
    /// it was for the publication; transactions still open at `until` are left for later.
    /// Nothing is confirmed: the slot moves only when the caller confirms.
    pub fn drain(
        &mut self,
        until: Lsn,
        now: impl Fn() -> i64,
        mut on_message: impl FnMut(&Message<'_>) -> Result<()>,
    ) -> Result<Option<Lsn>> {
        // An invalid (zero) position asks for a keepalive without confirming anything.
        self.confirm(Lsn(0), now(), true)?;
        let mut in_transaction = false;
        let mut last_commit = None;
        loop {
            let payload = self.conn.copy_data()?.ok_or_else(|| {
                Error::ConnectionLost("the server ended the replication stream".into())
            })?;
            match copy_message(payload)? {
                CopyMessage::XLogData { data, .. } => {
                    let m = message(data)?;
                    match &m {
                        // Committed after the run began: the next run's.
                        Message::Begin { final_lsn, .. } if *final_lsn >= until => {
                            return Ok(last_commit);
                        }
                        Message::Begin { .. } => in_transaction = true,
                        Message::Commit { end_lsn, .. } => {
                            in_transaction = false;
                            last_commit = Some(*end_lsn);
                        }
                        _ => {}
                    }
                    on_message(&m)?;
                    if !in_transaction && last_commit.is_some_and(|end| end >= until) {
                        return Ok(last_commit);
                    }
                }
                CopyMessage::Keepalive {
                    wal_end,
                    reply_requested,
                    ..
                } => {
                    // A keepalive's position is how far the server has decoded and sent.
                    if !in_transaction && wal_end >= until {
                        return Ok(last_commit);
                    }
                    // Answering lets the server send its next keepalive once it has caught up.
                    self.confirm(Lsn(0), now(), reply_requested)?;
                }
            }
        }
    }

    /// End the stream from our side; the connection then takes commands again.
    pub fn stop(&mut self) -> Result<()> {
        if self.streaming {
            self.streaming = false;
            self.conn.end_copy_both()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_a_config_reach_commands_only_as_names() {
        assert!(check_slot_name("rivet_orders_1").is_ok());
        for bad in ["", "Orders", "a\"; DROP", "a b", &"x".repeat(64)] {
            assert!(check_slot_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            publication_list(&["p".into(), "it's \"q\"".into()]).expect("list"),
            r#"'"p","it''s ""q"""'"#
        );
        assert!(publication_list(&[]).is_err());
    }
}
