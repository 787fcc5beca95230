//! Turning `postgres` errors into engine errors that keep the SQLSTATE.

use crate::error::Error;

fn describe(e: &postgres::Error) -> (String, Option<String>) {
    match e.as_db_error() {
        Some(db) => {
            let mut msg = format!("{}: {}", db.severity(), db.message());
            if let Some(detail) = db.detail() {
                msg.push_str(&format!(" (detail: {detail})"));
            }
            if let Some(hint) = db.hint() {
                msg.push_str(&format!(" (hint: {hint})"));
            }
            (msg, Some(db.code().code().to_string()))
        }
        None => {
            // The Display of a non-server error is terse; add its cause.
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            (msg, e.code().map(|c| c.code().to_string()))
        }
    }
}

/// An error raised while connecting.
pub fn connect_error(e: &postgres::Error) -> Error {
    let (message, code) = describe(e);
    Error::Connect { message, code }
}

/// An error raised by a statement or while streaming its result.
pub fn query_error(e: &postgres::Error) -> Error {
    let (message, code) = describe(e);
    if e.as_db_error().is_none() && (e.is_closed() || code.is_none()) {
        return Error::ConnectionLost(message);
    }
    Error::Query { message, code }
}
