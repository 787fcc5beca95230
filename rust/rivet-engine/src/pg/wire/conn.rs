//! A PostgreSQL connection speaking the wire protocol directly.
//!
//! Result rows are handed to the caller as borrowed slices of the receive
//! buffer: no per-row allocation and no async machinery between the socket
//! and the decoders. Everything the server sends is bounded before it is
//! allocated: message sizes (small until the login is done), the parameters it
//! reports, the rows of a text query.

use std::collections::HashMap;

use bytes::BytesMut;
use postgres_protocol::message::frontend;

use crate::error::{Error, Result};
use crate::net::{Link, OverLink, text_row_bytes};
use crate::pg::connect::{ConnectParams, PgSettings};
use crate::pg::wire::auth::Login;
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

/// What a running query can be cancelled with (a CancelRequest on a new connection).
#[derive(Debug, Clone)]
pub struct CancelKey {
    /// The backend's process id.
    pub pid: i32,
    /// Its secret key.
    pub secret: Vec<u8>,
}

/// An open, authenticated connection.
pub struct PgConnection {
    link: Link,
    out: BytesMut,
    server: HashMap<String, String>,
    cancel: Option<CancelKey>,
}

/// Most parameters a server may report (it reports about twenty).
const MAX_SERVER_PARAMS: usize = 256;
/// Most rows, and bytes, a text query (planning, catalogs) may return.
const MAX_TEXT_ROWS: usize = 1_000_000;
const MAX_TEXT_BYTES: usize = 256 << 20;

pub(super) fn protocol(e: impl std::fmt::Display) -> Error {
    Error::ConnectionLost(format!("protocol error: {e}"))
}

pub(super) fn login_refused(message: String) -> Error {
    Error::Connect {
        message,
        code: None,
    }
}

impl PgConnection {
    /// Connect, negotiate TLS and authenticate.
    pub fn connect(params: &ConnectParams) -> Result<Self> {
        let (socket, channel) = socket::open(params)?;
        PgConnection::connect_over(socket, channel, params)
    }

    /// Bytes held by the receive buffer (fuzz targets check it stays bounded).
    #[cfg(test)]
    pub(crate) fn buffered_capacity(&self) -> usize {
        self.link.rb.buf.len()
    }

    /// A value the server reported (`server_version`, `server_encoding`, ...).
    pub fn server_param(&self, name: &str) -> Option<&str> {
        self.server.get(name).map(String::as_str)
    }

    /// The key that cancels this connection's running statement.
    pub fn cancel_key(&self) -> Option<CancelKey> {
        self.cancel.clone()
    }

    fn startup(&mut self, params: &ConnectParams) -> Result<()> {
        let mut startup = vec![
            ("user", params.user.as_str()),
            ("database", params.protocol.database.as_str()),
            (
                "application_name",
                params.protocol.application_name.as_str(),
            ),
            ("client_encoding", "UTF8"),
        ];
        if params.protocol.replication {
            startup.push(("replication", "database"));
        }
        frontend::startup_message(startup, &mut self.out).map_err(protocol)?;
        self.flush()?;
        let mut login = Login::new(params, self.link.channel);
        loop {
            let m = self.next_message()?;
            let body = self.body(m).to_vec();
            match m.tag {
                b'R' => {
                    if let Some(reply) = login.step(&body, self.link.socket.peer_certificate())? {
                        self.out.extend_from_slice(&reply);
                        self.flush()?;
                    }
                }
                b'K' => {
                    let mut b = Body::new(&body);
                    let pid = b.i32()?;
                    let secret = b.rest();
                    if secret.is_empty() || secret.len() > 256 {
                        return Err(protocol("malformed BackendKeyData"));
                    }
                    self.cancel = Some(CancelKey {
                        pid,
                        secret: secret.to_vec(),
                    });
                }
                b'Z' => return login.finished(),
                b'E' => {
                    let (message, code) = error_fields(&body);
                    return Err(Error::Connect { message, code });
                }
                other => {
                    return Err(protocol(format!(
                        "unexpected message '{}' during startup",
                        char::from(other).escape_default()
                    )));
                }
            }
        }
    }

    fn flush(&mut self) -> Result<()> {
        let data = self.out.split();
        self.link.send(&data)
    }

    /// The next message, skipping notices and parameter reports.
    pub fn next_message(&mut self) -> Result<Message> {
        loop {
            self.link.fill(5)?;
            let rb = &self.link.rb;
            let s = rb.start;
            let tag = rb.buf[s];
            let len =
                i32::from_be_bytes([rb.buf[s + 1], rb.buf[s + 2], rb.buf[s + 3], rb.buf[s + 4]]);
            let len = usize::try_from(len)
                .ok()
                .filter(|l| *l >= 4)
                .ok_or_else(|| protocol("bad message length"))?;
            self.link.check_message_len(len)?;
            self.link.fill(1 + len)?;
            let m = Message {
                tag,
                start: self.link.rb.start + 5,
                end: self.link.rb.start + 1 + len,
            };
            self.link.rb.start += 1 + len;
            match tag {
                b'N' | b'A' => {}
                b'S' => {
                    let mut b = Body::new(&self.link.rb.buf[m.start..m.end]);
                    let (k, v) = (b.cstr()?.to_string(), b.cstr()?.to_string());
                    if self.server.len() >= MAX_SERVER_PARAMS && !self.server.contains_key(&k) {
                        return Err(protocol("the server reports too many parameters"));
                    }
                    self.server.insert(k, v);
                }
                _ => return Ok(m),
            }
        }
    }

    /// The body of `m` (valid until the next call to [`PgConnection::next_message`]).
    #[inline]
    pub fn body(&self, m: Message) -> &[u8] {
        &self.link.rb.buf[m.start..m.end]
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

    /// Run rivet's own fixed statements (BEGIN, SET LOCAL, COMMIT) with the simple
    /// protocol. SQL that embeds a user's query goes through [`PgConnection::query`].
    pub fn execute(&mut self, sql: &str) -> Result<()> {
        self.simple_query(sql).map(|_| ())
    }

    /// Run rivet's own statement with the simple protocol (the only one replication
    /// commands take); rows come back as text.
    pub fn simple_query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        frontend::query(sql, &mut self.out).map_err(protocol)?;
        self.flush()?;
        self.read_text_rows(false)
    }

    /// Send `command` (`START_REPLICATION ...`) and wait for the server to open the two-way
    /// copy its changes come in.
    pub fn start_copy_both(&mut self, command: &str) -> Result<()> {
        frontend::query(command, &mut self.out).map_err(protocol)?;
        self.flush()?;
        let m = self.next_message()?;
        match m.tag {
            b'W' => Ok(()),
            b'E' => {
                let (message, code) = error_fields(self.body(m));
                self.finish_until_ready(Some(Error::Query { message, code }))
            }
            other => Err(protocol(format!(
                "unexpected message '{}' starting replication",
                char::from(other).escape_default()
            ))),
        }
    }

    /// The next CopyData payload of a two-way copy (borrowed until the next read), or None
    /// once the server has ended it.
    pub fn copy_data(&mut self) -> Result<Option<&[u8]>> {
        let m = self.next_message()?;
        match m.tag {
            b'd' => Ok(Some(self.body(m))),
            b'c' => Ok(None),
            // The command ended without a CopyDone: the copy is over too.
            b'C' => self.finish_until_ready(None).map(|()| None),
            b'E' => {
                let (message, code) = error_fields(self.body(m));
                Err(Error::Query { message, code })
            }
            other => Err(protocol(format!(
                "unexpected message '{}' in the replication stream",
                char::from(other).escape_default()
            ))),
        }
    }

    /// Send one CopyData payload (a standby status update) to the server.
    pub fn send_copy_data(&mut self, payload: &[u8]) -> Result<()> {
        self.out.extend_from_slice(b"d");
        let len = i32::try_from(payload.len() + 4).map_err(|_| protocol("copy data too large"))?;
        self.out.extend_from_slice(&len.to_be_bytes());
        self.out.extend_from_slice(payload);
        self.flush()
    }

    /// End a two-way copy from our side and read to the end of the command.
    pub fn end_copy_both(&mut self) -> Result<()> {
        frontend::copy_done(&mut self.out);
        self.flush()?;
        loop {
            let m = self.next_message()?;
            match m.tag {
                // What the server had in flight before it saw our CopyDone.
                b'd' => {}
                b'c' | b'C' => {}
                b'E' => {
                    let (message, code) = error_fields(self.body(m));
                    return self.finish_until_ready(Some(Error::Query { message, code }));
                }
                b'Z' => return Ok(()),
                other => {
                    return Err(protocol(format!(
                        "unexpected message '{}' ending replication",
                        char::from(other).escape_default()
                    )));
                }
            }
        }
    }

    /// Run exactly one statement (the extended protocol refuses several); rows come back as text.
    pub fn query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        self.queue_statement(sql, 0)?;
        self.read_text_rows(true)
    }

    fn read_text_rows(&mut self, extended: bool) -> Result<Vec<Vec<Option<String>>>> {
        let mut rows = Vec::new();
        let mut bytes = 0usize;
        loop {
            let m = self.next_message()?;
            match m.tag {
                b'D' => {
                    let row = text_row(self.body(m))?;
                    // Count what the rows hold, not their wire size: 4 bytes of NULL take a
                    // 24-byte slot, so a server could otherwise fill 6 times the limit.
                    bytes += text_row_bytes(&row);
                    if rows.len() >= MAX_TEXT_ROWS || bytes > MAX_TEXT_BYTES {
                        return Err(protocol(
                            "a planning query returned more rows than rivet reads",
                        ));
                    }
                    rows.push(row);
                }
                b'E' => {
                    let (message, code) = error_fields(self.body(m));
                    return self
                        .finish_until_ready(Some(Error::Query { message, code }))
                        .map(|()| rows);
                }
                b'Z' => return Ok(rows),
                b'H' => return Err(protocol("unexpected COPY in a query")),
                b'1' | b'2' | b'C' | b'n' | b'I' | b'T' | b's' => {}
                other if extended => {
                    return Err(protocol(format!(
                        "unexpected message '{}'",
                        char::from(other).escape_default()
                    )));
                }
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
                b'1' | b'n' => {}
                other => {
                    return Err(protocol(format!(
                        "unexpected message '{}' in a describe",
                        char::from(other).escape_default()
                    )));
                }
            }
        }
    }

    /// Queue one statement (Parse, Bind with result format `format`, Execute, Sync) and send it.
    fn queue_statement(&mut self, sql: &str, format: i16) -> Result<()> {
        frontend::parse("", sql, std::iter::empty(), &mut self.out).map_err(protocol)?;
        frontend::bind(
            "",
            "",
            std::iter::empty(),
            std::iter::empty::<()>(),
            |(), _| Ok(postgres_protocol::IsNull::No),
            [format],
            &mut self.out,
        )
        .map_err(|_| protocol("bind"))?;
        frontend::execute("", 0, &mut self.out).map_err(protocol)?;
        frontend::sync(&mut self.out);
        self.flush()
    }

    /// Queue `sql` with binary results (Parse, Bind, Execute, Sync) and send it.
    pub fn send_binary_query(&mut self, sql: &str) -> Result<()> {
        self.queue_statement(sql, 1)
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
                    on_row(&self.link.rb.buf[m.start..m.end])?;
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
                other => {
                    return Err(protocol(format!(
                        "unexpected message '{}'",
                        char::from(other).escape_default()
                    )));
                }
            }
        }
    }

    /// Run one `COPY ... TO STDOUT` statement and hand every CopyData payload to `on_data`.
    /// Returns the rows the server's `COPY n` tag reports.
    pub fn copy_out(
        &mut self,
        sql: &str,
        mut on_data: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<u64> {
        self.queue_statement(sql, 0)?;
        let mut tagged = None;
        loop {
            let m = self.next_message()?;
            match m.tag {
                b'd' => on_data(&self.link.rb.buf[m.start..m.end])?,
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
                b'1' | b'2' | b'H' | b'c' => {}
                other => {
                    return Err(protocol(format!(
                        "unexpected message '{}' in COPY",
                        char::from(other).escape_default()
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

/// Ask the server to cancel the statement running on the connection `key` belongs to.
/// Best effort: a new connection sends one CancelRequest.
pub fn cancel(params: &ConnectParams, key: &CancelKey) -> Result<()> {
    let (socket, channel) = socket::open(params)?;
    let mut link = Link::new(socket, channel, Some(params.connect_timeout))?;
    let mut packet = Vec::with_capacity(12 + key.secret.len());
    packet.extend_from_slice(
        &i32::try_from(12 + key.secret.len())
            .unwrap_or(16)
            .to_be_bytes(),
    );
    packet.extend_from_slice(&80_877_102i32.to_be_bytes());
    packet.extend_from_slice(&key.pid.to_be_bytes());
    packet.extend_from_slice(&key.secret);
    link.send(&packet)
}

impl OverLink for PgConnection {
    type Settings = PgSettings;
    /// Terminate: 'X' and the length 4.
    const FAREWELL: &'static [u8] = b"X\0\0\0\x04";

    fn authenticate(&mut self, params: &ConnectParams) -> Result<()> {
        self.startup(params)
    }

    fn over(link: Link) -> Self {
        PgConnection {
            link,
            out: BytesMut::with_capacity(4096),
            server: HashMap::new(),
            cancel: None,
        }
    }

    fn link(&self) -> &Link {
        &self.link
    }

    fn link_mut(&mut self) -> &mut Link {
        &mut self.link
    }
}
