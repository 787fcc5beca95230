//! Byte streams to database servers: TCP, TLS over TCP, or a Unix socket.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use crate::error::{Error, Result};

/// How often a blocked read wakes up to check for cancellation.
pub const READ_POLL: Duration = Duration::from_millis(200);

/// Bytes read from a server and not consumed yet: `buf[start..end]`, refilled by large reads.
pub struct ReadBuffer {
    /// The bytes; positions into it stay valid until the next [`ReadBuffer::fill`].
    pub buf: Vec<u8>,
    /// First unread byte.
    pub start: usize,
    /// End of the bytes read.
    pub end: usize,
}

/// Room kept free after the unread bytes, so each read is large.
const READ_CHUNK: usize = 256 << 10;

impl ReadBuffer {
    /// An empty buffer of `capacity` bytes (it grows for larger messages).
    pub fn new(capacity: usize) -> Self {
        ReadBuffer {
            buf: vec![0; capacity],
            start: 0,
            end: 0,
        }
    }

    /// Make at least `need` unread bytes available, reading from `source`.
    ///
    /// The unread bytes may move to the front of the buffer: take positions after
    /// this call. A read that times out checks `interrupt` and goes on unless it is set.
    #[inline]
    pub fn fill(
        &mut self,
        source: &mut impl Read,
        need: usize,
        interrupt: Option<&AtomicBool>,
    ) -> Result<()> {
        if self.end - self.start >= need {
            return Ok(());
        }
        self.read_more(source, need, interrupt)
    }

    #[inline(never)]
    fn read_more(
        &mut self,
        source: &mut impl Read,
        need: usize,
        interrupt: Option<&AtomicBool>,
    ) -> Result<()> {
        if self.buf.len() - self.end < READ_CHUNK || self.buf.len() - self.start < need {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            let wanted = (need + READ_CHUNK).next_power_of_two();
            if self.buf.len() < wanted {
                self.buf.resize(wanted, 0);
            }
        }
        while self.end - self.start < need {
            match source.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    return Err(Error::ConnectionLost(
                        "the server closed the connection".into(),
                    ));
                }
                Ok(n) => self.end += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if interrupt.is_some_and(|f| f.load(Ordering::Relaxed)) {
                        return Err(Error::Interrupted);
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(Error::ConnectionLost(format!(
                        "reading from the server failed: {e}"
                    )));
                }
            }
        }
        Ok(())
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// A source that hands out a byte pattern a few hundred bytes at a time.
    struct Trickle {
        at: usize,
        len: usize,
    }

    impl Read for Trickle {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = out.len().min(700).min(self.len - self.at);
            for (i, b) in out[..n].iter_mut().enumerate() {
                *b = ((self.at + i) % 251) as u8;
            }
            self.at += n;
            Ok(n)
        }
    }

    #[test]
    fn unread_bytes_survive_moves_and_growth() {
        let mut source = Trickle {
            at: 0,
            len: 2_000_000,
        };
        let mut rb = ReadBuffer::new(4096);
        rb.fill(&mut source, 10, None).unwrap();
        rb.start += 5;
        // Larger than the buffer: the unread bytes move to the front and the buffer grows.
        rb.fill(&mut source, 600_000, None).unwrap();
        assert!(rb.end - rb.start >= 600_000);
        let unread = &rb.buf[rb.start..rb.start + 600_000];
        assert!(
            unread
                .iter()
                .enumerate()
                .all(|(i, b)| *b == ((5 + i) % 251) as u8)
        );
    }

    #[test]
    fn a_closed_stream_is_a_lost_connection() {
        let mut source = Trickle { at: 0, len: 3 };
        let mut rb = ReadBuffer::new(16);
        let err = rb.fill(&mut source, 4, None).unwrap_err();
        assert!(matches!(err, Error::ConnectionLost(_)));
    }
}
