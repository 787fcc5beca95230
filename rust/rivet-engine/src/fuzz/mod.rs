//! Fuzz targets for every parser of bytes a server sends (a security requirement):
//! whatever arrives, a parser answers with a value or an error. It never panics,
//! never hangs, and never allocates far beyond the bytes it received.
//!
//! Each target is a proptest property over arbitrary bytes and over mutations of a
//! valid exchange, fed through a real socket (a fake server thread on the other end)
//! to the real connection code. Every case runs on a reader thread the way a scan
//! does, under a deadline (a hang fails the case), with its allocations counted.
//!
//! By default each target runs 64 to 1024 cases so `cargo test` stays quick (about
//! 3 s for all of them). Run them longer with the standard variable: every target then
//! runs that many cases (5000 take about 45 s in a debug build):
//!
//! ```text
//! PROPTEST_CASES=5000 cargo test -p rivet-engine fuzz::
//! ```
//!
//! For long runs a release build is faster; keep its overflow checks on, or an
//! arithmetic overflow wraps silently instead of failing the case:
//!
//! ```text
//! CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true \
//!   CARGO_PROFILE_RELEASE_LTO=false PROPTEST_CASES=100000 \
//!   cargo test --release -p rivet-engine fuzz::
//! ```
//!
//! A failure prints the smallest input found: fix the parser, and keep that input as a
//! test in the `regressions` module of its file.

mod mysql;
mod pg;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Decimal256Type};
use arrow_schema::{DataType, Schema};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::Config as ProptestConfig;

use crate::batch::BatchLimits;
use crate::error::{Error, Result};
use crate::mysql::wire::MyConnection;
use crate::net::{Channel, Socket};
use crate::pg::wire::PgConnection;
use crate::pg::wire::auth::{BindingPolicy, server_end_point};
use crate::stream::{BatchSink, BatchStream, EndOfData, Poll};
use crate::tls::{TlsMode, TlsSettings};
use mysql::{CLIENT_SSL, MY_SERVER_CAPS, my_frame, my_greeting, my_params};
use pg::{pg_frame, pg_login_exchange, pg_params};

pub(crate) use mysql::text_result_rows;

// ---------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------

/// Counts the bytes each thread holds, so a target can check that hostile input never
/// makes a parser allocate far beyond the bytes it received.
mod alloc_probe {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static LIVE: Cell<isize> = const { Cell::new(0) };
        static PEAK: Cell<isize> = const { Cell::new(0) };
    }

    fn count(delta: isize) {
        // Plain cells without destructors: no allocation, usable while a thread exits.
        let _ = LIVE.try_with(|live| {
            let now = live.get() + delta;
            live.set(now);
            let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
        });
    }

    struct Counting;

    // The test binary's allocator: the system allocator, plus a per-thread count of the
    // bytes held (frees on another thread make that count an upper bound, which is fine).
    #[allow(unsafe_code)]
    // SAFETY: every call is forwarded unchanged to `System`; counting touches only
    // thread-local cells and never allocates.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller's contract for `alloc` is passed on unchanged.
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                count(layout.size() as isize);
            }
            p
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: as for `alloc`.
            let p = unsafe { System.alloc_zeroed(layout) };
            if !p.is_null() {
                count(layout.size() as isize);
            }
            p
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: `ptr` came from `System` with this layout (every allocation goes there).
            unsafe { System.dealloc(ptr, layout) };
            count(-(layout.size() as isize));
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: as for `dealloc`; the caller guarantees `new_size` is valid.
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                count(new_size as isize - layout.size() as isize);
            }
            p
        }
    }

    #[global_allocator]
    static COUNTING: Counting = Counting;

    /// The most bytes this thread held at once since [`Probe::start`], beyond what it held then.
    pub struct Probe {
        base: isize,
    }

    impl Probe {
        pub fn start() -> Self {
            let base = LIVE.with(Cell::get);
            PEAK.with(|p| p.set(base));
            Probe { base }
        }

        pub fn peak(&self) -> usize {
            usize::try_from(PEAK.with(Cell::get) - self.base).unwrap_or(0)
        }
    }
}

use alloc_probe::Probe;

/// How long one case may take before it counts as a hang (generous: a loaded 2-core
/// machine runs several targets at once; a real hang never ends).
const DEADLINE: Duration = Duration::from_secs(30);

/// What a parser may hold beyond the bytes it received: the 1 MiB receive buffer, plus
/// 256 KiB for the first builders of a batch and small bookkeeping. Room sized by a
/// count the server announced (up to 65535 slots) does not fit in it.
const SLACK: usize = (1 << 20) + (256 << 10);

/// Proptest settings: `cases` unless `PROPTEST_CASES` says otherwise. Failures are not
/// written to files; the smallest input becomes a regression test instead.
fn config(cases: u32) -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = cases;
    }
    c.failure_persistence = None;
    c.max_shrink_iters = 2048;
    c
}

/// Fail unless `held` bytes are within a fixed slack plus a small multiple of `received`.
fn assert_bounded(what: &str, held: usize, received: usize) {
    let limit = SLACK + 16 * received;
    assert!(
        held <= limit,
        "{what}: {held} bytes held after receiving {received} bytes (limit {limit})"
    );
}

/// Run `work` on a reader thread, as a scan does (through a [`BatchStream`] whose sink
/// it gets), and wait for it at most [`DEADLINE`]. A panic or a hang fails the case;
/// otherwise the outcome is the parser's value or error.
fn bounded<F>(work: F) -> Result<()>
where
    F: FnOnce(&BatchSink) -> Result<()> + Send + 'static,
{
    let mut stream = BatchStream::spawn(Arc::new(Schema::empty()), 4, move |sink| {
        work(sink)?;
        Ok(EndOfData {
            server_rows: sink.sent_rows(),
            expected_rows: None,
        })
    });
    let until = Instant::now() + DEADLINE;
    loop {
        match stream.poll(Duration::from_millis(50)) {
            Poll::Batch(_) => {}
            Poll::Done(_) => return Ok(()),
            // A panic on the reader thread, or a reader that vanished.
            Poll::Failed(Error::Internal(m)) => panic!("{m}"),
            Poll::Failed(e) => return Err(e),
            Poll::Pending if Instant::now() > until => {
                panic!("no outcome after {DEADLINE:?}: the parser hangs")
            }
            Poll::Pending => {}
        }
    }
}

/// The other end of a connection: sends its bytes, closes its sending side, then reads
/// (and drops) whatever the client sends until the client hangs up.
struct FakeServer(JoinHandle<()>);

fn serve<S: Read + Write>(mut stream: S, bytes: &[u8], close: impl FnOnce(&S)) {
    // The client may stop reading early (an error); then the write fails, which is fine.
    let _ = stream.write_all(bytes);
    close(&stream);
    let mut scratch = [0u8; 4096];
    while matches!(stream.read(&mut scratch), Ok(n) if n > 0) {}
}

impl FakeServer {
    /// A server on a Unix socket pair; the client's end.
    fn pair(bytes: Vec<u8>) -> (Socket, FakeServer) {
        let (client, server) = UnixStream::pair().expect("a socket pair");
        let handle = thread::spawn(move || {
            serve(server, &bytes, |s| {
                let _ = s.shutdown(Shutdown::Write);
            })
        });
        (Socket::Unix(client), FakeServer(handle))
    }

    /// A server on 127.0.0.1 for one TCP connection; its port.
    fn tcp(bytes: Vec<u8>) -> (u16, FakeServer) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a local port");
        let port = listener.local_addr().expect("its address").port();
        listener.set_nonblocking(true).expect("non-blocking accept");
        let handle = thread::spawn(move || {
            let until = Instant::now() + DEADLINE;
            while Instant::now() < until {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        serve(stream, &bytes, |s| {
                            let _ = s.shutdown(Shutdown::Write);
                        });
                        return;
                    }
                    Err(_) => thread::sleep(Duration::from_millis(1)),
                }
            }
        });
        (port, FakeServer(handle))
    }

    /// Wait for the server to see the client hang up.
    fn join(self) {
        self.0.join().expect("the fake server never panics");
    }
}

// ---------------------------------------------------------------------------------
// Hostile bytes: noise, and mutations of valid exchanges
// ---------------------------------------------------------------------------------

/// One change to a byte string.
#[derive(Debug, Clone)]
enum Edit {
    /// Overwrite one byte.
    Set(Index, u8),
    /// Insert bytes.
    Insert(Index, Vec<u8>),
    /// Remove up to `n` bytes.
    Remove(Index, usize),
    /// Cut the rest.
    Truncate(Index),
    /// Overwrite with a boundary number (`width` bytes, big- or little-endian): the lengths
    /// and counts a parser trusts.
    Number(Index, u32, usize, bool),
}

fn edit() -> impl Strategy<Value = Edit> {
    let boundary = select(vec![
        0u32,
        1,
        2,
        0x7f,
        0xfb,
        0xfc,
        0xfe,
        0xff,
        0x7fff,
        0x8000,
        0xffff,
        0xff_fffe,
        0xff_ffff,
        0x7fff_ffff,
        0x8000_0000,
        0xffff_fffc,
        0xffff_ffff,
    ]);
    prop_oneof![
        3 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        1 => (any::<Index>(), vec(any::<u8>(), 1..8)).prop_map(|(i, b)| Edit::Insert(i, b)),
        1 => (any::<Index>(), 1usize..8).prop_map(|(i, n)| Edit::Remove(i, n)),
        1 => any::<Index>().prop_map(Edit::Truncate),
        3 => (any::<Index>(), boundary, select(vec![1usize, 2, 3, 4]), any::<bool>())
            .prop_map(|(i, v, w, be)| Edit::Number(i, v, w, be)),
    ]
}

fn apply(bytes: &mut Vec<u8>, edits: &[Edit]) {
    for e in edits {
        if bytes.is_empty() {
            if let Edit::Insert(_, b) = e {
                bytes.extend_from_slice(b);
            }
            continue;
        }
        match e {
            Edit::Set(i, b) => {
                let at = i.index(bytes.len());
                bytes[at] = *b;
            }
            Edit::Insert(i, b) => {
                let at = i.index(bytes.len() + 1);
                bytes.splice(at..at, b.iter().copied());
            }
            Edit::Remove(i, n) => {
                let at = i.index(bytes.len());
                let end = (at + n).min(bytes.len());
                bytes.drain(at..end);
            }
            Edit::Truncate(i) => bytes.truncate(i.index(bytes.len())),
            Edit::Number(i, v, width, big_endian) => {
                let at = i.index(bytes.len());
                let raw = if *big_endian {
                    v.to_be_bytes()[4 - width..].to_vec()
                } else {
                    v.to_le_bytes()[..*width].to_vec()
                };
                for (k, b) in raw.into_iter().enumerate() {
                    if let Some(slot) = bytes.get_mut(at + k) {
                        *slot = b;
                    }
                }
            }
        }
    }
}

/// One change to a sequence of messages (the framing of the others stays valid).
#[derive(Debug, Clone)]
enum UnitEdit {
    /// Change one message's bytes.
    Bytes(Index, Edit),
    /// Leave a message out.
    Drop(Index),
    /// Send a message twice.
    Repeat(Index),
    /// Exchange two messages.
    Swap(Index, Index),
}

fn unit_edit() -> impl Strategy<Value = UnitEdit> {
    prop_oneof![
        4 => (any::<Index>(), edit()).prop_map(|(i, e)| UnitEdit::Bytes(i, e)),
        1 => any::<Index>().prop_map(UnitEdit::Drop),
        1 => any::<Index>().prop_map(UnitEdit::Repeat),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| UnitEdit::Swap(a, b)),
    ]
}

fn apply_units(units: &mut Vec<Vec<u8>>, edits: &[UnitEdit]) {
    for e in edits {
        if units.is_empty() {
            return;
        }
        let n = units.len();
        match e {
            UnitEdit::Bytes(i, edit) => apply(&mut units[i.index(n)], std::slice::from_ref(edit)),
            UnitEdit::Drop(i) => {
                units.remove(i.index(n));
            }
            UnitEdit::Repeat(i) => {
                let at = i.index(n);
                let copy = units[at].clone();
                units.insert(at, copy);
            }
            UnitEdit::Swap(a, b) => units.swap(a.index(n), b.index(n)),
        }
    }
}

/// Bytes a hostile server sends: noise, or a valid exchange (`valid`, a sequence of
/// messages that `frame` turns into bytes) with messages and bytes changed.
fn hostile(
    valid: BoxedStrategy<Vec<Vec<u8>>>,
    frame: fn(&[Vec<u8>]) -> Vec<u8>,
) -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        1 => vec(any::<u8>(), 0..512),
        1 => valid.clone().prop_map(move |units| frame(&units)),
        6 => (valid, vec(unit_edit(), 0..4), vec(edit(), 0..3)).prop_map(
            move |(mut units, unit_edits, byte_edits)| {
                apply_units(&mut units, &unit_edits);
                let mut bytes = frame(&units);
                apply(&mut bytes, &byte_edits);
                bytes
            }
        ),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------
// Shared by the targets
// ---------------------------------------------------------------------------------

fn tls(mode: TlsMode) -> TlsSettings {
    TlsSettings {
        mode,
        ca_file: None,
        accept_invalid_certs: false,
        accept_invalid_hostnames: false,
    }
}

/// Rows of values as a server sends them (`None` is NULL).
type Rows = Vec<Vec<Option<Vec<u8>>>>;

/// Small batches, so batches are cut (and their builders finished) mid-stream.
fn small_limits() -> BatchLimits {
    BatchLimits::new(3, 256).expect("valid limits")
}

/// Every decimal in `array` (or its list values) fits the precision of its type.
fn assert_decimals_fit(array: &dyn Array) {
    match array.data_type() {
        DataType::Decimal128(p, _) => array
            .as_primitive::<Decimal128Type>()
            .validate_decimal_precision(*p)
            .expect("decoded decimals fit their precision"),
        DataType::Decimal256(p, _) => array
            .as_primitive::<Decimal256Type>()
            .validate_decimal_precision(*p)
            .expect("decoded decimals fit their precision"),
        DataType::List(_) => assert_decimals_fit(array.as_list::<i32>().values().as_ref()),
        _ => {}
    }
}

fn any_channel() -> impl Strategy<Value = Channel> {
    select(vec![
        Channel::Plain,
        Channel::Unix,
        Channel::TlsUnverified,
        Channel::TlsVerified,
    ])
}

// ---------------------------------------------------------------------------------
// Targets: TLS negotiation over TCP, and DER certificates
// ---------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(64))]

    /// The full `connect` path over TCP: PostgreSQL's answer to SSLRequest, MySQL's
    /// greeting offering TLS, then a TLS handshake with a server sending junk.
    #[test]
    fn tls_negotiation(
        pg in any::<bool>(),
        mode in select(vec![TlsMode::Prefer, TlsMode::Require]),
        first in prop_oneof![Just(b'S'), Just(b'N'), any::<u8>()],
        rest in hostile(pg_login_exchange().boxed(), pg_frame),
    ) {
        let _ = bounded(move |_| {
            if pg {
                let bytes = [vec![first], rest].concat();
                let (port, server) = FakeServer::tcp(bytes);
                let mut params = pg_params(true, false, BindingPolicy::Prefer);
                params.port = port;
                params.tls = tls(mode);
                let outcome = PgConnection::connect(&params).map(drop);
                server.join();
                outcome
            } else {
                let mut bytes = my_frame(&[my_greeting(MY_SERVER_CAPS | CLIENT_SSL, "mysql_native_password")]);
                bytes.extend(rest);
                let (port, server) = FakeServer::tcp(bytes);
                let mut params = my_params();
                params.port = port;
                params.tls = tls(mode);
                let outcome = MyConnection::connect(&params).map(drop);
                server.join();
                outcome
            }
        });
    }
}

proptest! {
    #![proptest_config(config(1024))]

    /// The `tls-server-end-point` hash of arbitrary and mutated certificates.
    #[test]
    fn der_server_end_point(cert in der_certificate()) {
        let _ = bounded(move |_| {
            if let Some(hash) = server_end_point(&cert) {
                assert!(matches!(hash.len(), 32 | 48 | 64), "{} byte hash", hash.len());
            }
            Ok(())
        });
    }
}

/// One DER element (long-form lengths when asked).
fn der(tag: u8, content: &[u8], long: bool) -> Vec<u8> {
    let mut v = vec![tag];
    let n = content.len();
    if n < 0x80 && !long {
        v.push(n as u8);
    } else {
        v.push(0x82);
        v.extend((n as u16).to_be_bytes());
    }
    v.extend_from_slice(content);
    v
}

/// Certificates (SEQUENCE { tbs, SEQUENCE { OID, NULL }, BIT STRING }) with every
/// signature algorithm rivet knows and some it does not, mutated, or plain noise.
fn der_certificate() -> BoxedStrategy<Vec<u8>> {
    let oid = select(vec![
        &b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0b"[..],
        b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0c",
        b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0d",
        b"\x2a\x86\x48\xce\x3d\x04\x03\x02",
        b"\x2a\x86\x48\xce\x3d\x04\x03\x04",
        b"\x2b\x65\x70",
        b"",
    ]);
    let cert = (
        oid,
        vec(any::<u8>(), 0..64),
        any::<bool>(),
        vec(edit(), 0..4),
    )
        .prop_map(|(oid, tbs, long, edits)| {
            let mut algorithm = der(0x06, oid, long);
            algorithm.extend(der(0x05, b"", false));
            let mut body = der(0x30, &tbs, long);
            body.extend(der(0x30, &algorithm, long));
            body.extend(der(0x03, b"\x00\x01\x02", false));
            let mut cert = der(0x30, &body, long);
            apply(&mut cert, &edits);
            cert
        });
    prop_oneof![1 => vec(any::<u8>(), 0..96), 4 => cert].boxed()
}
