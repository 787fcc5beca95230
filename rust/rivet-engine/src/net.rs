//! Byte streams to database servers: TCP, TLS over TCP, or a Unix socket.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use crate::error::{Error, Result};

/// How often a blocked read wakes up to check for cancellation.
pub const READ_POLL: Duration = Duration::from_millis(200);

/// A connected socket.
pub enum Socket {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP.
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
    /// Unix domain socket.
    Unix(UnixStream),
    /// Taken away (while a stream is being upgraded to TLS).
    Closed,
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the connection is closed")
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.read(buf),
            Socket::Tls(s) => s.read(buf),
            Socket::Unix(s) => s.read(buf),
            Socket::Closed => Err(closed()),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write(buf),
            Socket::Tls(s) => s.write(buf),
            Socket::Unix(s) => s.write(buf),
            Socket::Closed => Err(closed()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.flush(),
            Socket::Tls(s) => s.flush(),
            Socket::Unix(s) => s.flush(),
            Socket::Closed => Err(closed()),
        }
    }
}

impl Socket {
    /// Wake blocked reads every [`READ_POLL`] so a cancelled read can stop.
    pub fn set_read_poll(&self, on: bool) -> Result<()> {
        let timeout = on.then_some(READ_POLL);
        match self {
            Socket::Tcp(s) => s.set_read_timeout(timeout)?,
            Socket::Tls(s) => s.get_ref().set_read_timeout(timeout)?,
            Socket::Unix(s) => s.set_read_timeout(timeout)?,
            Socket::Closed => {}
        }
        Ok(())
    }
}

/// A connection error with no server code.
pub fn connect_error(message: String) -> Error {
    Error::Connect {
        message,
        code: None,
    }
}

/// Open TCP to the first address of `host` that answers.
pub fn tcp(host: &str, port: u16, timeout: Duration) -> Result<TcpStream> {
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| connect_error(format!("cannot resolve {host}: {e}")))?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(connect_error(match last {
        Some(e) => format!("cannot reach {host}:{port}: {e}"),
        None => format!("{host} resolves to no address"),
    }))
}

/// Open a Unix domain socket.
pub fn unix(path: &str) -> Result<UnixStream> {
    UnixStream::connect(path).map_err(|e| connect_error(format!("cannot open socket {path}: {e}")))
}

/// Run the TLS handshake on `stream` for `host`.
pub fn upgrade_tls(
    mut stream: TcpStream,
    host: &str,
    config: ClientConfig,
    timeout: Duration,
) -> Result<Socket> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| connect_error(format!("invalid TLS server name '{host}': {e}")))?;
    let mut conn = ClientConnection::new(Arc::new(config), name)
        .map_err(|e| connect_error(format!("TLS setup failed: {e}")))?;
    stream.set_read_timeout(Some(timeout))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut stream)
            .map_err(|e| connect_error(format!("TLS handshake with {host} failed: {e}")))?;
    }
    stream.set_read_timeout(None)?;
    Ok(Socket::Tls(Box::new(StreamOwned::new(conn, stream))))
}
