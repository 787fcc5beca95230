//! SCRAM channel binding: the policy, and the `tls-server-end-point` data (RFC 5929),
//! a hash of the server's certificate that ties the login to this TLS connection.

use sha2::{Digest, Sha256, Sha384, Sha512};

use crate::error::{Error, Result};

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
