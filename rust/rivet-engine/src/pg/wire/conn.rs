//! A PostgreSQL connection speaking the wire protocol directly.
//!
//! Result rows are handed to the caller as borrowed slices of the receive
//! buffer: no per-row allocation and no async machinery between the socket
//! and the decoders.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use bytes::BytesMut;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;

use crate::error::{Error, Result};
use crate::net::{ReadBuffer, Socket};
use crate::pg::connect::ConnectParams;
use crate::pg::wire::messages::{Body, FieldDesc, error_fields, row_description, text_row};
use crate::pg::wire::socket;

/// Where a message's body sits in the receive buffer (valid until the next read).
#[derive(Debug, Clone, Copy)]
pub struct Message {
    /// Message type byte.
    pub tag: u8,
    start: usize,
    end: usize,
}

/// An open, authenticated connection.
pub struct PgConnection {
    socket: Socket,
    rb: ReadBuffer,
    out: BytesMut,
    server: HashMap<String, String>,
    interrupt: Option<Arc<AtomicBool>>,
    broken: bool,
}

const INITIAL_BUFFER: usize = 1 << 20;

fn protocol(e: impl std::fmt::Display) -> Error {
    Error::ConnectionLost(format!("protocol error: {e}"))
}

impl PgConnection {
    /// Connect, negotiate TLS and authenticate.
    pub fn connect(params: &ConnectParams) -> Result<Self> {
        let socket = socket::open(params)?;
        let mut conn = PgConnection {
            socket,
            rb: ReadBuffer::new(INITIAL_BUFFER),
            out: BytesMut::with_capacity(4096),
            server: HashMap::new(),
            interrupt: None,
            broken: false,
        };
        conn.startup(params).map_err(|e| match e {
            Error::Query { message, code } => Error::Connect { message, code },
            Error::ConnectionLost(message) => Error::Connect {
                message,
                code: None,
            },
            other => other,
        })?;
        Ok(conn)
    }

    /// A value the server reported (`server_version`, `server_encoding`, ...).
    pub fn server_param(&self, name: &str) -> Option<&str> {
        self.server.get(name).map(String::as_str)
    }

    /// Stop blocked reads with [`Error::Interrupted`] once `flag` is set.
    pub fn set_interrupt(&mut self, flag: Arc<AtomicBool>) -> Result<()> {
        self.socket.set_read_poll(true)?;
        self.interrupt = Some(flag);
        Ok(())
    }

    /// Forget the interrupt flag of a finished scan.
    pub fn clear_interrupt(&mut self) -> Result<()> {
        self.socket.set_read_poll(false)?;
        self.interrupt = None;
        Ok(())
    }

    fn startup(&mut self, params: &ConnectParams) -> Result<()> {
        frontend::startup_message(
            [
                ("user", params.user.as_str()),
                ("database", params.database.as_str()),
                ("application_name", params.application_name.as_str()),
                ("client_encoding", "UTF8"),
            ],
            &mut self.out,
        )
        .map_err(protocol)?;
        self.flush()?;
        let mut scram: Option<ScramSha256> = None;
        let password = || {
            params.password.as_deref().ok_or_else(|| Error::Connect {
                message: format!(
                    "the server asks user '{}' for a password and none was given",
                    params.user
                ),
                code: Some("28P01".into()),
            })
        };
        loop {
            let m = self.next_message()?;
            let body = self.body(m).to_vec();
            match m.tag {
                b'R' => {
                    let mut b = Body::new(&body);
                    match b.i32()? {
                        0 => {}
                        3 => {
                            frontend::password_message(password()?.as_bytes(), &mut self.out)
                                .map_err(protocol)?;
                            self.flush()?;
                        }
                        5 => {
                            let salt: [u8; 4] = b.bytes(4)?.try_into().map_err(protocol)?;
                            let hash =
                                md5_hash(params.user.as_bytes(), password()?.as_bytes(), salt);
                            frontend::password_message(hash.as_bytes(), &mut self.out)
                                .map_err(protocol)?;
                            self.flush()?;
                        }
                        10 => {
                            let mut mechanisms = Vec::new();
                            while let Ok(m) = b.cstr() {
                                if m.is_empty() {
                                    break;
                                }
                                mechanisms.push(m.to_string());
                            }
                            if !mechanisms.iter().any(|m| m == "SCRAM-SHA-256") {
                                return Err(Error::Connect {
                                    message: format!("unsupported SASL mechanisms {mechanisms:?}"),
                                    code: None,
                                });
                            }
                            let s = ScramSha256::new(
                                password()?.as_bytes(),
                                ChannelBinding::unsupported(),
                            );
                            frontend::sasl_initial_response(
                                "SCRAM-SHA-256",
                                s.message(),
                                &mut self.out,
                            )
                            .map_err(protocol)?;
                            self.flush()?;
                            scram = Some(s);
                        }
                        11 => {
                            let s = scram
                                .as_mut()
                                .ok_or_else(|| protocol("SASL continue without start"))?;
                            s.update(b.rest()).map_err(protocol)?;
                            frontend::sasl_response(s.message(), &mut self.out)
                                .map_err(protocol)?;
                            self.flush()?;
                        }
                        12 => {
                            let s = scram
                                .as_mut()
                                .ok_or_else(|| protocol("SASL final without start"))?;
                            s.finish(b.rest()).map_err(|e| Error::Connect {
                                message: format!("the server's SCRAM proof is invalid: {e}"),
                                code: None,
                            })?;
                        }
                        other => {
                            return Err(Error::Connect {
                                message: format!(
                                    "unsupported authentication method (code {other})"
                                ),
                                code: None,
                            });
                        }
                    }
                }
                b'K' => {}
                b'Z' => return Ok(()),
                b'E' => {
                    let (message, code) = error_fields(&body);
                    return Err(Error::Connect { message, code });
                }
                other => {
                    return Err(protocol(format!(
                        "unexpected message '{}' during startup",
                        other as char
                    )));
                }
            }
        }
    }

    fn flush(&mut self) -> Result<()> {
        let data = self.out.split();
        self.socket
            .write_all(&data)
            .and_then(|()| self.socket.flush())
            .map_err(|e| {
                self.broken = true;
                Error::ConnectionLost(format!("sending to the server failed: {e}"))
            })
    }

    /// Make at least `need` unread bytes available (positions taken before are stale).
    #[inline]
    fn fill(&mut self, need: usize) -> Result<()> {
        let interrupt = self.interrupt.as_deref();
        let filled = self.rb.fill(&mut self.socket, need, interrupt);
        self.broken |= filled.is_err();
        filled
    }

    /// The next message, skipping notices and parameter reports.
    pub fn next_message(&mut self) -> Result<Message> {
        loop {
            self.fill(5)?;
            let s = self.rb.start;
            let tag = self.rb.buf[s];
            let len = i32::from_be_bytes([
                self.rb.buf[s + 1],
                self.rb.buf[s + 2],
                self.rb.buf[s + 3],
                self.rb.buf[s + 4],
            ]);
            let len = usize::try_from(len)
                .ok()
                .filter(|l| *l >= 4)
                .ok_or_else(|| protocol("bad message length"))?;
            self.fill(1 + len)?;
            let m = Message {
                tag,
                start: self.rb.start + 5,
                end: self.rb.start + 1 + len,
            };
            self.rb.start += 1 + len;
            match tag {
                b'N' | b'A' => {}
                b'S' => {
                    let mut b = Body::new(&self.rb.buf[m.start..m.end]);
                    let (k, v) = (b.cstr()?.to_string(), b.cstr()?.to_string());
                    self.server.insert(k, v);
                }
                _ => return Ok(m),
            }
        }
    }

    /// The body of `m` (valid until the next call to [`PgConnection::next_message`]).
    #[inline]
    pub fn body(&self, m: Message) -> &[u8] {
        &self.rb.buf[m.start..m.end]
    }

    /// Read up to ReadyForQuery; return the first error seen on the way.
    fn finish_until_ready(&mut self, mut error: Option<Error>) -> Result<()> {
        loop {
            let m = match self.next_message() {
                Ok(m) => m,
                // A FATAL error is followed by the server closing: report the error, not the close.
                Err(lost) => return Err(error.unwrap_or(lost)),
            };
            match m.tag {
                b'Z' => return error.map_or(Ok(()), Err),
                b'E' if error.is_none() => {
                    let (message, code) = error_fields(self.body(m));
                    error = Some(Error::Query { message, code });
                }
                _ => {}
            }
        }
    }

    /// Run statements with the simple protocol, discarding any rows.
    pub fn execute(&mut self, sql: &str) -> Result<()> {
        self.simple_query(sql).map(|_| ())
    }

    /// Run one or more statements with the simple protocol; rows come back as text.
    pub fn simple_query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        frontend::query(sql, &mut self.out).map_err(protocol)?;
        self.flush()?;
        let mut rows = Vec::new();
        loop {
            let m = self.next_message()?;
            match m.tag {
                b'D' => rows.push(text_row(self.body(m))?),
                b'E' => {
                    let (message, code) = error_fields(self.body(m));
                    return self
                        .finish_until_ready(Some(Error::Query { message, code }))
                        .map(|()| rows);
                }
                b'Z' => return Ok(rows),
                b'H' => return Err(protocol("unexpected COPY in a simple query")),
                _ => {}
            }
        }
    }

    /// The result columns of `sql`, without running it.
    pub fn describe(&mut self, sql: &str) -> Result<Vec<FieldDesc>> {
        frontend::parse("", sql, std::iter::empty(), &mut self.out).map_err(protocol)?;
        frontend::describe(b'S', "", &mut self.out).map_err(protocol)?;
        frontend::sync(&mut self.out);
        self.flush()?;
        let mut fields = Vec::new();
        let mut error = None;
        loop {
            let m = self.next_message()?;
            match m.tag {
                b't' => {
                    let params = Body::new(self.body(m)).i16()?;
                    if params > 0 && error.is_none() {
                        error = Some(Error::Config(format!(
                            "the query uses {params} $n parameter(s); rivet runs queries without parameters"
                        )));
                    }
                }
                b'T' => fields = row_description(self.body(m))?,
                b'E' => {
                    let (message, code) = error_fields(self.body(m));
                    return self
                        .finish_until_ready(Some(Error::Query { message, code }))
                        .map(|()| fields);
                }
                b'Z' => return error.map_or(Ok(fields), Err),
                _ => {}
            }
        }
    }

    /// Queue `sql` with binary results (Parse, Bind, Execute, Sync) and send it.
    pub fn send_binary_query(&mut self, sql: &str) -> Result<()> {
        frontend::parse("", sql, std::iter::empty(), &mut self.out).map_err(protocol)?;
        frontend::bind(
            "",
            "",
            std::iter::empty(),
            std::iter::empty::<()>(),
            |(), _| Ok(postgres_protocol::IsNull::No),
            [1],
            &mut self.out,
        )
        .map_err(|_| protocol("bind"))?;
        frontend::execute("", 0, &mut self.out).map_err(protocol)?;
        frontend::sync(&mut self.out);
        self.flush()
    }

    /// Read the result of one [`PgConnection::send_binary_query`]; each row body goes to
    /// `on_row`. Returns the rows, checked against the server's command tag.
    pub fn read_binary_result(
        &mut self,
        mut on_row: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<u64> {
        let mut rows = 0u64;
        let mut tagged = None;
        loop {
            let m = self.next_message()?;
            match m.tag {
                b'D' => {
                    on_row(&self.rb.buf[m.start..m.end])?;
                    rows += 1;
                }
                b'C' => tagged = Some(tag_rows(self.body(m))?),
                b'E' => {
                    let (message, code) = error_fields(self.body(m));
                    return self
                        .finish_until_ready(Some(Error::Query { message, code }))
                        .map(|()| rows);
                }
                b'Z' => return check_tag(tagged, rows),
                b'1' | b'2' | b'n' | b's' | b'I' => {}
                other => return Err(protocol(format!("unexpected message '{}'", other as char))),
            }
        }
    }

    /// Run `COPY ... TO STDOUT` and hand every CopyData payload to `on_data`.
    /// Returns the rows the server's `COPY n` tag reports.
    pub fn copy_out(
        &mut self,
        sql: &str,
        mut on_data: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<u64> {
        frontend::query(sql, &mut self.out).map_err(protocol)?;
        self.flush()?;
        let mut tagged = None;
        loop {
            let m = self.next_message()?;
            match m.tag {
                b'd' => on_data(&self.rb.buf[m.start..m.end])?,
                b'C' => tagged = Some(tag_rows(self.body(m))?),
                b'E' => {
                    let (message, code) = error_fields(self.body(m));
                    return self
                        .finish_until_ready(Some(Error::Query { message, code }))
                        .map(|()| 0);
                }
                b'Z' => {
                    return tagged
                        .ok_or_else(|| protocol("the COPY ended without its command tag"));
                }
                b'H' | b'c' => {}
                other => {
                    return Err(protocol(format!(
                        "unexpected message '{}' in COPY",
                        other as char
                    )));
                }
            }
        }
    }
}

/// The row count at the end of a CommandComplete tag (`FETCH 10`, `COPY 10`, `SELECT 10`).
fn tag_rows(body: &[u8]) -> Result<u64> {
    let tag = body.strip_suffix(&[0]).unwrap_or(body);
    std::str::from_utf8(tag)
        .ok()
        .and_then(|t| t.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| protocol("a command tag without a row count"))
}

/// The rows received, when they are what the tag says.
fn check_tag(tagged: Option<u64>, rows: u64) -> Result<u64> {
    match tagged {
        Some(n) if n != rows => Err(Error::Integrity(format!(
            "the server's command tag reports {n} row(s) but {rows} arrived"
        ))),
        _ => Ok(rows),
    }
}

impl Drop for PgConnection {
    fn drop(&mut self) {
        if !self.broken {
            frontend::terminate(&mut self.out);
            let _ = self.flush();
        }
    }
}
