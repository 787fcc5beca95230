//! Named fault injection, for the tests that prove a failure never looks like success.
//!
//! `RIVET_FAILPOINTS="reader_panic@2,socket_closed"` makes the second batch of the
//! process panic in its reader thread and the first batch lose its connection.
//! An entry is `name[@hit][:action]`: it fires once, on the `hit`-th time (default
//! the first) the process reaches that point. Unset, a check costs one lookup of
//! the environment per batch. The Python side reads the same variable for its own
//! points (`rivet.failpoints`); names are disjoint.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::error::{Error, Result};

/// The variable that arms failpoints.
pub const VARIABLE: &str = "RIVET_FAILPOINTS";

static HITS: Mutex<Option<HashMap<String, u64>>> = Mutex::new(None);

/// One armed failpoint.
#[derive(Debug, PartialEq, Eq)]
struct Armed<'a> {
    name: &'a str,
    hit: u64,
    action: Option<&'a str>,
}

fn parse(entry: &str) -> Option<Armed<'_>> {
    let (rest, action) = match entry.split_once(':') {
        Some((r, a)) => (r, Some(a.trim())),
        None => (entry, None),
    };
    let (name, hit) = match rest.split_once('@') {
        Some((n, h)) => (n, h.trim().parse().ok()?),
        None => (rest, 1),
    };
    Some(Armed {
        name: name.trim(),
        hit,
        action,
    })
}

/// Whether the failpoint `name` fires now (counting this visit).
fn fires(name: &str) -> Option<String> {
    let spec = std::env::var(VARIABLE).ok()?;
    let armed = spec.split(',').filter_map(parse).find(|a| a.name == name)?;
    let mut hits = HITS.lock().unwrap_or_else(PoisonError::into_inner);
    let count = hits
        .get_or_insert_with(HashMap::new)
        .entry(name.to_string())
        .or_insert(0);
    *count += 1;
    (*count == armed.hit).then(|| armed.action.unwrap_or("").to_string())
}

/// Visit the failpoint `name`: panics, or returns the injected error, when it fires.
///
/// Points: `reader_panic` (the reader thread panics), `decode_error` (a value fails
/// to decode), `socket_closed` (the connection drops mid-stream).
pub fn check(name: &str) -> Result<()> {
    let Some(action) = fires(name) else {
        return Ok(());
    };
    // Said on stderr before it acts, so a test can tell a point that fired from one never reached.
    eprintln!("rivet: failpoint {name} fired");
    match (name, action.as_str()) {
        (_, "panic") | ("reader_panic", _) => panic!("failpoint {name}"),
        ("decode_error", _) => Err(Error::decode(
            "(failpoint)",
            "failpoint decode_error injected a bad value",
        )),
        ("socket_closed", _) => Err(Error::ConnectionLost(
            "failpoint socket_closed: the server closed the connection".into(),
        )),
        _ => Err(Error::Io(format!("failpoint {name}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse() {
        assert_eq!(
            parse("reader_panic@2"),
            Some(Armed {
                name: "reader_panic",
                hit: 2,
                action: None
            })
        );
        assert_eq!(
            parse("x:crash"),
            Some(Armed {
                name: "x",
                hit: 1,
                action: Some("crash")
            })
        );
        assert_eq!(parse("x@two"), None);
    }
}
