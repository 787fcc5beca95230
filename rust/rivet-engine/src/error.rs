//! The engine's error type: every failure a reader can report, with the
//! context (column, SQLSTATE) the Python side needs to classify and explain it.

use std::fmt;

/// A column whose source type has no exact Arrow mapping.
#[derive(Debug, Clone)]
pub struct UnsupportedColumn {
    /// Column name as it appears in the result.
    pub column: String,
    /// Source type, as the database names it.
    pub source_type: String,
    /// What the user can do about it (a cast or an override).
    pub hint: String,
}

/// Errors raised by the engine.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// Bad connection settings or reader options.
    #[error("{0}")]
    Config(String),
    /// Could not connect or authenticate.
    #[error("could not connect to the source: {message}")]
    Connect {
        /// Readable cause.
        message: String,
        /// SQLSTATE (PostgreSQL) or error code, when the server sent one.
        code: Option<String>,
    },
    /// The server rejected a statement.
    #[error("{message}")]
    Query {
        /// Readable cause, including detail and hint when the server gave them.
        message: String,
        /// SQLSTATE (PostgreSQL) or error code.
        code: Option<String>,
    },
    /// The connection broke while reading.
    #[error("connection to the source was lost: {0}")]
    ConnectionLost(String),
    /// One or more result columns cannot be exported exactly.
    #[error("{}", unsupported_message(.0))]
    Unsupported(Vec<UnsupportedColumn>),
    /// A value could not be converted exactly; never turned into NULL.
    #[error("column \"{column}\": {message}")]
    Decode {
        /// Column name.
        column: String,
        /// What was wrong with the value.
        message: String,
    },
    /// The read was cancelled (Ctrl-C or the consumer went away).
    #[error("the read was interrupted")]
    Interrupted,
    /// A local I/O failure.
    #[error("{0}")]
    Io(String),
    /// Rows were lost or invented on the way: the counts of the server, the decoder
    /// and the consumer disagree. Never retried into success silently.
    #[error("{0}")]
    Integrity(String),
    /// A bug in the reader (a panic, or a reader that stopped without saying why).
    #[error("{0}")]
    Internal(String),
}

/// Result alias for the engine.
pub type Result<T> = std::result::Result<T, Error>;

fn unsupported_message(columns: &[UnsupportedColumn]) -> String {
    let mut out = format!("{} column(s) cannot be exported exactly:", columns.len());
    for c in columns {
        out.push_str(&format!(
            "\n  - \"{}\" ({}): {}",
            c.column, c.source_type, c.hint
        ));
    }
    out
}

impl Error {
    /// What a failure while logging in is: the server refusing a statement or dropping the
    /// connection then is a connection error (it never ran a query).
    pub fn at_login(self) -> Self {
        match self {
            Error::Query { message, code } => Error::Connect { message, code },
            Error::ConnectionLost(message) => Error::Connect {
                message,
                code: None,
            },
            other => other,
        }
    }

    /// A decode error for `column`.
    pub fn decode(column: &str, message: impl fmt::Display) -> Self {
        Error::Decode {
            column: column.to_string(),
            message: message.to_string(),
        }
    }

    /// The SQLSTATE or server error code, if any.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Connect { code, .. } | Error::Query { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}
