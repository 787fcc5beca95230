//! Resolved settings written back as a URL for another client library (connectorx's drivers):
//! only rivet parses a connection string, and what another library is given says exactly what
//! rivet resolved (structured fields over the URL, defaults filled in).

use super::Endpoint;

/// `s` with every byte but the URL's unreserved characters written as `%XX`.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `scheme://user:password@host:port/database?key=value&...`, every part encoded. A Unix
/// socket path goes in the host place, encoded, as libpq reads it.
pub fn render<P>(
    scheme: &str,
    endpoint: &Endpoint<P>,
    database: &str,
    params: &[(&str, String)],
) -> String {
    let mut url = format!("{scheme}://{}", percent_encode(&endpoint.user));
    if let Some(password) = &endpoint.password {
        url.push(':');
        url.push_str(&percent_encode(password));
    }
    let host = if endpoint.host.contains(':') {
        format!("[{}]", endpoint.host) // IPv6
    } else {
        percent_encode(&endpoint.host)
    };
    url.push_str(&format!(
        "@{host}:{}/{}",
        endpoint.port,
        percent_encode(database)
    ));
    for (i, (key, value)) in params.iter().enumerate() {
        url.push(if i == 0 { '?' } else { '&' });
        url.push_str(&format!("{key}={}", percent_encode(value)));
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::url::split_url;

    #[test]
    fn what_is_rendered_parses_back_to_the_same_parts() {
        let endpoint = Endpoint {
            host: "/run/postgresql".into(),
            port: 5433,
            user: "ünïcode user".into(),
            password: Some("p@ss:w/rd?&=%".into()),
            tls: crate::tls::TlsSettings {
                mode: crate::tls::TlsMode::Disable,
                ca_file: None,
                accept_invalid_certs: false,
                accept_invalid_hostnames: false,
            },
            connect_timeout: std::time::Duration::from_secs(1),
            keepalive: None,
            read_timeout: None,
            allow_unverified_password: false,
            dial: None,
            protocol: (),
        };
        let url = render(
            "postgresql",
            &endpoint,
            "my db",
            &[("options", "-c a=b".into())],
        );
        assert!(!url.contains("p@ss"), "{url}");
        let parts = split_url(&url, &["postgresql://"], "").unwrap();
        assert_eq!(parts.user.as_deref(), Some("ünïcode user"));
        assert_eq!(parts.password.as_deref(), Some("p@ss:w/rd?&=%"));
        assert_eq!(parts.host.as_deref(), Some("/run/postgresql"));
        assert_eq!(parts.port.as_deref(), Some("5433"));
        assert_eq!(parts.database.as_deref(), Some("my db"));
        assert_eq!(parts.params, vec![("options".into(), "-c a=b".into())]);
    }
}
