//! Parsing the few backend message bodies rivet needs.

use crate::error::Error;

/// One field of a RowDescription.
#[derive(Debug, Clone)]
pub struct FieldDesc {
    /// Column name.
    pub name: String,
    /// Source table OID, 0 for expressions.
    pub table_oid: u32,
    /// Column number in that table.
    pub column_id: i16,
    /// Type OID.
    pub type_oid: u32,
    /// Type modifier (precision/scale, length), -1 if none.
    pub typmod: i32,
}

/// A cursor over a message body.
pub struct Body<'a> {
    data: &'a [u8],
    at: usize,
}

fn malformed(what: &str) -> Error {
    Error::ConnectionLost(format!("malformed {what} message from the server"))
}

impl<'a> Body<'a> {
    /// Read `data` from the start.
    pub fn new(data: &'a [u8]) -> Self {
        Body { data, at: 0 }
    }

    /// Next byte.
    pub fn u8(&mut self) -> Result<u8, Error> {
        let b = *self.data.get(self.at).ok_or_else(|| malformed("short"))?;
        self.at += 1;
        Ok(b)
    }

    /// Next big-endian i16.
    pub fn i16(&mut self) -> Result<i16, Error> {
        let b = self
            .data
            .get(self.at..self.at + 2)
            .ok_or_else(|| malformed("short"))?;
        self.at += 2;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    /// Next big-endian i32.
    pub fn i32(&mut self) -> Result<i32, Error> {
        let b = self
            .data
            .get(self.at..self.at + 4)
            .ok_or_else(|| malformed("short"))?;
        self.at += 4;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Next big-endian i64.
    pub fn i64(&mut self) -> Result<i64, Error> {
        let b = self.bytes(8)?;
        Ok(i64::from_be_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    }

    /// Next NUL-terminated string.
    pub fn cstr(&mut self) -> Result<&'a str, Error> {
        let rest = &self.data[self.at..];
        let end = rest
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| malformed("string"))?;
        self.at += end + 1;
        std::str::from_utf8(&rest[..end]).map_err(|_| malformed("non-UTF-8"))
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let b = self
            .at
            .checked_add(n)
            .and_then(|end| self.data.get(self.at..end))
            .ok_or_else(|| malformed("short"))?;
        self.at += n;
        Ok(b)
    }

    /// What is left.
    pub fn rest(&self) -> &'a [u8] {
        &self.data[self.at..]
    }
}

/// The fields of an ErrorResponse or NoticeResponse: (message, SQLSTATE).
pub fn error_fields(body: &[u8]) -> (String, Option<String>) {
    let (mut severity, mut message, mut code, mut detail, mut hint) =
        (None, None, None, None, None);
    let mut b = Body::new(body);
    while let Some(&tag) = b.rest().first() {
        if tag == 0 {
            break;
        }
        let _ = b.bytes(1);
        let Ok(value) = b.cstr() else { break };
        match tag {
            b'V' => severity = Some(value.to_string()),
            b'S' if severity.is_none() => severity = Some(value.to_string()),
            b'M' => message = Some(value.to_string()),
            b'C' => code = Some(value.to_string()),
            b'D' => detail = Some(value.to_string()),
            b'H' => hint = Some(value.to_string()),
            _ => {}
        }
    }
    let mut text = format!(
        "{}: {}",
        severity.unwrap_or_else(|| "ERROR".into()),
        message.unwrap_or_else(|| "unknown error".into())
    );
    if let Some(d) = detail {
        text.push_str(&format!(" (detail: {d})"));
    }
    if let Some(h) = hint {
        text.push_str(&format!(" (hint: {h})"));
    }
    (text, code)
}

/// Parse a RowDescription.
pub fn row_description(body: &[u8]) -> Result<Vec<FieldDesc>, Error> {
    let mut b = Body::new(body);
    let n = usize::try_from(b.i16()?).map_err(|_| malformed("RowDescription"))?;
    // Room for the fields the body can hold (19 bytes at least each), not for the count
    // it announces: 32767 fields would take 1.3 MB for a 2-byte message.
    let mut fields = Vec::with_capacity(n.min(body.len() / 19));
    for _ in 0..n {
        let name = b.cstr()?.to_string();
        let table_oid = b.i32()? as u32;
        let column_id = b.i16()?;
        let type_oid = b.i32()? as u32;
        let _size = b.i16()?;
        let typmod = b.i32()?;
        let _format = b.i16()?;
        fields.push(FieldDesc {
            name,
            table_oid,
            column_id,
            type_oid,
            typmod,
        });
    }
    Ok(fields)
}

/// The text values of a DataRow in text format (catalog queries).
pub fn text_row(body: &[u8]) -> Result<Vec<Option<String>>, Error> {
    let mut b = Body::new(body);
    let n = usize::try_from(b.i16()?).map_err(|_| malformed("DataRow"))?;
    // Room for the values the body can hold (4 bytes at least each), not for the count it
    // announces.
    let mut out = Vec::with_capacity(n.min(body.len() / 4));
    for _ in 0..n {
        let len = b.i32()?;
        if len < 0 {
            out.push(None);
        } else {
            let raw = b.bytes(len as usize)?;
            out.push(Some(String::from_utf8_lossy(raw).into_owned()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_fields_keep_code_detail_and_hint() {
        let body = b"SERROR\0VERROR\0C22012\0Mdivision by zero\0Dsome detail\0Hsome hint\0\0";
        let (text, code) = error_fields(body);
        assert_eq!(code.as_deref(), Some("22012"));
        assert_eq!(
            text,
            "ERROR: division by zero (detail: some detail) (hint: some hint)"
        );
    }

    #[test]
    fn row_descriptions() {
        let mut body = vec![0, 1];
        body.extend(b"amount\0");
        body.extend(16384u32.to_be_bytes());
        body.extend(2i16.to_be_bytes());
        body.extend(1700u32.to_be_bytes());
        body.extend((-1i16).to_be_bytes());
        body.extend((((15 << 16) | 2) + 4i32).to_be_bytes());
        body.extend(1i16.to_be_bytes());
        let f = row_description(&body).expect("valid");
        assert_eq!(
            (f[0].name.as_str(), f[0].type_oid, f[0].column_id),
            ("amount", 1700, 2)
        );
        assert!(row_description(&body[..10]).is_err());
    }
}
