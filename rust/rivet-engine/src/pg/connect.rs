//! Opening a PostgreSQL connection from a URL or structured settings.

use std::time::Duration;

use postgres::config::SslMode;
use postgres::{Client, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{Error, Result};
use crate::pg::errors::connect_error;
use crate::tls::{TlsMode, TlsSettings};

/// Everything needed to open a connection. Structured fields override the URL.
#[derive(Debug, Clone, Default)]
pub struct PgConnectOptions {
    /// `postgresql://user:pass@host:port/db?sslmode=...`
    pub url: Option<String>,
    /// Host name, IP address or Unix socket directory.
    pub host: Option<String>,
    /// TCP port.
    pub port: Option<u16>,
    /// Role name.
    pub user: Option<String>,
    /// Password (never logged).
    pub password: Option<String>,
    /// Database name.
    pub database: Option<String>,
    /// TLS mode; when absent, the URL's `sslmode`, else `prefer`.
    pub tls_mode: Option<String>,
    /// PEM CA bundle (`sslrootcert` in a URL).
    pub ca_file: Option<String>,
    /// Accept certificates that do not chain to a trusted root.
    pub accept_invalid_certs: bool,
    /// Accept certificates issued for another host name.
    pub accept_invalid_hostnames: bool,
    /// Connect timeout.
    pub connect_timeout: Option<Duration>,
}

/// Parameters that libpq accepts in a URL but tokio-postgres does not parse.
const TLS_URL_PARAMS: [&str; 2] = ["sslmode", "sslrootcert"];

/// Split libpq TLS parameters out of a URL, returning the remaining URL and the values.
fn split_tls_params(url: &str) -> (String, Option<String>, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), None, None);
    };
    let mut kept = Vec::new();
    let (mut mode, mut root) = (None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => mode = Some(value.to_string()),
            "sslrootcert" => root = Some(value.to_string()),
            _ => kept.push(pair),
        }
    }
    debug_assert!(TLS_URL_PARAMS.contains(&"sslmode"));
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (rest, mode, root)
}

impl PgConnectOptions {
    fn config_and_tls(&self) -> Result<(Config, TlsSettings)> {
        let (mut config, url_mode, url_root) = match &self.url {
            Some(url) => {
                let (rest, mode, root) = split_tls_params(url);
                let config: Config = rest.parse().map_err(|e| {
                    Error::Config(format!("invalid PostgreSQL URL: {e}"))
                })?;
                (config, mode, root)
            }
            None => (Config::new(), None, None),
        };
        if let Some(h) = &self.host {
            config.host(h);
        }
        if let Some(p) = self.port {
            config.port(p);
        }
        if let Some(u) = &self.user {
            config.user(u);
        }
        if let Some(p) = &self.password {
            config.password(p);
        }
        if let Some(d) = &self.database {
            config.dbname(d);
        }
        if config.get_hosts().is_empty() {
            return Err(Error::Config("no PostgreSQL host given".into()));
        }
        if config.get_user().is_none() {
            return Err(Error::Config("no PostgreSQL user given".into()));
        }
        config.application_name("rivet");
        config.connect_timeout(self.connect_timeout.unwrap_or(Duration::from_secs(30)));
        let mode_text = self.tls_mode.clone().or(url_mode).unwrap_or_else(|| "prefer".into());
        let tls = TlsSettings {
            mode: TlsMode::parse(&mode_text)?,
            ca_file: self.ca_file.clone().or(url_root),
            accept_invalid_certs: self.accept_invalid_certs,
            accept_invalid_hostnames: self.accept_invalid_hostnames,
        };
        config.ssl_mode(match tls.mode {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            _ => SslMode::Require,
        });
        Ok((config, tls))
    }

    /// Open a connection.
    pub fn connect(&self) -> Result<Client> {
        let (config, tls) = self.config_and_tls()?;
        let result = match tls.client_config()? {
            None => config.connect(NoTls),
            Some(client_config) => config.connect(MakeRustlsConnect::new(client_config)),
        };
        result.map_err(|e| connect_error(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_params_are_split_from_the_url() {
        let (rest, mode, root) =
            split_tls_params("postgresql://u@h/db?sslmode=verify-full&connect_timeout=5&sslrootcert=/ca.pem");
        assert_eq!(rest, "postgresql://u@h/db?connect_timeout=5");
        assert_eq!(mode.as_deref(), Some("verify-full"));
        assert_eq!(root.as_deref(), Some("/ca.pem"));
        let (rest, mode, _) = split_tls_params("postgresql://u@h/db");
        assert_eq!(rest, "postgresql://u@h/db");
        assert!(mode.is_none());
    }

    #[test]
    fn structured_fields_override_the_url() {
        let opts = PgConnectOptions {
            url: Some("postgresql://a@h1:5432/d1?sslmode=require".into()),
            user: Some("b".into()),
            database: Some("d2".into()),
            ..Default::default()
        };
        let (config, tls) = opts.config_and_tls().expect("valid");
        assert_eq!(config.get_user(), Some("b"));
        assert_eq!(config.get_dbname(), Some("d2"));
        assert_eq!(tls.mode, TlsMode::Require);
    }

    #[test]
    fn unknown_tls_mode_is_rejected() {
        let opts = PgConnectOptions {
            url: Some("postgresql://a@h/d?sslmode=sometimes".into()),
            ..Default::default()
        };
        assert!(matches!(opts.config_and_tls(), Err(Error::Config(_))));
    }
}
