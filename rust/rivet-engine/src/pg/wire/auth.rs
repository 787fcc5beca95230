//! The login conversation: which password forms may go to the server (cleartext, MD5,
//! SCRAM-SHA-256), proof that the server knows the password, and SCRAM channel binding
//! (the policy, and the `tls-server-end-point` data of RFC 5929, a hash of the server's
//! certificate that ties the login to this TLS connection).

use sha2::{Digest, Sha256, Sha384, Sha512};

use bytes::BytesMut;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;

use super::conn::{login_refused, protocol};
use super::messages::Body;
use crate::error::{Error, Result};
use crate::net::Channel;
use crate::pg::connect::ConnectParams;

/// libpq's `channel_binding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BindingPolicy {
    /// Bind when the connection is TLS and the server offers SCRAM-SHA-256-PLUS.
    #[default]
    Prefer,
    /// Refuse to log in without binding.
    Require,
    /// Never bind.
    Disable,
}

impl BindingPolicy {
    /// Parse `prefer`, `require` or `disable`.
    pub fn parse(value: &str) -> Result<Self> {
        match value {
            "prefer" => Ok(BindingPolicy::Prefer),
            "require" => Ok(BindingPolicy::Require),
            "disable" => Ok(BindingPolicy::Disable),
            _ => Err(Error::Config(
                "channel_binding must be prefer, require or disable".into(),
            )),
        }
    }
}

/// One DER element: (tag, content, the bytes after it).
fn der(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *data.first()?;
    let first = *data.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in data.get(2..2 + n)? {
            len = (len << 8) | usize::from(*b);
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    Some((tag, data.get(header..end)?, data.get(end..)?))
}

// Signature algorithm OIDs (DER content) and the hash RFC 5929 binds with.
const SHA256_WITH: [&[u8]; 5] = [
    b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0b", // sha256WithRSAEncryption
    b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x05", // sha1WithRSAEncryption (bound with SHA-256)
    b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x04", // md5WithRSAEncryption (bound with SHA-256)
    b"\x2a\x86\x48\xce\x3d\x04\x03\x02",     // ecdsa-with-SHA256
    b"\x2a\x86\x48\xce\x3d\x04\x01",         // ecdsa-with-SHA1
];
const SHA384_WITH: [&[u8]; 2] = [
    b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0c",
    b"\x2a\x86\x48\xce\x3d\x04\x03\x03",
];
const SHA512_WITH: [&[u8]; 2] = [
    b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0d",
    b"\x2a\x86\x48\xce\x3d\x04\x03\x04",
];

/// The `tls-server-end-point` binding data of a DER certificate, or None when its
/// signature algorithm has no defined hash (Ed25519, RSA-PSS) or it does not parse.
pub fn server_end_point(certificate: &[u8]) -> Option<Vec<u8>> {
    let (0x30, cert, _) = der(certificate)? else {
        return None;
    };
    let (0x30, _tbs, rest) = der(cert)? else {
        return None;
    };
    let (0x30, algorithm, _) = der(rest)? else {
        return None;
    };
    let (0x06, oid, _) = der(algorithm)? else {
        return None;
    };
    if SHA256_WITH.contains(&oid) {
        Some(Sha256::digest(certificate).to_vec())
    } else if SHA384_WITH.contains(&oid) {
        Some(Sha384::digest(certificate).to_vec())
    } else if SHA512_WITH.contains(&oid) {
        Some(Sha512::digest(certificate).to_vec())
    } else {
        None
    }
}

/// The login conversation: which password forms may be sent, and proof the server knows it.
pub(super) struct Login<'a> {
    params: &'a ConnectParams,
    channel: Channel,
    scram: Option<ScramSha256>,
    scram_proven: bool,
    binding: BindingPolicy,
    bound: bool,
}

impl<'a> Login<'a> {
    pub(super) fn new(params: &'a ConnectParams, channel: Channel) -> Self {
        Login {
            params,
            channel,
            scram: None,
            scram_proven: false,
            binding: params.protocol.channel_binding,
            bound: false,
        }
    }

    fn password(&self) -> Result<&'a str> {
        self.params
            .password
            .as_deref()
            .ok_or_else(|| Error::Connect {
                message: format!(
                    "the server asks user '{}' for a password and none was given",
                    self.params.user
                ),
                code: Some("28P01".into()),
            })
    }

    /// A password that travels as itself (cleartext) or as a replayable hash (MD5) goes only
    /// over a connection that reaches the real server, unless the config allows otherwise.
    fn check_plain_password(&self, form: &str) -> Result<()> {
        if self.binding == BindingPolicy::Require {
            return Err(login_refused(format!(
                "the server asks for a {form} password, but channel_binding is require (SCRAM only)"
            )));
        }
        if !self.channel.trusted() && !self.params.allow_unverified_password {
            return Err(login_refused(format!(
                "the server asks for the password in {form} form over a {} connection, where anyone in \
                 between could read it; use tls mode verify-full (or verify-ca), or set \
                 tls.allow_unverified_password: true",
                self.channel.name()
            )));
        }
        Ok(())
    }

    /// Answer one authentication request; the bytes to send, if any.
    pub(super) fn step(
        &mut self,
        body: &[u8],
        certificate: Option<Vec<u8>>,
    ) -> Result<Option<Vec<u8>>> {
        let mut out = BytesMut::new();
        let mut b = Body::new(body);
        match b.i32()? {
            0 => {
                if self.scram.is_some() && !self.scram_proven {
                    return Err(login_refused(
                        "the server accepted the login without proving it knows the password (SCRAM)".into(),
                    ));
                }
                return Ok(None);
            }
            3 => {
                self.check_plain_password("cleartext")?;
                frontend::password_message(self.password()?.as_bytes(), &mut out)
                    .map_err(protocol)?;
            }
            5 => {
                self.check_plain_password("MD5")?;
                let salt: [u8; 4] = b.bytes(4)?.try_into().map_err(protocol)?;
                let hash = md5_hash(
                    self.params.user.as_bytes(),
                    self.password()?.as_bytes(),
                    salt,
                );
                frontend::password_message(hash.as_bytes(), &mut out).map_err(protocol)?;
            }
            10 => {
                let mut mechanisms = Vec::new();
                while let Ok(m) = b.cstr() {
                    if m.is_empty() || mechanisms.len() > 16 {
                        break;
                    }
                    mechanisms.push(m.to_string());
                }
                let (mechanism, binding) = self.choose_mechanism(&mechanisms, certificate)?;
                let s = ScramSha256::new(self.password()?.as_bytes(), binding);
                frontend::sasl_initial_response(mechanism, s.message(), &mut out)
                    .map_err(protocol)?;
                self.scram = Some(s);
            }
            11 => {
                let s = self
                    .scram
                    .as_mut()
                    .ok_or_else(|| protocol("SASL continue without start"))?;
                s.update(b.rest()).map_err(protocol)?;
                frontend::sasl_response(s.message(), &mut out).map_err(protocol)?;
            }
            12 => {
                let s = self
                    .scram
                    .as_mut()
                    .ok_or_else(|| protocol("SASL final without start"))?;
                s.finish(b.rest()).map_err(|e| {
                    login_refused(format!("the server's SCRAM proof is invalid: {e}"))
                })?;
                self.scram_proven = true;
                return Ok(None);
            }
            other => {
                return Err(login_refused(format!(
                    "unsupported authentication method (code {other})"
                )));
            }
        }
        Ok(Some(out.to_vec()))
    }

    fn choose_mechanism(
        &mut self,
        mechanisms: &[String],
        certificate: Option<Vec<u8>>,
    ) -> Result<(&'static str, ChannelBinding)> {
        let plus = mechanisms.iter().any(|m| m == "SCRAM-SHA-256-PLUS");
        let tls = matches!(self.channel, Channel::TlsVerified | Channel::TlsUnverified);
        let end_point = certificate.as_deref().and_then(server_end_point);
        if self.binding != BindingPolicy::Disable && tls && plus {
            if let Some(hash) = end_point {
                self.bound = true;
                return Ok((
                    "SCRAM-SHA-256-PLUS",
                    ChannelBinding::tls_server_end_point(hash),
                ));
            }
        }
        if self.binding == BindingPolicy::Require {
            return Err(login_refused(
                "channel_binding is require, but the connection cannot bind SCRAM to TLS (no TLS, a server \
                 without SCRAM-SHA-256-PLUS, or a certificate signature rivet cannot hash)"
                    .into(),
            ));
        }
        if !mechanisms.iter().any(|m| m == "SCRAM-SHA-256") {
            return Err(login_refused(format!(
                "unsupported SASL mechanisms {mechanisms:?}"
            )));
        }
        let binding = if tls && self.binding != BindingPolicy::Disable {
            ChannelBinding::unrequested()
        } else {
            ChannelBinding::unsupported()
        };
        Ok(("SCRAM-SHA-256", binding))
    }

    pub(super) fn finished(&self) -> Result<()> {
        if self.binding == BindingPolicy::Require && !self.bound {
            return Err(login_refused(
                "channel_binding is require, but the server let rivet in without SCRAM channel binding".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths_are_bounded() {
        assert!(der(&[0x30, 0x82, 0xff, 0xff, 0x00]).is_none());
        assert!(der(&[0x30, 0x89, 1, 2, 3, 4, 5, 6, 7, 8, 9]).is_none());
        assert_eq!(
            der(&[0x04, 0x01, 0xaa, 0xbb]),
            Some((0x04, &[0xaa][..], &[0xbb][..]))
        );
    }

    #[test]
    fn a_certificate_signed_with_sha256_binds_with_sha256() {
        // SEQUENCE { SEQUENCE {} (tbs), SEQUENCE { OID sha256WithRSAEncryption }, BIT STRING }
        let mut cert = vec![0x30, 0x13, 0x30, 0x00, 0x30, 0x0b, 0x06, 0x09];
        cert.extend_from_slice(SHA256_WITH[0]);
        cert.extend_from_slice(&[0x03, 0x02, 0x00, 0x00]);
        assert_eq!(
            server_end_point(&cert),
            Some(Sha256::digest(&cert).to_vec())
        );
        let mut ed25519 = vec![
            0x30, 0x0d, 0x30, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70,
        ];
        ed25519.extend_from_slice(&[0x03, 0x02, 0x00, 0x00]);
        assert_eq!(server_end_point(&ed25519), None);
    }
}
