//! A connection URL split into its parts (`scheme://user:password@host:port/database?k=v`),
//! decoded once for every protocol; each protocol then takes the keys it knows.

use super::percent_decode;
use crate::error::{Error, Result};

/// The parts of a connection URL, percent-decoded; empty parts are None.
#[derive(Default)]
pub struct UrlParts {
    /// User name.
    pub user: Option<String>,
    /// Password (never logged).
    pub password: Option<String>,
    /// Host name or IP address (an IPv6 address without its brackets).
    pub host: Option<String>,
    /// Port, as written (each protocol says what a bad one means).
    pub port: Option<String>,
    /// Database name.
    pub database: Option<String>,
    /// The query's key/value pairs, in order.
    pub params: Vec<(String, String)>,
}

/// Split `url`, which must start with one of `schemes` (each with its `://`); `expected`
/// names the URL in the error otherwise (e.g. "a PostgreSQL URL starts with postgresql://").
pub fn split_url(url: &str, schemes: &[&str], expected: &str) -> Result<UrlParts> {
    let rest = schemes
        .iter()
        .find_map(|s| url.strip_prefix(s))
        .ok_or_else(|| Error::Config(expected.into()))?;
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = main.split_once('/').unwrap_or((main, ""));
    let mut parts = UrlParts::default();
    // Everything before the last '@' is user information, whatever characters the password holds.
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if let Some(u) = userinfo {
        let (user, password) = u.split_once(':').map_or((u, None), |(a, b)| (a, Some(b)));
        parts.user = Some(percent_decode(user)?).filter(|s| !s.is_empty());
        parts.password = password.map(percent_decode).transpose()?;
    }
    if hostport.contains(',') {
        return Err(Error::Config(
            "multiple hosts in one URL are not supported".into(),
        ));
    }
    let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
        let (h, after) = h
            .split_once(']')
            .ok_or_else(|| Error::Config("unclosed '[' in the URL host".into()))?;
        (h.to_string(), after.strip_prefix(':').map(str::to_string))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, port)) => (percent_decode(h)?, Some(port.to_string())),
            None => (percent_decode(hostport)?, None),
        }
    };
    parts.host = Some(host).filter(|s| !s.is_empty());
    parts.port = port.filter(|s| !s.is_empty());
    if !path.is_empty() {
        parts.database = Some(percent_decode(path)?);
    }
    for pair in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        parts.params.push((percent_decode(k)?, percent_decode(v)?));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_is_decoded_once() {
        let p = split_url(
            "mysql://a%40b:p%3Aw@[::1]:3307/sh%2Fop?ssl-mode=REQUIRED&x=%26",
            &["mysql://"],
            "a MySQL URL",
        )
        .unwrap();
        assert_eq!(p.user.as_deref(), Some("a@b"));
        assert_eq!(p.password.as_deref(), Some("p:w"));
        assert_eq!(p.host.as_deref(), Some("::1"));
        assert_eq!(p.port.as_deref(), Some("3307"));
        assert_eq!(p.database.as_deref(), Some("sh/op"));
        assert_eq!(
            p.params,
            vec![
                ("ssl-mode".into(), "REQUIRED".into()),
                ("x".into(), "&".into())
            ]
        );
    }

    #[test]
    fn refusals_name_the_problem_without_echoing_the_url() {
        for (url, said) in [
            ("http://h/d", "a PostgreSQL URL"),
            ("postgresql://h1,h2/d", "multiple hosts"),
            ("postgresql://[::1/d", "unclosed"),
            ("postgresql://u:%zz@h/d", "percent-encoding"),
        ] {
            let Err(e) = split_url(
                url,
                &["postgresql://"],
                "a PostgreSQL URL starts with postgresql://",
            ) else {
                panic!("{url} accepted");
            };
            assert!(e.to_string().contains(said), "{url}: {e}");
        }
    }
}
