//! TLS settings shared by the network sources: the libpq `sslmode` ladder
//! (disable, prefer, require, verify-ca, verify-full) mapped onto rustls.

use std::fs;
use std::io::BufReader;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::error::{Error, Result};

/// How much the client insists on and checks encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain TCP.
    Disable,
    /// Encrypt when the server offers it, without checking the certificate (libpq's default).
    Prefer,
    /// Encrypt, accept any certificate.
    Require,
    /// Encrypt, check the certificate chain but not the host name.
    VerifyCa,
    /// Encrypt, check the chain and the host name.
    VerifyFull,
}

impl TlsMode {
    /// Parse a libpq `sslmode` / rivet `tls.mode` value.
    pub fn parse(value: &str) -> Result<Self> {
        match value {
            "disable" => Ok(TlsMode::Disable),
            "allow" | "prefer" => Ok(TlsMode::Prefer),
            "require" => Ok(TlsMode::Require),
            "verify-ca" => Ok(TlsMode::VerifyCa),
            "verify-full" => Ok(TlsMode::VerifyFull),
            _ => Err(Error::Config(
                "unknown TLS mode (expected disable, prefer, require, verify-ca or verify-full)"
                    .into(),
            )),
        }
    }

    /// The libpq name of the mode.
    pub fn name(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Prefer => "prefer",
            TlsMode::Require => "require",
            TlsMode::VerifyCa => "verify-ca",
            TlsMode::VerifyFull => "verify-full",
        }
    }
}

/// TLS settings for one connection.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// The mode.
    pub mode: TlsMode,
    /// PEM file with the CA certificates to trust instead of the system store.
    pub ca_file: Option<String>,
    /// Accept a certificate that does not chain to a trusted root.
    pub accept_invalid_certs: bool,
    /// Accept a certificate issued for another host name.
    pub accept_invalid_hostnames: bool,
}

impl TlsSettings {
    /// Whether a handshake with these settings proves the server is the one meant: the chain is
    /// checked, and so is the host name unless a CA file of the user's own names the only trusted
    /// issuer (a public CA vouches for any host it certified, not for this one).
    pub fn verifies(&self) -> bool {
        let name_checked = self.mode == TlsMode::VerifyFull && !self.accept_invalid_hostnames;
        matches!(self.mode, TlsMode::VerifyCa | TlsMode::VerifyFull)
            && !self.accept_invalid_certs
            && (name_checked || self.ca_file.is_some())
    }

    /// How a connection that completed a TLS handshake with these settings is protected.
    pub fn channel(&self) -> crate::net::Channel {
        if self.verifies() {
            crate::net::Channel::TlsVerified
        } else {
            crate::net::Channel::TlsUnverified
        }
    }

    /// Build the rustls client configuration, or `None` for plain TCP.
    pub fn client_config(&self) -> Result<Option<ClientConfig>> {
        if self.mode == TlsMode::VerifyCa && self.ca_file.is_none() {
            // libpq's rule: verify-ca checks the chain against the CA the user names, never the
            // system's public CAs, which would accept any certificate they issued for any host.
            return Err(Error::Config(
                "tls mode verify-ca needs tls.ca_file (or sslrootcert / ssl-ca in the URL): the CA that \
                 signed the server's certificate; use verify-full to check the system's CAs and the host name"
                    .into(),
            ));
        }
        let provider = Arc::new(ring::default_provider());
        let skip_chain = self.mode == TlsMode::Prefer
            || self.mode == TlsMode::Require
            || self.accept_invalid_certs;
        let skip_name = self.mode == TlsMode::VerifyCa || self.accept_invalid_hostnames;
        let verifier: Arc<dyn ServerCertVerifier> = match self.mode {
            TlsMode::Disable => return Ok(None),
            _ if skip_chain => Arc::new(AcceptAnyCert(Arc::clone(&provider))),
            _ => {
                let roots = Arc::new(self.root_store()?);
                let inner =
                    WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                        .build()
                        .map_err(|e| Error::Config(format!("TLS setup failed: {e}")))?;
                if skip_name {
                    Arc::new(IgnoreHostname(inner))
                } else {
                    inner
                }
            }
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(format!("TLS setup failed: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Some(config))
    }

    fn root_store(&self) -> Result<RootCertStore> {
        let mut roots = RootCertStore::empty();
        if let Some(path) = &self.ca_file {
            let file = fs::File::open(path)
                .map_err(|e| Error::Config(format!("cannot read TLS ca_file '{path}': {e}")))?;
            for cert in rustls_pemfile::certs(&mut BufReader::new(file)) {
                let cert = cert.map_err(|e| {
                    Error::Config(format!("bad certificate in ca_file '{path}': {e}"))
                })?;
                roots.add(cert).map_err(|e| {
                    Error::Config(format!("bad certificate in ca_file '{path}': {e}"))
                })?;
            }
            if roots.is_empty() {
                return Err(Error::Config(format!(
                    "ca_file '{path}' holds no PEM certificate"
                )));
            }
        } else {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // A malformed system certificate should not block the others.
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(Error::Config(
                    "no trusted CA certificates found on this system; set tls.ca_file".into(),
                ));
            }
        }
        Ok(roots)
    }
}

fn verify12(
    p: &CryptoProvider,
    m: &[u8],
    c: &CertificateDer<'_>,
    d: &DigitallySignedStruct,
) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls12_signature(m, c, d, &p.signature_verification_algorithms)
}

fn verify13(
    p: &CryptoProvider,
    m: &[u8],
    c: &CertificateDer<'_>,
    d: &DigitallySignedStruct,
) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls13_signature(m, c, d, &p.signature_verification_algorithms)
}

/// `require`/`prefer`: encrypt, trust any certificate (handshake signatures still checked).
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify12(&self.0, m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify13(&self.0, m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: check the chain, accept any host name.
#[derive(Debug)]
struct IgnoreHostname(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for IgnoreHostname {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(mode: TlsMode, ca: bool, invalid_names: bool) -> TlsSettings {
        TlsSettings {
            mode,
            ca_file: ca.then(|| "/ca.pem".to_string()),
            accept_invalid_certs: false,
            accept_invalid_hostnames: invalid_names,
        }
    }

    #[test]
    fn only_a_checked_name_or_a_private_ca_proves_the_server() {
        assert!(settings(TlsMode::VerifyFull, false, false).verifies());
        assert!(settings(TlsMode::VerifyFull, true, false).verifies());
        assert!(settings(TlsMode::VerifyCa, true, false).verifies());
        // Any public CA's certificate for any host would pass these.
        assert!(!settings(TlsMode::VerifyFull, false, true).verifies());
        assert!(!settings(TlsMode::VerifyCa, false, false).verifies());
        assert!(!settings(TlsMode::Require, true, false).verifies());
        let mut any_cert = settings(TlsMode::VerifyFull, true, false);
        any_cert.accept_invalid_certs = true;
        assert!(!any_cert.verifies());
    }

    #[test]
    fn verify_ca_without_a_ca_file_is_refused() {
        let refused = settings(TlsMode::VerifyCa, false, false).client_config();
        assert!(
            matches!(refused, Err(Error::Config(m)) if m.contains("verify-ca needs tls.ca_file"))
        );
    }
}
