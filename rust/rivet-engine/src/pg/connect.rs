//! Connection settings: a libpq-style URL or key=value string, overridden by structured fields.

use std::time::Duration;

use crate::conn::driver_url::render;
use crate::conn::url::split_url;
use crate::conn::{ConnectOptions, Endpoint, KeepaliveKeys, Protocol};
use crate::error::{Error, Result};
use crate::pg::wire::auth::BindingPolicy;
use crate::tls::{TlsMode, TlsSettings};

/// Resolved settings of one PostgreSQL connection.
pub type ConnectParams = Endpoint<PgSettings>;

/// What only a PostgreSQL connection needs.
#[derive(Debug, Clone)]
pub struct PgSettings {
    /// Database.
    pub database: String,
    /// `application_name` reported to the server.
    pub application_name: String,
    /// SCRAM channel binding.
    pub channel_binding: BindingPolicy,
    /// A logical replication connection (`replication=database`): it takes replication
    /// commands and streams changes. Set by change capture, never from a URL.
    pub replication: bool,
}

/// Raw key/value pairs from a URL or a DSN, before structured overrides.
#[derive(Debug, Default)]
struct Parsed {
    host: Option<String>,
    port: Option<String>,
    user: Option<String>,
    password: Option<String>,
    database: Option<String>,
    sslmode: Option<String>,
    sslrootcert: Option<String>,
    connect_timeout: Option<String>,
    application_name: Option<String>,
    channel_binding: Option<String>,
    keepalive: KeepaliveKeys,
}

impl Parsed {
    fn set(&mut self, key: &str, value: String) -> Result<()> {
        if self.keepalive.set(key, &value)? {
            return Ok(());
        }
        let slot = match key {
            "host" | "hostaddr" => &mut self.host,
            "port" => &mut self.port,
            "user" => &mut self.user,
            "password" => &mut self.password,
            "dbname" => &mut self.database,
            "sslmode" => &mut self.sslmode,
            "sslrootcert" => &mut self.sslrootcert,
            "connect_timeout" => &mut self.connect_timeout,
            "application_name" => &mut self.application_name,
            "channel_binding" => &mut self.channel_binding,
            // Accepted and not needed by a read-only exporter.
            "options" | "target_session_attrs" | "client_encoding" => return Ok(()),
            // Never echoed: a mistyped URL can put part of a password in a key.
            _ => {
                return Err(Error::Config(
                    "the connection URL has a parameter rivet does not know (it knows host, port, user, \
                     password, dbname, sslmode, sslrootcert, connect_timeout, application_name, \
                     channel_binding and the keepalives keys)"
                        .into(),
                ));
            }
        };
        *slot = Some(value);
        Ok(())
    }
}

fn parse_url(url: &str) -> Result<Parsed> {
    let parts = split_url(
        url,
        &["postgresql://", "postgres://"],
        "a PostgreSQL URL starts with postgresql://",
    )?;
    let mut p = Parsed {
        host: parts.host,
        port: parts.port,
        user: parts.user,
        password: parts.password,
        database: parts.database,
        ..Parsed::default()
    };
    for (k, v) in parts.params {
        p.set(&k, v)?;
    }
    Ok(p)
}

fn parse_dsn(dsn: &str) -> Result<Parsed> {
    let mut p = Parsed::default();
    let mut chars = dsn.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '\'' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                value.push(*c);
                chars.next();
            }
        }
        p.set(key.trim(), value)?;
    }
    Ok(p)
}

impl Protocol for PgSettings {
    fn resolve(options: &ConnectOptions) -> Result<ConnectParams> {
        options.resolve_postgres()
    }

    /// libpq's name for the socket in a directory.
    fn socket_name(dir: &str, port: u16) -> String {
        format!("{}/.s.PGSQL.{port}", dir.trim_end_matches('/'))
    }
}

impl ConnectParams {
    /// These settings as a `postgresql://` URL for another client library (connectorx), with
    /// `statement_timeout` set for its session when given.
    pub fn driver_url(&self, statement_timeout_ms: Option<u64>) -> String {
        let mut params = vec![("sslmode", self.tls.mode.name().to_string())];
        if let Some(ca) = &self.tls.ca_file {
            params.push(("sslrootcert", ca.clone()));
        }
        params.push(("application_name", self.protocol.application_name.clone()));
        params.push((
            "connect_timeout",
            self.connect_timeout.as_secs().max(1).to_string(),
        ));
        if let Some(ms) = statement_timeout_ms.filter(|ms| *ms > 0) {
            params.push(("options", format!("-c statement_timeout={ms}")));
        }
        render("postgresql", self, &self.protocol.database, &params)
    }
}

impl ConnectOptions {
    /// Resolve into the settings of one connection.
    pub fn resolve_postgres(&self) -> Result<ConnectParams> {
        let parsed = match &self.url {
            Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
                parse_url(u)?
            }
            Some(u) if u.contains("://") => {
                // The scheme alone is shown: what follows it may hold a password.
                let scheme = u.split("://").next().unwrap_or_default();
                return Err(Error::Config(format!(
                    "a PostgreSQL URL starts with postgresql:// or postgres://, not {scheme}://"
                )));
            }
            Some(u) => parse_dsn(u)?,
            None => Parsed::default(),
        };
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let host = self
            .host
            .clone()
            .or(parsed.host)
            .or_else(|| env("PGHOST"))
            .unwrap_or_else(|| "localhost".into());
        let port = match (self.port, parsed.port) {
            (Some(p), _) => p,
            // The value is not echoed: a mistyped URL may put part of a password here.
            (None, Some(p)) => p.parse().map_err(|_| {
                Error::Config("the port in the connection URL is not a number".into())
            })?,
            (None, None) => env("PGPORT").and_then(|p| p.parse().ok()).unwrap_or(5432),
        };
        let user = self
            .user
            .clone()
            .or(parsed.user)
            .or_else(|| env("PGUSER"))
            .or_else(|| env("USER"))
            .ok_or_else(|| Error::Config("no PostgreSQL user given".into()))?;
        let database = self
            .database
            .clone()
            .or(parsed.database)
            .or_else(|| env("PGDATABASE"))
            .unwrap_or_else(|| user.clone());
        let password = self
            .password
            .clone()
            .or(parsed.password)
            .or_else(|| env("PGPASSWORD"));
        let mode_text = self
            .tls_mode
            .clone()
            .or(parsed.sslmode)
            .or_else(|| env("PGSSLMODE"))
            .unwrap_or_else(|| "prefer".into());
        let connect_timeout = match (self.connect_timeout, parsed.connect_timeout) {
            (Some(t), _) => t,
            (None, Some(s)) => Duration::from_secs(s.parse().map_err(|_| {
                Error::Config("connect_timeout in the connection URL is not a number".into())
            })?),
            (None, None) => Duration::from_secs(30),
        };
        Ok(ConnectParams {
            host,
            port,
            user,
            password,
            tls: TlsSettings {
                mode: TlsMode::parse(&mode_text)?,
                ca_file: self.ca_file.clone().or(parsed.sslrootcert),
                accept_invalid_certs: self.accept_invalid_certs,
                accept_invalid_hostnames: self.accept_invalid_hostnames,
            },
            connect_timeout,
            keepalive: parsed.keepalive.resolve(),
            read_timeout: self.read_timeout,
            allow_unverified_password: self.allow_unverified_password,
            dial: self.dial.clone(),
            protocol: PgSettings {
                database,
                application_name: parsed.application_name.unwrap_or_else(|| "rivet".into()),
                channel_binding: match self
                    .channel_binding
                    .as_deref()
                    .or(parsed.channel_binding.as_deref())
                {
                    Some(v) => BindingPolicy::parse(v)?,
                    None => BindingPolicy::Prefer,
                },
                replication: false,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(u: &str) -> ConnectParams {
        ConnectOptions {
            url: Some(u.into()),
            ..Default::default()
        }
        .resolve_postgres()
        .expect("valid")
    }

    #[test]
    fn urls() {
        let p = url(
            "postgresql://al%40ice:p%3Ass@db.example:6543/shop?sslmode=verify-full&sslrootcert=/ca.pem",
        );
        assert_eq!(
            (p.user.as_str(), p.password.as_deref()),
            ("al@ice", Some("p:ss"))
        );
        assert_eq!(
            (p.host.as_str(), p.port, p.protocol.database.as_str()),
            ("db.example", 6543, "shop")
        );
        assert_eq!(p.tls.mode, TlsMode::VerifyFull);
        assert_eq!(p.tls.ca_file.as_deref(), Some("/ca.pem"));
        let p = url("postgres://u@[::1]:5433/d");
        assert_eq!((p.host.as_str(), p.port), ("::1", 5433));
        let p = url("postgresql://u@%2Fvar%2Frun%2Fpostgresql/d");
        assert_eq!(p.host, "/var/run/postgresql");
    }

    #[test]
    fn dsn_strings() {
        let p = url("host=h port=5 user=u password='a b\\'c' dbname=d sslmode=disable");
        assert_eq!((p.host.as_str(), p.port, p.user.as_str()), ("h", 5, "u"));
        assert_eq!(p.password.as_deref(), Some("a b'c"));
        assert_eq!(p.tls.mode, TlsMode::Disable);
    }

    #[test]
    fn structured_fields_override_the_url() {
        let p = ConnectOptions {
            url: Some("postgresql://a@h1:5432/d1?sslmode=require".into()),
            user: Some("b".into()),
            database: Some("d2".into()),
            ..Default::default()
        }
        .resolve_postgres()
        .expect("valid");
        assert_eq!((p.user.as_str(), p.protocol.database.as_str()), ("b", "d2"));
        assert_eq!(p.tls.mode, TlsMode::Require);
    }

    #[test]
    fn bad_settings_are_refused() {
        let bad = |u: &str| {
            ConnectOptions {
                url: Some(u.into()),
                ..Default::default()
            }
            .resolve_postgres()
            .is_err()
        };
        assert!(bad("postgresql://u@h/d?sslmode=sometimes"));
        assert!(bad("postgresql://u@h:notaport/d"));
        assert!(bad("postgresql://u@h/d?frobnicate=1"));
        assert!(bad("postgresql+psycopg://u@h/d"));
    }
}
