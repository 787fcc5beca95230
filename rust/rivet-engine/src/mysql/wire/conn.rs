//! An open MySQL connection: packets in and out, text queries, and prepared statements
//! whose binary rows are handed over as buffer slices.

use super::packets::*;
use crate::error::{Error, Result};
use crate::mysql::connect::{MyParams, MySettings};
use crate::net::{self, Channel, Link, OverLink, Socket, text_row_bytes};

/// An open, authenticated connection.
pub struct MyConnection {
    pub(super) link: Link,
    pub(super) big: Vec<u8>,
    pub(super) seq: u8,
    pub(super) caps: u32,
    /// MariaDB's extended capabilities this connection agreed on.
    pub(super) extended_caps: u32,
    /// The server's version string (`10.11.19-MariaDB...`).
    pub server_version: String,
    /// The server's id of this connection (what `KILL QUERY` names).
    pub connection_id: u32,
}

/// Most rows, and bytes, a text query (planning, catalogs) may return.
const MAX_TEXT_ROWS: usize = 1_000_000;
const MAX_TEXT_BYTES: usize = 256 << 20;

impl MyConnection {
    /// Connect, negotiate TLS and authenticate.
    pub fn connect(params: &MyParams) -> Result<Self> {
        let (socket, channel) = if params.host.starts_with('/') {
            (Socket::Unix(net::unix(&params.host)?), Channel::Unix)
        } else {
            let (dial_host, dial_port) = params.dial_address();
            let stream = net::tcp(
                dial_host,
                dial_port,
                params.connect_timeout,
                params.keepalive,
            )?;
            (Socket::Tcp(stream), Channel::Plain)
        };
        MyConnection::connect_over(socket, channel, params)
    }

    /// Bytes held by the receive and reassembly buffers (fuzz targets check they stay bounded).
    #[cfg(test)]
    pub(crate) fn buffered_capacity(&self) -> usize {
        self.link.rb.buf.len() + self.big.capacity()
    }

    /// True for MariaDB servers.
    pub fn is_mariadb(&self) -> bool {
        self.server_version.contains("MariaDB")
    }

    /// The next packet (payloads of 16 MiB and more are assembled, up to the message limit).
    pub fn next_packet(&mut self) -> Result<Packet> {
        self.link.fill(4)?;
        let rb = &self.link.rb;
        let s = rb.start;
        let len = u32::from_le_bytes([rb.buf[s], rb.buf[s + 1], rb.buf[s + 2], 0]) as usize;
        self.seq = rb.buf[s + 3].wrapping_add(1);
        self.link.check_message_len(len)?;
        self.link.fill(4 + len)?;
        // fill may have moved the unread bytes to the front of the buffer.
        let s = self.link.rb.start;
        self.link.rb.start += 4 + len;
        if len < MAX_PAYLOAD {
            return Ok(Packet {
                start: s + 4,
                end: s + 4 + len,
                assembled: false,
            });
        }
        self.big.clear();
        self.big
            .extend_from_slice(&self.link.rb.buf[s + 4..s + 4 + len]);
        loop {
            self.link.fill(4)?;
            let rb = &self.link.rb;
            let t = rb.start;
            let more = u32::from_le_bytes([rb.buf[t], rb.buf[t + 1], rb.buf[t + 2], 0]) as usize;
            self.seq = rb.buf[t + 3].wrapping_add(1);
            self.link.check_message_len(self.big.len() + more)?;
            self.link.fill(4 + more)?;
            let piece = self.link.rb.start + 4..self.link.rb.start + 4 + more;
            self.big.extend_from_slice(&self.link.rb.buf[piece]);
            self.link.rb.start += 4 + more;
            if more < MAX_PAYLOAD {
                break;
            }
        }
        Ok(Packet {
            start: 0,
            end: self.big.len(),
            assembled: true,
        })
    }

    /// The payload of `p` (valid until the next read).
    #[inline]
    pub fn payload(&self, p: Packet) -> &[u8] {
        if p.assembled {
            &self.big[p.start..p.end]
        } else {
            &self.link.rb.buf[p.start..p.end]
        }
    }

    pub(super) fn send(&mut self, payload: &[u8]) -> Result<()> {
        let mut out = Vec::with_capacity(payload.len() + 4);
        for chunk in payload.chunks(MAX_PAYLOAD).chain(
            // A payload of an exact multiple of 16 MiB ends with an empty packet.
            (payload.len() % MAX_PAYLOAD == 0 && !payload.is_empty()).then_some(&[][..]),
        ) {
            let n = chunk.len() as u32;
            out.extend_from_slice(&n.to_le_bytes()[..3]);
            out.push(self.seq);
            self.seq = self.seq.wrapping_add(1);
            out.extend_from_slice(chunk);
        }
        if payload.is_empty() {
            out.extend_from_slice(&[0, 0, 0, self.seq]);
            self.seq = self.seq.wrapping_add(1);
        }
        self.link.send(&out)
    }

    fn command(&mut self, code: u8, body: &[u8]) -> Result<()> {
        self.seq = 0;
        let mut payload = Vec::with_capacity(body.len() + 1);
        payload.push(code);
        payload.extend_from_slice(body);
        self.send(&payload)
    }

    /// Ask for the binary log from `file` at `position`, as the replica `server_id`. With
    /// `until_end`, the server ends the dump at the end of its log instead of waiting for more.
    pub fn binlog_dump(
        &mut self,
        file: &str,
        position: u32,
        server_id: u32,
        until_end: bool,
    ) -> Result<()> {
        let mut body = Vec::with_capacity(10 + file.len());
        body.extend_from_slice(&position.to_le_bytes());
        body.extend_from_slice(&u16::from(until_end).to_le_bytes());
        body.extend_from_slice(&server_id.to_le_bytes());
        body.extend_from_slice(file.as_bytes());
        self.command(0x12, &body)
    }

    /// The next event of a dump (valid until the next read), or None where the server ended it.
    pub fn binlog_event(&mut self) -> Result<Option<&[u8]>> {
        let p = self.next_packet()?;
        let payload = self.payload(p);
        match payload.first() {
            Some(0x00) => Ok(Some(&payload[1..])),
            Some(0xfe) if payload.len() < 9 => Ok(None),
            Some(0xff) => Err(server_error(payload)),
            _ => Err(malformed("binary log packet")),
        }
    }

    pub(super) fn deprecate_eof(&self) -> bool {
        self.caps & CLIENT_DEPRECATE_EOF != 0
    }

    /// Is `payload` the end of a result set (EOF, or OK with the 0xfe header)?
    fn is_end(&self, payload: &[u8]) -> bool {
        payload.first() == Some(&0xfe) && payload.len() < MAX_PAYLOAD
    }

    fn column_defs(&mut self, count: usize) -> Result<Vec<ColumnDef>> {
        // `count` is the server's word (up to 65535 from a 12-byte prepare answer): room
        // grows with the definitions that actually arrive, not with the announcement.
        let mut cols = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            let p = self.next_packet()?;
            let mut r = Reader::new(self.payload(p));
            let text =
                |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
            r.lenenc_bytes()?; // catalog
            let schema = text(r.lenenc_bytes()?);
            r.lenenc_bytes()?; // table (alias)
            let org_table = text(r.lenenc_bytes()?);
            let name = text(r.lenenc_bytes()?);
            let org_name = text(r.lenenc_bytes()?);
            let extended = if self.extended_caps & MARIADB_CLIENT_EXTENDED_TYPE_INFO != 0 {
                extended_type(r.lenenc_bytes()?.unwrap_or_default())?
            } else {
                None
            };
            r.lenenc()?;
            let charset = r.u16()?;
            let length = r.u32()?;
            let type_code = r.u8()?;
            let flags = r.u16()?;
            let decimals = r.u8()?;
            let origin = (!schema.is_empty() && !org_table.is_empty() && !org_name.is_empty())
                .then_some((schema, org_table, org_name));
            cols.push(ColumnDef {
                name,
                origin,
                charset,
                length,
                type_code,
                flags,
                decimals,
                extended,
            });
        }
        if count > 0 && !self.deprecate_eof() {
            self.next_packet()?; // EOF
        }
        Ok(cols)
    }

    /// Run SQL with the text protocol; rows come back as text. Several statements may be given.
    pub fn query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        self.command(0x03, sql.as_bytes())?;
        let mut rows = Vec::new();
        // What the rows of every result set hold together: a server may announce more
        // result sets, and the rows of all of them are kept.
        let mut bytes = 0usize;
        loop {
            let p = self.next_packet()?;
            let payload = self.payload(p);
            let more = match payload.first() {
                Some(0xff) => return Err(server_error(payload)),
                Some(0x00) => ok_more_results(payload),
                _ => {
                    let count = column_count(payload)?;
                    self.column_defs(count)?;
                    loop {
                        let p = self.next_packet()?;
                        let payload = self.payload(p);
                        if payload.first() == Some(&0xff) {
                            return Err(server_error(payload));
                        }
                        if self.is_end(payload) {
                            break eof_more_results(payload, self.deprecate_eof());
                        }
                        let mut r = Reader::new(payload);
                        let mut row = Vec::with_capacity(count);
                        for _ in 0..count {
                            row.push(
                                r.lenenc_bytes()?
                                    .map(|v| String::from_utf8_lossy(v).into_owned()),
                            );
                        }
                        // Count what the rows hold, not their wire size: a 1-byte NULL takes
                        // a 24-byte slot, so a server could otherwise fill 24 times the limit.
                        bytes += text_row_bytes(&row);
                        if rows.len() >= MAX_TEXT_ROWS || bytes > MAX_TEXT_BYTES {
                            self.link.broken = true;
                            return Err(malformed(
                                "result (more rows than a planning query may return)",
                            ));
                        }
                        rows.push(row);
                    }
                }
            };
            if !more {
                return Ok(rows);
            }
        }
    }

    /// Run statements, discarding rows.
    pub fn execute(&mut self, sql: &str) -> Result<()> {
        self.query(sql).map(|_| ())
    }

    /// Prepare `sql`; returns the statement id and its result columns.
    pub fn prepare(&mut self, sql: &str) -> Result<(u32, Vec<ColumnDef>)> {
        self.command(0x16, sql.as_bytes())?;
        let p = self.next_packet()?;
        let payload = self.payload(p).to_vec();
        if payload.first() == Some(&0xff) {
            return Err(server_error(&payload));
        }
        let mut r = Reader::new(&payload);
        r.u8()?;
        let id = r.u32()?;
        let columns = usize::from(r.u16()?);
        let params = usize::from(r.u16()?);
        if params > 0 {
            self.column_defs(params)?;
            self.close_statement(id)?;
            return Err(Error::Config(format!(
                "the query has {params} ? parameter(s); rivet runs queries without parameters"
            )));
        }
        let cols = self.column_defs(columns)?;
        Ok((id, cols))
    }

    /// Release a prepared statement.
    pub fn close_statement(&mut self, id: u32) -> Result<()> {
        self.command(0x19, &id.to_le_bytes())
    }

    /// Execute a prepared statement; each binary row's payload goes to `on_row`.
    pub fn execute_statement(
        &mut self,
        id: u32,
        mut on_row: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<u64> {
        let mut body = Vec::with_capacity(9);
        body.extend_from_slice(&id.to_le_bytes());
        body.push(0); // no cursor
        body.extend_from_slice(&1u32.to_le_bytes());
        self.command(0x17, &body)?;
        let p = self.next_packet()?;
        let payload = self.payload(p);
        match payload.first() {
            Some(0xff) => return Err(server_error(payload)),
            Some(0x00) => return Ok(0),
            _ => {}
        }
        let count = column_count(payload)?;
        self.column_defs(count)?;
        let mut rows = 0u64;
        loop {
            let p = self.next_packet()?;
            let payload = self.payload(p);
            match payload.first() {
                Some(0x00) => {
                    if let Err(e) = on_row(payload) {
                        // The rest of the result is still on the wire: never reuse this connection.
                        self.link.broken = true;
                        return Err(e);
                    }
                    rows += 1;
                }
                Some(0xff) => return Err(server_error(payload)),
                _ if self.is_end(payload) => return Ok(rows),
                _ => return Err(malformed("binary row")),
            }
        }
    }
}

/// Ask the server to stop the statement running on connection `id` (a new connection
/// runs `KILL QUERY`). Best effort.
pub fn cancel(params: &MyParams, id: u32) -> Result<()> {
    let mut conn = MyConnection::connect(params)?;
    conn.execute(&format!("KILL QUERY {id}"))
}

impl OverLink for MyConnection {
    type Settings = MySettings;
    /// COM_QUIT: a one-byte payload (0x01) with sequence number 0.
    const FAREWELL: &'static [u8] = b"\x01\0\0\0\x01";

    fn authenticate(&mut self, params: &MyParams) -> Result<()> {
        self.handshake(params)
    }

    fn over(link: Link) -> Self {
        MyConnection {
            link,
            big: Vec::new(),
            seq: 0,
            caps: 0,
            extended_caps: 0,
            server_version: String::new(),
            connection_id: 0,
        }
    }

    fn link(&self) -> &Link {
        &self.link
    }

    fn link_mut(&mut self) -> &mut Link {
        &mut self.link
    }
}
