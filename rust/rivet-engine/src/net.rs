//! Byte streams to database servers: TCP, TLS over TCP, or a Unix socket.
//!
//! Over 500 lines because the sockets, the read buffer and the `Link` enforce one set of
//! limits together (message size, silence, interrupts); split, each would see half of them.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use crate::conn::{Endpoint, Keepalive};
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

/// What may stop a blocked read: a cancel flag, and a limit on the server's silence.
#[derive(Clone, Copy, Default)]
pub struct ReadWatch<'a> {
    /// Set when the read should stop ([`Error::Interrupted`]).
    pub interrupt: Option<&'a AtomicBool>,
    /// The longest the server may send nothing before the connection counts as lost.
    pub idle_limit: Option<Duration>,
}

impl ReadBuffer {
    /// An empty buffer of `capacity` bytes (it grows for larger messages).
    pub fn new(capacity: usize) -> Self {
        ReadBuffer {
            buf: vec![0; capacity],
            start: 0,
            end: 0,
        }
    }

    /// Unread bytes.
    pub fn unread(&self) -> usize {
        self.end - self.start
    }

    /// Make at least `need` unread bytes available, reading from `source`.
    ///
    /// The unread bytes may move to the front of the buffer: take positions after
    /// this call. The buffer grows with the bytes that actually arrive, never to a
    /// size a server merely announced. A read that times out checks `watch`.
    #[inline]
    pub fn fill(
        &mut self,
        source: &mut impl Read,
        need: usize,
        watch: ReadWatch<'_>,
    ) -> Result<()> {
        if self.end - self.start >= need {
            return Ok(());
        }
        self.read_more(source, need, watch)
    }

    #[inline(never)]
    fn read_more(
        &mut self,
        source: &mut impl Read,
        need: usize,
        watch: ReadWatch<'_>,
    ) -> Result<()> {
        if self.start > 0
            && (self.buf.len() - self.end < READ_CHUNK || self.buf.len() - self.start < need)
        {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let mut heard = Instant::now();
        while self.end - self.start < need {
            if self.buf.len() - self.end < READ_CHUNK.min(self.start + need - self.end) {
                let grown =
                    (self.buf.len().max(READ_CHUNK) * 2).min(self.start + need + READ_CHUNK);
                self.buf.resize(grown, 0);
            }
            match source.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    return Err(Error::ConnectionLost(
                        "the server closed the connection".into(),
                    ));
                }
                Ok(n) => {
                    self.end += n;
                    heard = Instant::now();
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if watch.interrupt.is_some_and(|f| f.load(Ordering::Relaxed)) {
                        return Err(Error::Interrupted);
                    }
                    if let Some(limit) = watch.idle_limit {
                        if heard.elapsed() >= limit {
                            return Err(Error::ConnectionLost(format!(
                                "the server sent nothing for {} s (read_timeout_s)",
                                limit.as_secs_f64().round()
                            )));
                        }
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

/// How a connection is protected, for warnings, `rivet check`, and which passwords it may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// A Unix domain socket on this machine.
    Unix,
    /// Plain TCP.
    Plain,
    /// TLS without a verified certificate (anyone in between could be the server).
    TlsUnverified,
    /// TLS with the certificate chain (and, for verify-full, the host name) verified.
    TlsVerified,
    /// No connection: a database file read in this process (SQLite).
    File,
}

impl Channel {
    /// Whether a password sent in the clear over it reaches only the real server.
    pub fn trusted(self) -> bool {
        matches!(self, Channel::Unix | Channel::TlsVerified | Channel::File)
    }

    /// `unix-socket`, `plaintext`, `tls-unverified` or `tls-verified`.
    pub fn name(self) -> &'static str {
        match self {
            Channel::Unix => "unix-socket",
            Channel::Plain => "plaintext",
            Channel::TlsUnverified => "tls-unverified",
            Channel::TlsVerified => "tls-verified",
            Channel::File => "file",
        }
    }
}

/// A protocol's connection over a [`Link`]: the link's interrupt and channel come with it.
pub trait OverLink: Sized {
    /// The protocol's own connection settings (beside the shared [`Endpoint`] ones).
    type Settings;

    /// What the protocol sends to end a session politely (sent when a healthy link is dropped).
    const FAREWELL: &'static [u8];

    /// The connection over a freshly opened link, before its login.
    fn over(link: Link) -> Self;

    /// The connection over `link`, which says [`Self::FAREWELL`] when dropped healthy.
    fn wrap(mut link: Link) -> Self {
        link.farewell = Self::FAREWELL;
        Self::over(link)
    }

    /// The protocol's login conversation (startup, handshake, authentication).
    fn authenticate(&mut self, params: &Endpoint<Self::Settings>) -> Result<()>;

    /// Log in over an opened socket; afterwards messages may be as large as any value.
    fn connect_over(
        socket: Socket,
        channel: Channel,
        params: &Endpoint<Self::Settings>,
    ) -> Result<Self> {
        let link = Link::new(socket, channel, Some(params.connect_timeout))?;
        let mut conn = Self::wrap(link);
        conn.login(params)?;
        Ok(conn)
    }

    /// Authenticate; a failure then is a connection error, and the logged-in limits apply after.
    fn login(&mut self, params: &Endpoint<Self::Settings>) -> Result<()> {
        self.authenticate(params).map_err(Error::at_login)?;
        self.link_mut().logged_in(params.read_timeout);
        Ok(())
    }
    /// The link.
    fn link(&self) -> &Link;
    /// The link, to read and write.
    fn link_mut(&mut self) -> &mut Link;

    /// A connection over an already connected socket, and the outcome of `login` on it
    /// (fuzz targets drive it with a fake server).
    #[cfg(test)]
    fn login_over(
        socket: Socket,
        channel: Channel,
        connect_timeout: Duration,
        login: impl FnOnce(&mut Self) -> Result<()>,
    ) -> (Self, Result<()>) {
        let mut conn = match Link::new(socket, channel, Some(connect_timeout)) {
            Ok(link) => Self::wrap(link),
            Err(e) => panic!("cannot wrap the test socket: {e}"),
        };
        let outcome = login(&mut conn);
        (conn, outcome)
    }
}

/// A connection's byte stream with its read buffer and limits: what both wire protocols share.
pub struct Link {
    /// The socket.
    pub socket: Socket,
    /// Bytes read and not consumed.
    pub rb: ReadBuffer,
    /// How the bytes travel.
    pub channel: Channel,
    /// The most bytes one message may announce (small until the login is done).
    pub max_message: usize,
    /// Set once a read or write failed: the stream is not reused.
    pub broken: bool,
    interrupt: Option<Arc<AtomicBool>>,
    idle_limit: Option<Duration>,
    farewell: &'static [u8],
}

impl Drop for Link {
    /// A healthy link says goodbye, so the server ends the session at once instead of
    /// logging an aborted connection.
    fn drop(&mut self) {
        let farewell = self.farewell;
        if !self.broken && !farewell.is_empty() {
            let _ = self.send(farewell);
        }
    }
}

impl Link {
    /// Wrap a connected socket; reads wake up regularly to check the limits.
    pub fn new(socket: Socket, channel: Channel, idle_limit: Option<Duration>) -> Result<Self> {
        socket.set_read_poll(true)?;
        Ok(Link {
            socket,
            rb: ReadBuffer::new(1 << 20),
            channel,
            max_message: LOGIN_MAX_MESSAGE,
            broken: false,
            interrupt: None,
            idle_limit,
            farewell: &[],
        })
    }

    /// Make at least `need` unread bytes available (positions taken before are stale).
    #[inline]
    pub fn fill(&mut self, need: usize) -> Result<()> {
        let watch = ReadWatch {
            interrupt: self.interrupt.as_deref(),
            idle_limit: self.idle_limit,
        };
        let filled = self.rb.fill(&mut self.socket, need, watch);
        self.broken |= filled.is_err();
        filled
    }

    /// Refuse a message larger than the limit before reading it.
    pub fn check_message_len(&mut self, len: usize) -> Result<()> {
        if len > self.max_message {
            self.broken = true;
            return Err(Error::ConnectionLost(format!(
                "the server announced a message of {len} bytes, more than the {} rivet accepts here",
                self.max_message
            )));
        }
        Ok(())
    }

    /// After the login: messages up to [`MAX_MESSAGE`], and the read limit of the session.
    pub fn logged_in(&mut self, idle_limit: Option<Duration>) {
        self.max_message = MAX_MESSAGE;
        self.idle_limit = idle_limit;
    }

    /// Write and flush; a failure breaks the link.
    pub fn send(&mut self, data: &[u8]) -> Result<()> {
        self.socket
            .write_all(data)
            .and_then(|()| self.socket.flush())
            .map_err(|e| {
                self.broken = true;
                Error::ConnectionLost(format!("sending to the server failed: {e}"))
            })
    }

    /// Stop blocked reads with [`Error::Interrupted`] once `flag` is set.
    pub fn watch(&mut self, flag: Arc<AtomicBool>) {
        self.interrupt = Some(flag);
    }

    /// Forget the interrupt flag of a finished scan.
    pub fn unwatch(&mut self) {
        self.interrupt = None;
    }

    /// Upgrade to TLS, refusing bytes that arrived before it (they were not encrypted).
    pub fn upgrade(&mut self, host: &str, config: ClientConfig, timeout: Duration) -> Result<()> {
        if self.rb.unread() > 0 {
            self.broken = true;
            return Err(connect_error(
                "the server sent data before the TLS handshake; refusing it (it was not encrypted)"
                    .into(),
            ));
        }
        let Socket::Tcp(stream) = std::mem::replace(&mut self.socket, Socket::Closed) else {
            return Err(connect_error(
                "TLS over a Unix socket is not supported".into(),
            ));
        };
        self.socket = upgrade_tls(stream, host, config, timeout)?;
        self.socket.set_read_poll(true)
    }
}

/// The most bytes a message may announce before the login is done.
pub const LOGIN_MAX_MESSAGE: usize = 1 << 20;
/// The most bytes one message may hold afterwards (a value is at most 1 GiB on every source).
pub const MAX_MESSAGE: usize = (1 << 30) + (1 << 20);

/// The memory a text row holds: the row, a slot per field, and each value's text. Text
/// results are bounded by this rather than by their bytes on the wire, where a NULL takes
/// 1 to 4 bytes but still costs a slot (and invalid UTF-8 grows when it is replaced).
pub fn text_row_bytes(row: &[Option<String>]) -> usize {
    let values: usize = row
        .iter()
        .map(|v| size_of::<Option<String>>() + v.as_ref().map_or(0, String::capacity))
        .sum();
    size_of::<Vec<Option<String>>>() + values
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
    /// The server's end-entity certificate (DER), on a TLS connection.
    pub fn peer_certificate(&self) -> Option<Vec<u8>> {
        match self {
            Socket::Tls(s) => s.conn.peer_certificates()?.first().map(|c| c.to_vec()),
            _ => None,
        }
    }

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

/// Open TCP to the first address of `host` that answers, with keepalive probes so a
/// peer that vanished is noticed.
pub fn tcp(
    host: &str,
    port: u16,
    timeout: Duration,
    keepalive: Option<Keepalive>,
) -> Result<TcpStream> {
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| connect_error(format!("cannot resolve {host}: {e}")))?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                s.set_nodelay(true)?;
                if let Some(k) = keepalive {
                    set_keepalive(&s, k)?;
                }
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

fn set_keepalive(stream: &TcpStream, k: Keepalive) -> Result<()> {
    let socket = socket2::SockRef::from(stream);
    let probes = socket2::TcpKeepalive::new()
        .with_time(k.idle)
        .with_interval(k.interval)
        .with_retries(k.count);
    socket.set_tcp_keepalive(&probes)?;
    // Data sent and never acknowledged fails the connection as soon as probes would.
    #[cfg(target_os = "linux")]
    socket.set_tcp_user_timeout(Some(k.idle + k.interval * k.count))?;
    Ok(())
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
        rb.fill(&mut source, 10, ReadWatch::default()).unwrap();
        rb.start += 5;
        // Larger than the buffer: the unread bytes move to the front and the buffer grows.
        rb.fill(&mut source, 600_000, ReadWatch::default()).unwrap();
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
        let err = rb.fill(&mut source, 4, ReadWatch::default()).unwrap_err();
        assert!(matches!(err, Error::ConnectionLost(_)));
    }

    /// A source that sends a few bytes, then nothing (each read times out).
    struct Silent;

    impl Read for Silent {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            std::thread::sleep(Duration::from_millis(5));
            Err(io::Error::new(ErrorKind::WouldBlock, "no data"))
        }
    }

    #[test]
    fn a_silent_server_is_a_lost_connection_after_the_idle_limit() {
        let mut rb = ReadBuffer::new(16);
        let watch = ReadWatch {
            interrupt: None,
            idle_limit: Some(Duration::from_millis(30)),
        };
        let err = rb.fill(&mut Silent, 1, watch).unwrap_err();
        assert!(err.to_string().contains("sent nothing"), "{err}");
    }

    #[test]
    fn text_rows_count_their_slots_not_their_wire_bytes() {
        // Three NULLs take 3 to 12 bytes on the wire, and 3 slots after the row itself.
        assert_eq!(text_row_bytes(&[None, None, None]), 24 + 3 * 24);
        assert_eq!(text_row_bytes(&[Some("abc".into())]), 24 + 24 + 3);
    }

    #[test]
    fn an_announced_size_is_not_allocated_before_the_bytes_arrive() {
        // A server that announces a huge message and then sends only a little.
        let mut source = Trickle { at: 0, len: 10_000 };
        let mut rb = ReadBuffer::new(4096);
        let err = rb
            .fill(&mut source, 2 << 30, ReadWatch::default())
            .unwrap_err();
        assert!(matches!(err, Error::ConnectionLost(_)));
        assert!(rb.buf.len() < 4 << 20, "{}", rb.buf.len());
    }
}
