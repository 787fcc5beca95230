//! The byte stream under a connection: TCP, TLS over TCP, or a Unix socket.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};

use crate::error::{Error, Result};
use crate::pg::connect::ConnectParams;
use crate::tls::TlsMode;

/// How often a blocked read wakes up to check for cancellation.
pub const READ_POLL: Duration = Duration::from_millis(200);

/// A connected socket.
pub enum PgSocket {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP.
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
    /// Unix domain socket.
    Unix(UnixStream),
}

impl Read for PgSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            PgSocket::Tcp(s) => s.read(buf),
            PgSocket::Tls(s) => s.read(buf),
            PgSocket::Unix(s) => s.read(buf),
        }
    }
}

impl Write for PgSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            PgSocket::Tcp(s) => s.write(buf),
            PgSocket::Tls(s) => s.write(buf),
            PgSocket::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            PgSocket::Tcp(s) => s.flush(),
            PgSocket::Tls(s) => s.flush(),
            PgSocket::Unix(s) => s.flush(),
        }
    }
}

fn connect_error(message: String) -> Error {
    Error::Connect {
        message,
        code: None,
    }
}

fn tcp(params: &ConnectParams) -> Result<TcpStream> {
    let target = format!("{}:{}", params.host, params.port);
    let addrs = (params.host.as_str(), params.port)
        .to_socket_addrs()
        .map_err(|e| connect_error(format!("cannot resolve {}: {e}", params.host)))?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, params.connect_timeout) {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(connect_error(match last {
        Some(e) => format!("cannot reach {target}: {e}"),
        None => format!("{} resolves to no address", params.host),
    }))
}

fn unix(params: &ConnectParams) -> Result<UnixStream> {
    let path = format!(
        "{}/.s.PGSQL.{}",
        params.host.trim_end_matches('/'),
        params.port
    );
    UnixStream::connect(&path).map_err(|e| connect_error(format!("cannot open socket {path}: {e}")))
}

/// Ask the server for TLS; `true` if it agreed.
fn request_tls(stream: &mut TcpStream) -> Result<bool> {
    // SSLRequest: length 8, code 80877103.
    stream.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])?;
    let mut answer = [0u8; 1];
    stream
        .read_exact(&mut answer)
        .map_err(|e| connect_error(format!("TLS negotiation failed: {e}")))?;
    match answer[0] {
        b'S' => Ok(true),
        b'N' => Ok(false),
        other => Err(connect_error(format!(
            "unexpected answer to the TLS request: {other:#x}"
        ))),
    }
}

/// Open the socket and settle encryption as the TLS mode requires.
pub fn open(params: &ConnectParams) -> Result<PgSocket> {
    if params.host.starts_with('/') {
        return Ok(PgSocket::Unix(unix(params)?));
    }
    let mut stream = tcp(params)?;
    let Some(config) = params.tls.client_config()? else {
        return Ok(PgSocket::Tcp(stream));
    };
    stream.set_read_timeout(Some(params.connect_timeout))?;
    if !request_tls(&mut stream)? {
        if params.tls.mode == TlsMode::Prefer {
            stream.set_read_timeout(None)?;
            return Ok(PgSocket::Tcp(stream));
        }
        return Err(connect_error(format!(
            "the server at {}:{} does not accept TLS, and TLS mode is {:?}",
            params.host, params.port, params.tls.mode
        )));
    }
    let name = ServerName::try_from(params.host.clone())
        .map_err(|e| connect_error(format!("invalid TLS server name '{}': {e}", params.host)))?;
    let mut conn = ClientConnection::new(Arc::new(config), name)
        .map_err(|e| connect_error(format!("TLS setup failed: {e}")))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut stream).map_err(|e| {
            connect_error(format!("TLS handshake with {} failed: {e}", params.host))
        })?;
    }
    stream.set_read_timeout(None)?;
    Ok(PgSocket::Tls(Box::new(StreamOwned::new(conn, stream))))
}

impl PgSocket {
    /// Wake blocked reads every `READ_POLL` so a cancelled read can stop.
    pub fn set_read_poll(&self, on: bool) -> Result<()> {
        let timeout = on.then_some(READ_POLL);
        match self {
            PgSocket::Tcp(s) => s.set_read_timeout(timeout)?,
            PgSocket::Tls(s) => s.get_ref().set_read_timeout(timeout)?,
            PgSocket::Unix(s) => s.set_read_timeout(timeout)?,
        }
        Ok(())
    }
}
