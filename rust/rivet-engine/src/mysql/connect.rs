//! MySQL/MariaDB connection settings: a `mysql://` URL, overridden by structured fields.

use std::time::Duration;

use crate::conn::driver_url::render;
use crate::conn::url::split_url;
use crate::conn::{ConnectOptions, Endpoint, Keepalive, KeepaliveKeys, Protocol};
use crate::error::{Error, Result};
use crate::net::Channel;
use crate::tls::{TlsMode, TlsSettings};

/// Resolved settings of one MySQL/MariaDB connection.
pub type MyParams = Endpoint<MySettings>;

/// What only a MySQL connection needs.
#[derive(Debug, Clone)]
pub struct MySettings {
    /// Database, if any.
    pub database: Option<String>,
}

/// The libpq-style name of a MySQL `ssl-mode`.
fn tls_name(mode: &str) -> Result<&'static str> {
    Ok(match mode.to_ascii_lowercase().replace('_', "-").as_str() {
        "disabled" | "disable" | "false" => "disable",
        "preferred" | "prefer" => "prefer",
        "required" | "require" | "true" => "require",
        "verify-ca" => "verify-ca",
        "verify-identity" | "verify-full" => "verify-full",
        _ => return Err(Error::Config("unknown ssl-mode (expected DISABLED, PREFERRED, REQUIRED, VERIFY_CA or VERIFY_IDENTITY)".into())),
    })
}

impl Protocol for MySettings {
    fn resolve(options: &ConnectOptions) -> Result<MyParams> {
        options.resolve_mysql()
    }
}

impl MyParams {
    /// These settings as a `mysql://` URL for another client library (connectorx), or None where
    /// its driver could not connect as rivet would: over a Unix socket, accepting an invalid
    /// certificate, or with keepalives other than the default. Under `prefer`, the URL asks for
    /// what rivet's own connection got (`channel`), since that driver cannot fall back.
    pub fn driver_url(&self, channel: Option<Channel>) -> Option<String> {
        let tls = &self.tls;
        if self.host.starts_with('/')
            || tls.accept_invalid_certs
            || tls.accept_invalid_hostnames
            || self.keepalive != Some(Keepalive::default())
        {
            return None;
        }
        let ssl_mode = match (tls.mode, channel) {
            (TlsMode::Prefer, Some(Channel::Plain)) | (TlsMode::Disable, _) => "DISABLED",
            (TlsMode::Prefer, Some(_)) | (TlsMode::Require, _) => "REQUIRED",
            (TlsMode::Prefer, None) => "PREFERRED",
            (TlsMode::VerifyCa, _) => "VERIFY_CA",
            (TlsMode::VerifyFull, _) => "VERIFY_IDENTITY",
        };
        // prefer_socket off: the driver would otherwise move a local connection to the server's
        // Unix socket.
        let mut params = vec![
            ("ssl-mode", ssl_mode.to_string()),
            ("prefer_socket", "false".to_string()),
        ];
        if let Some(ca) = &tls.ca_file {
            params.push(("ssl-ca", ca.clone()));
        }
        let database = self.protocol.database.as_deref().unwrap_or_default();
        Some(render("mysql", self, database, &params))
    }
}

impl ConnectOptions {
    /// Resolve URL and fields into connection settings.
    pub fn resolve_mysql(&self) -> Result<MyParams> {
        let (mut host, mut port, mut user, mut password, mut database, mut mode, mut ca) =
            (None, None, None, None, None, None, None);
        let mut keepalive = KeepaliveKeys::default();
        if let Some(url) = &self.url {
            let parts = split_url(
                url,
                &["mysql://", "mariadb://"],
                "a MySQL URL starts with mysql:// or mariadb://",
            )?;
            (host, user, password, database) =
                (parts.host, parts.user, parts.password, parts.database);
            if let Some(p) = parts.port {
                // The value is not echoed: a mistyped URL may put part of a password here.
                port = Some(p.parse::<u16>().map_err(|_| {
                    Error::Config("the port in the connection URL is not a number".into())
                })?);
            }
            for (k, v) in parts.params {
                if keepalive.set(&k, &v)? {
                    continue;
                }
                match k.as_str() {
                    "ssl-mode" | "sslmode" | "ssl_mode" => mode = Some(tls_name(&v)?.to_string()),
                    "ssl-ca" | "sslrootcert" => ca = Some(v),
                    "socket" => host = Some(v),
                    _ => {
                        return Err(Error::Config(
                            "the connection URL has a parameter rivet does not know (it knows ssl-mode, ssl-ca, \
                             socket and the keepalives keys)"
                                .into(),
                        ));
                    }
                }
            }
        }
        let user = self
            .user
            .clone()
            .or(user)
            .ok_or_else(|| Error::Config("no MySQL user given".into()))?;
        let mode = match &self.tls_mode {
            Some(m) => tls_name(m)?.to_string(),
            None => mode.unwrap_or_else(|| "prefer".into()),
        };
        Ok(MyParams {
            host: self
                .host
                .clone()
                .or(host)
                .unwrap_or_else(|| "localhost".into()),
            port: self.port.or(port).unwrap_or(3306),
            user,
            password: self.password.clone().or(password),
            tls: TlsSettings {
                mode: TlsMode::parse(&mode)?,
                ca_file: self.ca_file.clone().or(ca),
                accept_invalid_certs: self.accept_invalid_certs,
                accept_invalid_hostnames: self.accept_invalid_hostnames,
            },
            connect_timeout: self.connect_timeout.unwrap_or(Duration::from_secs(30)),
            keepalive: keepalive.resolve(),
            read_timeout: self.read_timeout,
            allow_unverified_password: self.allow_unverified_password,
            dial: self.dial.clone(),
            protocol: MySettings {
                database: self.database.clone().or(database),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn driver_url(url: &str, channel: Option<Channel>) -> Option<String> {
        ConnectOptions {
            url: Some(url.into()),
            ..Default::default()
        }
        .resolve_mysql()
        .expect("valid")
        .driver_url(channel)
    }

    #[test]
    fn driver_urls_say_what_rivet_resolved_or_nothing() {
        assert_eq!(
            driver_url(
                "mariadb://app:p%40ss@db:3307/shop?ssl-mode=VERIFY_IDENTITY",
                None
            )
            .as_deref(),
            Some("mysql://app:p%40ss@db:3307/shop?ssl-mode=VERIFY_IDENTITY&prefer_socket=false")
        );
        // `prefer` asks for what rivet's own connection got: that driver cannot fall back.
        let prefer = "mysql://app@db/shop";
        assert!(
            driver_url(prefer, Some(Channel::Plain))
                .unwrap()
                .contains("ssl-mode=DISABLED")
        );
        assert!(
            driver_url(prefer, Some(Channel::TlsUnverified))
                .unwrap()
                .contains("ssl-mode=REQUIRED")
        );
        assert!(
            driver_url(prefer, None)
                .unwrap()
                .contains("ssl-mode=PREFERRED")
        );
        // What the driver cannot do as rivet would: no URL.
        assert_eq!(
            driver_url("mysql://app@db/shop?socket=/run/mysqld/mysqld.sock", None),
            None
        );
        assert_eq!(
            driver_url("mysql://app@db/shop?keepalives_idle=5", None),
            None
        );
    }

    #[test]
    fn urls() {
        let p = ConnectOptions {
            url: Some("mysql://app:s%40cret@db:3307/shop?ssl-mode=VERIFY_IDENTITY".into()),
            ..Default::default()
        }
        .resolve_mysql()
        .expect("valid");
        assert_eq!(
            (p.user.as_str(), p.password.as_deref()),
            ("app", Some("s@cret"))
        );
        assert_eq!(
            (p.host.as_str(), p.port, p.protocol.database.as_deref()),
            ("db", 3307, Some("shop"))
        );
        assert_eq!(p.tls.mode, TlsMode::VerifyFull);
        let bad = ConnectOptions {
            url: Some("mysql://u@h/d?ssl-mode=sometimes".into()),
            ..Default::default()
        };
        assert!(bad.resolve_mysql().is_err());
    }
}
