//! The MySQL client/server protocol, spoken directly: handshake, authentication
//! (mysql_native_password, caching_sha2_password), TLS, text queries, and
//! prepared statements whose binary rows are handed over as buffer slices.

use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::mysql::connect::MyParams;
use crate::net::{self, Channel, Link, OverLink, Socket, connect_error, text_row_bytes};

const CLIENT_LONG_PASSWORD: u32 = 1;
const CLIENT_LONG_FLAG: u32 = 4;
const CLIENT_CONNECT_WITH_DB: u32 = 8;
const CLIENT_PROTOCOL_41: u32 = 512;
const CLIENT_SSL: u32 = 2048;
const CLIENT_TRANSACTIONS: u32 = 8192;
const CLIENT_SECURE_CONNECTION: u32 = 32768;
const CLIENT_MULTI_RESULTS: u32 = 1 << 17;
const CLIENT_PLUGIN_AUTH: u32 = 1 << 19;
const CLIENT_PLUGIN_AUTH_LENENC: u32 = 1 << 21;
const CLIENT_DEPRECATE_EOF: u32 = 1 << 24;
/// utf8mb4_general_ci: understood by MySQL 5.5+ and MariaDB.
const UTF8MB4: u8 = 45;
const MAX_PAYLOAD: usize = 0xff_ffff;

/// A column definition from a result set or a prepared statement.
#[derive(Debug, Clone)]
pub struct ColumnDef {
    /// Column name (alias).
    pub name: String,
    /// The base column it reads, as `(schema, table, column)`, when it reads one directly.
    pub origin: Option<(String, String, String)>,
    /// Character set number (63 = binary).
    pub charset: u16,
    /// Display length (for DECIMAL: digits plus sign and point).
    pub length: u32,
    /// Field type code.
    pub type_code: u8,
    /// Flags (UNSIGNED, BINARY, ENUM, SET, ...).
    pub flags: u16,
    /// Decimals (scale, or fractional seconds).
    pub decimals: u8,
}

/// A cursor over a packet payload.
pub struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

fn malformed(what: &str) -> Error {
    Error::ConnectionLost(format!("malformed {what} from the server"))
}

impl<'a> Reader<'a> {
    /// Read `data` from the start.
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, at: 0 }
    }
    /// Next byte.
    pub fn u8(&mut self) -> Result<u8> {
        let v = *self.data.get(self.at).ok_or_else(|| malformed("packet"))?;
        self.at += 1;
        Ok(v)
    }
    /// Next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let v = self
            .at
            .checked_add(n)
            .and_then(|end| self.data.get(self.at..end))
            .ok_or_else(|| malformed("packet"))?;
        self.at += n;
        Ok(v)
    }
    /// Little-endian u16.
    pub fn u16(&mut self) -> Result<u16> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    /// Little-endian u32.
    pub fn u32(&mut self) -> Result<u32> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// Length-encoded integer (`None` for the NULL marker 0xfb).
    pub fn lenenc(&mut self) -> Result<Option<u64>> {
        Ok(Some(match self.u8()? {
            0xfb => return Ok(None),
            0xfc => u64::from(self.u16()?),
            0xfd => {
                let b = self.bytes(3)?;
                u64::from(u32::from_le_bytes([b[0], b[1], b[2], 0]))
            }
            0xfe => {
                let b = self.bytes(8)?;
                u64::from_le_bytes(b.try_into().map_err(|_| malformed("integer"))?)
            }
            v => u64::from(v),
        }))
    }
    /// Length-encoded string (`None` for NULL).
    pub fn lenenc_bytes(&mut self) -> Result<Option<&'a [u8]>> {
        match self.lenenc()? {
            None => Ok(None),
            Some(n) => Ok(Some(
                self.bytes(usize::try_from(n).map_err(|_| malformed("string"))?)?,
            )),
        }
    }
    /// NUL-terminated string.
    pub fn cstr(&mut self) -> Result<&'a [u8]> {
        let rest = &self.data[self.at..];
        let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
        self.at += (end + 1).min(rest.len());
        Ok(&rest[..end])
    }
    /// Bytes left.
    pub fn rest(&self) -> &'a [u8] {
        &self.data[self.at..]
    }
}

/// The error an ERR packet carries.
fn server_error(payload: &[u8]) -> Error {
    let mut r = Reader::new(payload);
    let _ = r.u8();
    let code = r.u16().unwrap_or(0);
    let mut rest = r.rest();
    let mut state = None;
    if rest.first() == Some(&b'#') && rest.len() >= 6 {
        state = Some(String::from_utf8_lossy(&rest[1..6]).into_owned());
        rest = &rest[6..];
    }
    let message = String::from_utf8_lossy(rest).into_owned();
    let sqlstate = state
        .map(|s| format!(" (SQLSTATE {s})"))
        .unwrap_or_default();
    Error::Query {
        message: format!("ERROR {code}{sqlstate}: {message}"),
        code: Some(code.to_string()),
    }
}

fn scramble_native(password: &[u8], salt: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let stage1 = Sha1::digest(password);
    let stage2 = Sha1::digest(stage1);
    let mut h = Sha1::new();
    h.update(&salt[..salt.len().min(20)]);
    h.update(stage2);
    let key = h.finalize();
    stage1.iter().zip(key.iter()).map(|(a, b)| a ^ b).collect()
}

fn scramble_sha256(password: &[u8], salt: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let stage1 = Sha256::digest(password);
    let stage2 = Sha256::digest(stage1);
    let mut h = Sha256::new();
    h.update(stage2);
    h.update(&salt[..salt.len().min(20)]);
    let key = h.finalize();
    stage1.iter().zip(key.iter()).map(|(a, b)| a ^ b).collect()
}

/// Where a packet's payload sits in the receive buffer (or in the assembled buffer).
#[derive(Debug, Clone, Copy)]
pub struct Packet {
    start: usize,
    end: usize,
    assembled: bool,
}

/// An open, authenticated connection.
pub struct MyConnection {
    link: Link,
    big: Vec<u8>,
    seq: u8,
    caps: u32,
    /// The server's version string (`10.11.19-MariaDB...`).
    pub server_version: String,
    /// The server's id of this connection (what `KILL QUERY` names).
    pub connection_id: u32,
}

/// Most columns a result may have (MySQL allows 4096).
const MAX_COLUMNS: usize = 4096;
/// Most rows, and bytes, a text query (planning, catalogs) may return.
const MAX_TEXT_ROWS: usize = 1_000_000;
const MAX_TEXT_BYTES: usize = 256 << 20;

impl MyConnection {
    /// Connect, negotiate TLS and authenticate.
    pub fn connect(params: &MyParams) -> Result<Self> {
        let (socket, channel) = if params.host.starts_with('/') {
            (Socket::Unix(net::unix(&params.host)?), Channel::Unix)
        } else {
            let stream = net::tcp(
                &params.host,
                params.port,
                params.connect_timeout,
                params.keepalive,
            )?;
            (Socket::Tcp(stream), Channel::Plain)
        };
        let link = Link::new(socket, channel, Some(params.connect_timeout))?;
        let mut conn = MyConnection::over(link);
        conn.login(params)?;
        Ok(conn)
    }

    /// Run the handshake; afterwards packets may be as large as any value.
    pub(crate) fn login(&mut self, params: &MyParams) -> Result<()> {
        self.handshake(params).map_err(Error::at_login)?;
        self.link.logged_in(params.read_timeout);
        Ok(())
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

    fn send(&mut self, payload: &[u8]) -> Result<()> {
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

    fn handshake(&mut self, params: &MyParams) -> Result<()> {
        let p = self.next_packet()?;
        let payload = self.payload(p).to_vec();
        if payload.first() == Some(&0xff) {
            return Err(server_error(&payload));
        }
        let mut r = Reader::new(&payload);
        if r.u8()? != 10 {
            return Err(connect_error("unsupported MySQL protocol version".into()));
        }
        self.server_version = String::from_utf8_lossy(r.cstr()?).into_owned();
        self.connection_id = r.u32()?;
        let mut salt = r.bytes(8)?.to_vec();
        r.u8()?;
        let mut server_caps = u32::from(r.u16()?);
        let _charset = r.u8()?;
        let _status = r.u16()?;
        server_caps |= u32::from(r.u16()?) << 16;
        let salt_len = r.u8()?;
        r.bytes(10)?;
        if server_caps & CLIENT_SECURE_CONNECTION != 0 {
            let n = (usize::from(salt_len).saturating_sub(8)).max(13);
            let part = r.bytes(n.min(r.rest().len()))?;
            salt.extend_from_slice(part.strip_suffix(&[0]).unwrap_or(part));
        }
        let mut plugin = if server_caps & CLIENT_PLUGIN_AUTH != 0 {
            String::from_utf8_lossy(r.cstr()?).into_owned()
        } else {
            "mysql_native_password".into()
        };
        let mut caps = CLIENT_LONG_PASSWORD
            | CLIENT_LONG_FLAG
            | CLIENT_PROTOCOL_41
            | CLIENT_TRANSACTIONS
            | CLIENT_SECURE_CONNECTION
            | CLIENT_MULTI_RESULTS
            | CLIENT_PLUGIN_AUTH
            | CLIENT_PLUGIN_AUTH_LENENC
            | CLIENT_DEPRECATE_EOF;
        if params.protocol.database.is_some() {
            caps |= CLIENT_CONNECT_WITH_DB;
        }
        caps &= server_caps | CLIENT_CONNECT_WITH_DB;
        let tls = params.tls.client_config()?;
        let encrypted = match tls {
            Some(config) if server_caps & CLIENT_SSL != 0 => {
                caps |= CLIENT_SSL;
                let mut request = Vec::with_capacity(32);
                request.extend_from_slice(&caps.to_le_bytes());
                request.extend_from_slice(&(MAX_PAYLOAD as u32).to_le_bytes());
                request.push(UTF8MB4);
                request.extend_from_slice(&[0u8; 23]);
                self.send(&request)?;
                self.link
                    .upgrade(&params.host, config, params.connect_timeout)?;
                self.link.channel = params.tls.channel();
                true
            }
            Some(_) if params.tls.mode == crate::tls::TlsMode::Prefer => false,
            Some(_) => {
                return Err(connect_error(format!(
                    "the server at {}:{} does not accept TLS, and TLS mode is {:?}",
                    params.host, params.port, params.tls.mode
                )));
            }
            None => false,
        };
        self.caps = caps;
        let password = params.password.clone().unwrap_or_default();
        let mut response = Vec::with_capacity(128);
        response.extend_from_slice(&caps.to_le_bytes());
        response.extend_from_slice(&(MAX_PAYLOAD as u32).to_le_bytes());
        response.push(UTF8MB4);
        response.extend_from_slice(&[0u8; 23]);
        response.extend_from_slice(params.user.as_bytes());
        response.push(0);
        let auth = self.auth_data(&plugin, password.as_bytes(), &salt, params)?;
        response.push(auth.len() as u8);
        response.extend_from_slice(&auth);
        if let Some(db) = &params.protocol.database {
            response.extend_from_slice(db.as_bytes());
            response.push(0);
        }
        response.extend_from_slice(plugin.as_bytes());
        response.push(0);
        self.send(&response)?;
        loop {
            let p = self.next_packet()?;
            let payload = self.payload(p).to_vec();
            match payload.first() {
                Some(0x00) => return Ok(()),
                Some(0xff) => return Err(server_error(&payload)),
                Some(0xfe) => {
                    // Auth switch: another plugin, a new salt.
                    let mut r = Reader::new(&payload[1..]);
                    plugin = String::from_utf8_lossy(r.cstr()?).into_owned();
                    salt = r.rest().strip_suffix(&[0]).unwrap_or(r.rest()).to_vec();
                    let auth = self.auth_data(&plugin, password.as_bytes(), &salt, params)?;
                    self.send(&auth)?;
                }
                Some(0x01) if plugin == "caching_sha2_password" => match payload.get(1) {
                    Some(3) => {} // fast authentication succeeded; OK follows
                    // Full authentication sends the password itself: only to a server proven to be
                    // the real one (verified TLS, or a local socket), unless the config allows it.
                    Some(4)
                        if self.link.channel.trusted()
                            || (encrypted && params.allow_unverified_password) =>
                    {
                        let mut clear = password.as_bytes().to_vec();
                        clear.push(0);
                        self.send(&clear)?;
                    }
                    _ => {
                        return Err(connect_error(format!(
                            "caching_sha2_password needs a full authentication, which sends the password \
                             itself; rivet does that only over verified TLS (this connection is {}): set tls \
                             mode verify-full (or verify-ca), or tls.allow_unverified_password: true with \
                             TLS, or log in once with another client to fill the server's cache",
                            self.link.channel.name()
                        )));
                    }
                },
                _ => {
                    return Err(connect_error(
                        "unexpected packet during authentication".into(),
                    ));
                }
            }
        }
    }

    fn auth_data(
        &self,
        plugin: &str,
        password: &[u8],
        salt: &[u8],
        params: &MyParams,
    ) -> Result<Vec<u8>> {
        match plugin {
            // A SHA-1 hash of the password answers the salt: whoever reads it can try passwords
            // offline, as with PostgreSQL's MD5. It goes only where the cleartext may go.
            "mysql_native_password"
                if !password.is_empty()
                    && !self.link.channel.trusted()
                    && !params.allow_unverified_password =>
            {
                Err(connect_error(format!(
                    "the server asks for a mysql_native_password hash over a {} connection, where anyone \
                     in between could read it and guess the password offline; use tls mode verify-full \
                     (or verify-ca with ca_file), or set tls.allow_unverified_password: true",
                    self.link.channel.name()
                )))
            }
            "mysql_native_password" => Ok(scramble_native(password, salt)),
            "caching_sha2_password" => Ok(scramble_sha256(password, salt)),
            other => Err(connect_error(format!(
                "unsupported authentication plugin '{other}'"
            ))),
        }
    }

    fn deprecate_eof(&self) -> bool {
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

/// The column count that starts a result set, bounded before anything is allocated for it.
fn column_count(payload: &[u8]) -> Result<usize> {
    let count = Reader::new(payload).lenenc()?.unwrap_or(0);
    usize::try_from(count)
        .ok()
        .filter(|n| *n <= MAX_COLUMNS)
        .ok_or_else(|| malformed("result header (too many columns)"))
}

fn ok_more_results(payload: &[u8]) -> bool {
    let mut r = Reader::new(payload);
    let _ = r.u8();
    let _ = r.lenenc();
    let _ = r.lenenc();
    r.u16().is_ok_and(|status| status & 0x0008 != 0)
}

fn eof_more_results(payload: &[u8], deprecate_eof: bool) -> bool {
    if deprecate_eof {
        return ok_more_results(payload);
    }
    let mut r = Reader::new(payload);
    let _ = r.u8();
    let _ = r.u16();
    r.u16().is_ok_and(|status| status & 0x0008 != 0)
}

/// Ask the server to stop the statement running on connection `id` (a new connection
/// runs `KILL QUERY`). Best effort.
pub fn cancel(params: &MyParams, id: u32) -> Result<()> {
    let mut conn = MyConnection::connect(params)?;
    conn.execute(&format!("KILL QUERY {id}"))
}

impl OverLink for MyConnection {
    fn over(link: Link) -> Self {
        MyConnection {
            link,
            big: Vec::new(),
            seq: 0,
            caps: 0,
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

impl Drop for MyConnection {
    fn drop(&mut self) {
        if !self.link.broken {
            let _ = self.command(0x01, &[]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrambles_match_known_answers() {
        // Known answers from an independent implementation (PyMySQL's _auth module) for
        // the salt "0123456789abcdefghij": (password, mysql_native_password, caching_sha2_password).
        let salt = b"0123456789abcdefghij";
        let cases: [(&[u8], &str, &str); 3] = [
            (
                b"secret",
                "f5cac3f3b3df2133feb57db682c71e6ed433a988",
                "7e4adda2f2d5ef09b4147518becb0cee2939376203650a8c2bb2815959364bd0",
            ),
            (
                b"p@ss/w:rd?#",
                "22692e02954bc1bee5e23eac8c21d83b5e521907",
                "f6a311e40285bb6f445698e473ffe1ec8ab2bece480fd384ef29f4f632bac6c7",
            ),
            (
                "p\u{e4}ssw\u{f6}rd".as_bytes(),
                "dde7c2c3201bf429a905921ad2734a3542e21272",
                "e8cbd1b433075d295c95ebd6eea9478a1a25d0b69e63abe0c817703d9039c3cd",
            ),
        ];
        let hex = |b: Vec<u8>| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        for (password, native, sha2) in cases {
            assert_eq!(hex(scramble_native(password, salt)), native);
            assert_eq!(hex(scramble_sha256(password, salt)), sha2);
        }
        // An empty password sends no scramble.
        assert!(scramble_native(b"", salt).is_empty() && scramble_sha256(b"", salt).is_empty());
    }

    #[test]
    fn lenenc_values() {
        let data = [0xfc, 0x10, 0x27, 0xfb, 0x03, b'a', b'b', b'c'];
        let mut r = Reader::new(&data);
        assert_eq!(r.lenenc().unwrap(), Some(10_000));
        assert_eq!(r.lenenc().unwrap(), None);
        assert_eq!(r.lenenc_bytes().unwrap(), Some(&b"abc"[..]));
    }
}
