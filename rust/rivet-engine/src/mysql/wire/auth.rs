//! The MySQL handshake and authentication: TLS upgrade, mysql_native_password and
//! caching_sha2_password, and when a password (or its hash) may go to the server at all.

use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::conn::MyConnection;
use super::packets::*;
use crate::error::Result;
use crate::mysql::connect::MyParams;
use crate::net::connect_error;

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

/// The 23 bytes after the character set in a handshake response: 19 zeros, then MariaDB's
/// extended capabilities (zeros for MySQL, which reads none there).
fn filler(extended: u32) -> [u8; 23] {
    let mut bytes = [0u8; 23];
    bytes[19..].copy_from_slice(&extended.to_le_bytes());
    bytes
}

impl MyConnection {
    pub(super) fn handshake(&mut self, params: &MyParams) -> Result<()> {
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
        let reserved = r.bytes(10)?;
        // MariaDB (which leaves CLIENT_MYSQL, the first bit, unset) puts its extended
        // capabilities in the last four reserved bytes.
        let server_extended = if server_caps & CLIENT_LONG_PASSWORD == 0 {
            u32::from_le_bytes([reserved[6], reserved[7], reserved[8], reserved[9]])
        } else {
            0
        };
        // Our CLIENT_LONG_PASSWORD (CLIENT_MYSQL) is dropped below with the server's caps, so
        // MariaDB reads these from the response; MySQL, which keeps the bit, reads zeros there.
        let extended = server_extended & MARIADB_CLIENT_EXTENDED_TYPE_INFO;
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
                request.extend_from_slice(&filler(extended));
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
        self.extended_caps = extended;
        let password = params.password.clone().unwrap_or_default();
        let mut response = Vec::with_capacity(128);
        response.extend_from_slice(&caps.to_le_bytes());
        response.extend_from_slice(&(MAX_PAYLOAD as u32).to_le_bytes());
        response.push(UTF8MB4);
        response.extend_from_slice(&filler(extended));
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
}
