//! Packets of the MySQL protocol: capability flags, length-encoded values, column
//! definitions, server errors and the end-of-result markers.

use crate::error::{Error, Result};

pub(super) const CLIENT_LONG_PASSWORD: u32 = 1;
pub(super) const CLIENT_LONG_FLAG: u32 = 4;
pub(super) const CLIENT_CONNECT_WITH_DB: u32 = 8;
pub(super) const CLIENT_PROTOCOL_41: u32 = 512;
pub(super) const CLIENT_SSL: u32 = 2048;
pub(super) const CLIENT_TRANSACTIONS: u32 = 8192;
pub(super) const CLIENT_SECURE_CONNECTION: u32 = 32768;
pub(super) const CLIENT_MULTI_RESULTS: u32 = 1 << 17;
pub(super) const CLIENT_PLUGIN_AUTH: u32 = 1 << 19;
pub(super) const CLIENT_PLUGIN_AUTH_LENENC: u32 = 1 << 21;
pub(super) const CLIENT_DEPRECATE_EOF: u32 = 1 << 24;
/// MariaDB's extended capability (the upper 32 bits): column definitions name a type the
/// base type code does not (`json` for a JSON column, which is a LONGTEXT; `uuid`, `inet6`).
pub(super) const MARIADB_CLIENT_EXTENDED_TYPE_INFO: u32 = 1 << 3;
/// utf8mb4_general_ci: understood by MySQL 5.5+ and MariaDB.
pub(super) const UTF8MB4: u8 = 45;
pub(super) const MAX_PAYLOAD: usize = 0xff_ffff;

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
    /// What MariaDB's extended type info names the column (a format such as `json`, else a
    /// type name such as `uuid`), when the server sends it.
    pub extended: Option<String>,
}

/// MariaDB's extended type info of a column definition: pairs of a kind (0: the type's name,
/// 1: its format) and a length-encoded value. The format, else the type's name.
pub(super) fn extended_type(info: &[u8]) -> Result<Option<String>> {
    let mut r = Reader::new(info);
    let (mut name, mut format) = (None, None);
    while !r.rest().is_empty() {
        let kind = r.u8()?;
        let value =
            String::from_utf8_lossy(r.lenenc_bytes()?.unwrap_or_default()).to_ascii_lowercase();
        match kind {
            0 => name = Some(value),
            1 => format = Some(value),
            _ => {}
        }
    }
    Ok(format.or(name).filter(|v| !v.is_empty()))
}

/// A cursor over a packet payload.
pub struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

pub(super) fn malformed(what: &str) -> Error {
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
pub(super) fn server_error(payload: &[u8]) -> Error {
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

/// Where a packet's payload sits in the receive buffer (or in the assembled buffer).
#[derive(Debug, Clone, Copy)]
pub struct Packet {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) assembled: bool,
}

/// Most columns a result may have (MySQL allows 4096).
const MAX_COLUMNS: usize = 4096;

/// The column count that starts a result set, bounded before anything is allocated for it.
pub(super) fn column_count(payload: &[u8]) -> Result<usize> {
    let count = Reader::new(payload).lenenc()?.unwrap_or(0);
    usize::try_from(count)
        .ok()
        .filter(|n| *n <= MAX_COLUMNS)
        .ok_or_else(|| malformed("result header (too many columns)"))
}

pub(super) fn ok_more_results(payload: &[u8]) -> bool {
    let mut r = Reader::new(payload);
    let _ = r.u8();
    let _ = r.lenenc();
    let _ = r.lenenc();
    r.u16().is_ok_and(|status| status & 0x0008 != 0)
}

pub(super) fn eof_more_results(payload: &[u8], deprecate_eof: bool) -> bool {
    if deprecate_eof {
        return ok_more_results(payload);
    }
    let mut r = Reader::new(payload);
    let _ = r.u8();
    let _ = r.u16();
    r.u16().is_ok_and(|status| status & 0x0008 != 0)
}

#[cfg(test)]
mod tests {

    #[test]
    fn extended_type_info_gives_the_format_else_the_type_name() {
        assert_eq!(
            extended_type(&[1, 4, b'j', b's', b'o', b'n'])
                .unwrap()
                .as_deref(),
            Some("json")
        );
        assert_eq!(
            extended_type(&[0, 4, b'U', b'U', b'I', b'D'])
                .unwrap()
                .as_deref(),
            Some("uuid")
        );
        assert_eq!(
            extended_type(&[0, 1, b'x', 1, 4, b'j', b's', b'o', b'n'])
                .unwrap()
                .as_deref(),
            Some("json")
        );
        assert_eq!(extended_type(&[]).unwrap(), None);
        assert!(
            extended_type(&[1, 9, b'j']).is_err(),
            "a value longer than the info"
        );
    }

    use super::*;

    #[test]
    fn lenenc_values() {
        let data = [0xfc, 0x10, 0x27, 0xfb, 0x03, b'a', b'b', b'c'];
        let mut r = Reader::new(&data);
        assert_eq!(r.lenenc().unwrap(), Some(10_000));
        assert_eq!(r.lenenc().unwrap(), None);
        assert_eq!(r.lenenc_bytes().unwrap(), Some(&b"abc"[..]));
    }
}
