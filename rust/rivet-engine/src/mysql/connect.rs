//! MySQL/MariaDB connection settings: a `mysql://` URL, overridden by structured fields.

use std::time::Duration;

use crate::conn::url::split_url;
use crate::conn::{ConnectOptions, Endpoint, KeepaliveKeys, Protocol};
use crate::error::{Error, Result};
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
            protocol: MySettings {
                database: self.database.clone().or(database),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
