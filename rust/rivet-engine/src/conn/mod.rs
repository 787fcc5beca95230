//! Where to connect, parsed once for every protocol: the options an export gives, URLs
//! (`url`), keepalives and the redaction of connection strings. Each protocol resolves the
//! options into its own settings (`pg::connect`, `mysql::connect`).

pub mod driver_url;
pub mod url;

use std::time::Duration;

use crate::error::{Error, Result};
use crate::tls::TlsSettings;

/// TCP keepalive probes: after `idle` without traffic, a probe every `interval`; `count`
/// unanswered probes end the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Silence before the first probe.
    pub idle: Duration,
    /// Between probes.
    pub interval: Duration,
    /// Unanswered probes that end the connection.
    pub count: u32,
}

impl Default for Keepalive {
    fn default() -> Self {
        Keepalive {
            idle: Duration::from_secs(60),
            interval: Duration::from_secs(10),
            count: 6,
        }
    }
}

/// Keepalive settings from libpq-style keys (`keepalives`, `keepalives_idle`,
/// `keepalives_interval`, `keepalives_count`), on by default.
#[derive(Debug, Default)]
pub struct KeepaliveKeys {
    enabled: Option<bool>,
    idle: Option<u64>,
    interval: Option<u64>,
    count: Option<u32>,
}

impl KeepaliveKeys {
    /// Take one key; false when it is not a keepalive key.
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool> {
        let number = || {
            value.parse::<u64>().map_err(|_| {
                Error::Config(format!("{key} in the connection URL is not a whole number"))
            })
        };
        match key {
            "keepalives" => self.enabled = Some(number()? != 0),
            "keepalives_idle" => self.idle = Some(number()?),
            "keepalives_interval" => self.interval = Some(number()?),
            "keepalives_count" => self.count = Some(u32::try_from(number()?).unwrap_or(u32::MAX)),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The probes to use (None: keepalives=0).
    pub fn resolve(&self) -> Option<Keepalive> {
        if self.enabled == Some(false) {
            return None;
        }
        let d = Keepalive::default();
        Some(Keepalive {
            idle: self.idle.map_or(d.idle, |s| Duration::from_secs(s.max(1))),
            interval: self
                .interval
                .map_or(d.interval, |s| Duration::from_secs(s.max(1))),
            count: self.count.unwrap_or(d.count).max(1),
        })
    }
}

/// Where one connection goes and how it is secured: what every protocol resolves its
/// options into. `protocol` holds what only that protocol needs.
#[derive(Clone)]
pub struct Endpoint<P> {
    /// Host name, IP address, or a Unix socket (directory for PostgreSQL, file for MySQL).
    pub host: String,
    /// Port.
    pub port: u16,
    /// User (role) name.
    pub user: String,
    /// Password, if any (never logged).
    pub password: Option<String>,
    /// TLS.
    pub tls: TlsSettings,
    /// Timeout for TCP connect and the TLS handshake.
    pub connect_timeout: Duration,
    /// TCP keepalive probes (None: off).
    pub keepalive: Option<Keepalive>,
    /// The longest the server may stay silent once logged in (None: no limit).
    pub read_timeout: Option<Duration>,
    /// Send the password in a form a server could replay (cleartext, MD5, a native hash) over
    /// a connection that is not TLS-verified.
    pub allow_unverified_password: bool,
    /// Where the TCP connection is opened instead of `host:port` (an SSH tunnel's local end);
    /// TLS still checks the certificate against `host`.
    pub dial: Option<(String, u16)>,
    /// The protocol's own settings.
    pub protocol: P,
}

impl<P> Endpoint<P> {
    /// The host and port a TCP connection is opened to: the dial address, else `host:port`.
    pub fn dial_address(&self) -> (&str, u16) {
        match &self.dial {
            Some((host, port)) => (host.as_str(), *port),
            None => (self.host.as_str(), self.port),
        }
    }
}

impl<P: std::fmt::Debug> std::fmt::Debug for Endpoint<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tls", &self.tls)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

/// A protocol's own settings: how an export's options resolve into an endpoint for it, and how
/// it names a Unix socket in messages.
pub trait Protocol: Sized {
    /// Resolve URL and fields into the settings of one connection.
    fn resolve(options: &ConnectOptions) -> Result<Endpoint<Self>>;

    /// A Unix socket as messages name it (`path` as given: a directory or a file).
    fn socket_name(path: &str, _port: u16) -> String {
        path.to_string()
    }
}

/// Where a session's connections go, resolved once.
pub trait Target: Send + Sync + 'static {
    /// Where it is, as messages say it: `server host:port`, `server /socket/path`, `file x.db`.
    fn place(&self) -> String;
}

impl<P: Protocol + Send + Sync + 'static> Target for Endpoint<P> {
    fn place(&self) -> String {
        if self.host.starts_with('/') {
            format!("server {}", P::socket_name(&self.host, self.port))
        } else {
            format!("server {}:{}", self.host, self.port)
        }
    }
}

/// Everything needed to open a connection. Structured fields override the URL; each
/// reader resolves them (`pg::connect`, `mysql::connect`).
#[derive(Clone, Default)]
pub struct ConnectOptions {
    /// `postgresql://...` (or libpq `key=value`) or `mysql://...`.
    pub url: Option<String>,
    /// Host name, IP address, or a Unix socket (directory for PostgreSQL, file for MySQL).
    pub host: Option<String>,
    /// TCP port.
    pub port: Option<u16>,
    /// User (role) name.
    pub user: Option<String>,
    /// Password (never logged).
    pub password: Option<String>,
    /// Database name.
    pub database: Option<String>,
    /// TLS mode (disable, prefer, require, verify-ca, verify-full); when absent, the URL's.
    pub tls_mode: Option<String>,
    /// PEM CA bundle (`sslrootcert` / `ssl-ca` in a URL).
    pub ca_file: Option<String>,
    /// Accept certificates that do not chain to a trusted root.
    pub accept_invalid_certs: bool,
    /// Accept certificates issued for another host name.
    pub accept_invalid_hostnames: bool,
    /// Connect timeout.
    pub connect_timeout: Option<Duration>,
    /// The longest a server may stay silent while rivet waits for data (None: no limit).
    pub read_timeout: Option<Duration>,
    /// Send a password in clear text (or a replayable MD5 hash) over a connection that is not
    /// TLS-verified.
    pub allow_unverified_password: bool,
    /// SCRAM channel binding: `prefer` (default), `require` or `disable`.
    pub channel_binding: Option<String>,
    /// Open TCP connections here instead of the resolved host and port (an SSH tunnel).
    pub dial: Option<(String, u16)>,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("url", &self.url.as_deref().map(redact_url))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("database", &self.database)
            .field("tls_mode", &self.tls_mode)
            .finish_non_exhaustive()
    }
}

/// A connection URL or DSN with every password hidden (for messages and Debug output).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // A libpq key=value string: hide the value of every password key.
        return url
            .split_whitespace()
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if k.to_ascii_lowercase().contains("password") => format!("{k}=***"),
                _ => pair.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" ");
    };
    // Everything before the last '@' is user information, whatever characters the password holds.
    let (user, tail) = match rest.rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let shown = match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***@"),
                None => format!("{userinfo}@"),
            };
            (shown, &rest[at + 1..])
        }
        None => (String::new(), rest),
    };
    let (host, query) = tail
        .split_once('?')
        .map_or((tail, None), |(h, q)| (h, Some(q)));
    let main = format!("{user}{host}");
    let query = query.map(|q| {
        q.split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if k.to_ascii_lowercase().contains("password") => format!("{k}=***"),
                _ => pair.to_string(),
            })
            .collect::<Vec<_>>()
            .join("&")
    });
    match query {
        Some(q) => format!("{scheme}://{main}?{q}"),
        None => format!("{scheme}://{main}"),
    }
}

/// A URL component with its `%XX` escapes decoded (as UTF-8).
pub fn percent_decode(s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    Error::Config("invalid percent-encoding in the connection URL".into())
                })?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| Error::Config("the connection URL is not valid UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_passwords_with_any_characters() {
        let secret = "p@ss/w:rd?#";
        let url = format!("postgresql://u:{secret}@h:5432/d?sslmode=require&password=x%40y");
        let redacted = redact_url(&url);
        assert!(!redacted.contains("ss/w"), "{redacted}");
        assert!(!redacted.contains("x%40y"), "{redacted}");
        assert!(
            redacted.starts_with("postgresql://u:***@h:5432/d"),
            "{redacted}"
        );
        let dsn = redact_url("host=h password=hunter2 user=u");
        assert_eq!(dsn, "host=h password=*** user=u");
        let options = ConnectOptions {
            url: Some(url.clone()),
            password: Some(secret.into()),
            ..Default::default()
        };
        let shown = format!("{options:?}");
        assert!(
            !shown.contains("ss/w") && !shown.contains("x%40y"),
            "{shown}"
        );
    }

    #[test]
    fn keepalives_are_on_by_default_and_follow_the_url_keys() {
        let mut keys = KeepaliveKeys::default();
        assert_eq!(keys.resolve(), Some(Keepalive::default()));
        assert!(keys.set("keepalives_idle", "5").unwrap());
        assert!(!keys.set("sslmode", "x").unwrap());
        assert_eq!(keys.resolve().unwrap().idle, Duration::from_secs(5));
        keys.set("keepalives", "0").unwrap();
        assert_eq!(keys.resolve(), None);
        assert!(keys.set("keepalives_count", "many").is_err());
    }
}
