//! MySQL: the handshake, text results, prepared statement metadata, binary rows and
//! their decoder, and multi-packet reassembly.

use std::time::Duration;

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;

use super::{
    FakeServer, Probe, Rows, any_channel, assert_bounded, bounded, config, hostile, small_limits,
    tls,
};
use crate::batch::{flush, make_room};
use crate::error::{Error, Result};
use crate::metadata::arrow_schema as my_schema;
use crate::mysql::connect::{MyParams, MySettings};
use crate::mysql::decode::MyBatchBuilder;
use crate::mysql::types::{MyColumn, MyKind};
use crate::mysql::wire::MyConnection;
use crate::net::{Channel, OverLink};
use crate::tls::TlsMode;

// ---------------------------------------------------------------------------------
// MySQL packets
// ---------------------------------------------------------------------------------

/// Frame MySQL packets: 3-byte length, sequence number, payload.
pub(super) fn my_frame(units: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (seq, u) in units.iter().enumerate() {
        out.extend(my_packet(seq as u8, u));
    }
    out
}

fn lenenc_int(out: &mut Vec<u8>, n: u64) {
    match n {
        0..=250 => out.push(n as u8),
        251..=0xffff => {
            out.push(0xfc);
            out.extend_from_slice(&(n as u16).to_le_bytes());
        }
        0x1_0000..=0xff_ffff => {
            out.push(0xfd);
            out.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
        }
        _ => {
            out.push(0xfe);
            out.extend_from_slice(&n.to_le_bytes());
        }
    }
}

fn lenenc_str(out: &mut Vec<u8>, s: &[u8]) {
    lenenc_int(out, s.len() as u64);
    out.extend_from_slice(s);
}

pub(super) const CLIENT_SSL: u32 = 2048;
const CLIENT_DEPRECATE_EOF: u32 = 1 << 24;
/// What a MySQL 8 server offers, less TLS and DEPRECATE_EOF.
pub(super) const MY_SERVER_CAPS: u32 = 0x000f_f7ff & !CLIENT_SSL;

/// The server's greeting (protocol 10).
pub(super) fn my_greeting(caps: u32, plugin: &str) -> Vec<u8> {
    let mut p = vec![10];
    p.extend(b"8.0.36\0");
    p.extend(7u32.to_le_bytes());
    p.extend(b"abcdefgh");
    p.push(0);
    p.extend((caps as u16).to_le_bytes());
    p.push(45);
    p.extend(2u16.to_le_bytes());
    p.extend(((caps >> 16) as u16).to_le_bytes());
    p.push(21);
    p.extend([0u8; 10]);
    p.extend(b"ijklmnopqrst\0");
    p.extend(plugin.as_bytes());
    p.push(0);
    p
}

fn my_ok(status: u16) -> Vec<u8> {
    let mut p = vec![0, 0, 0];
    p.extend(status.to_le_bytes());
    p.extend(0u16.to_le_bytes());
    p
}

fn my_err() -> Vec<u8> {
    let mut p = vec![0xff];
    p.extend(1045u16.to_le_bytes());
    p.extend(b"#28000Access denied");
    p
}

/// The end of a result set: EOF, or (with DEPRECATE_EOF) an OK packet with the 0xfe header.
fn my_end(deprecate_eof: bool, more: bool) -> Vec<u8> {
    let status: u16 = if more { 0x0008 } else { 0 };
    let mut p = vec![0xfe];
    if deprecate_eof {
        p.extend([0, 0]);
        p.extend(status.to_le_bytes());
        p.extend(0u16.to_le_bytes());
    } else {
        p.extend(0u16.to_le_bytes());
        p.extend(status.to_le_bytes());
    }
    p
}

fn my_coldef(name: &str, type_code: u8, flags: u16, decimals: u8) -> Vec<u8> {
    let mut p = Vec::new();
    for s in [
        &b"def"[..],
        b"db",
        b"t",
        b"t",
        name.as_bytes(),
        name.as_bytes(),
    ] {
        lenenc_str(&mut p, s);
    }
    p.push(0x0c);
    p.extend(45u16.to_le_bytes());
    p.extend(20u32.to_le_bytes());
    p.push(type_code);
    p.extend(flags.to_le_bytes());
    p.push(decimals);
    p.extend([0, 0]);
    p
}

/// Column definitions, and the EOF after them unless DEPRECATE_EOF.
fn my_coldefs(units: &mut Vec<Vec<u8>>, count: usize, deprecate_eof: bool) {
    for i in 0..count {
        units.push(my_coldef(&format!("c{i}"), 253, 0, 0));
    }
    if count > 0 && !deprecate_eof {
        units.push(my_end(false, false));
    }
}

/// What a server sends from its greeting to the end of the authentication.
fn my_login_exchange() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let plugin = select(vec![
        "mysql_native_password",
        "caching_sha2_password",
        "sha256_password",
    ]);
    let ending = prop_oneof![
        Just(vec![my_ok(2)]),
        Just(vec![my_err()]),
        Just(vec![vec![1, 3], my_ok(2)]),
        Just(vec![vec![1, 4], my_ok(2)]),
        (plugin.clone(), vec(any::<u8>(), 0..24)).prop_map(|(p, salt)| {
            let mut switch = vec![0xfe];
            switch.extend(p.as_bytes());
            switch.push(0);
            switch.extend(salt);
            switch.push(0);
            vec![switch, vec![1, 3], my_ok(2)]
        }),
    ];
    (any::<u32>(), any::<bool>(), plugin, ending).prop_map(|(noise, plain, plugin, ending)| {
        // Mostly the capabilities of a real server, sometimes any.
        let caps = if plain { MY_SERVER_CAPS } else { noise };
        let mut units = vec![my_greeting(caps, plugin)];
        units.extend(ending);
        units
    })
}

pub(super) fn my_params() -> MyParams {
    MyParams {
        host: "127.0.0.1".into(),
        port: 3306,
        user: "u".into(),
        password: Some("pw".into()),
        tls: tls(TlsMode::Disable),
        connect_timeout: Duration::from_secs(10),
        keepalive: None,
        read_timeout: Some(Duration::from_secs(10)),
        allow_unverified_password: false,
        dial: None,
        protocol: MySettings {
            database: Some("d".into()),
        },
    }
}

fn my_packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    out.push(seq);
    out.extend_from_slice(payload);
    out
}

/// What a server sends to log in: a greeting (with or without DEPRECATE_EOF) and OK.
fn my_logged_in(deprecate_eof: bool) -> Vec<u8> {
    let caps = MY_SERVER_CAPS
        | if deprecate_eof {
            CLIENT_DEPRECATE_EOF
        } else {
            0
        };
    let mut out = my_packet(0, &my_greeting(caps, "mysql_native_password"));
    out.extend(my_packet(2, &my_ok(2)));
    out
}

/// Log in to a fake server that sends `bytes`, run `work` on the connection if the
/// handshake succeeded, and check the connection's memory stayed bounded.
fn with_my(
    bytes: Vec<u8>,
    channel: Channel,
    params: MyParams,
    work: impl FnOnce(&mut MyConnection) -> Result<()>,
) -> Result<()> {
    let received = bytes.len();
    let probe = Probe::start();
    let (socket, server) = FakeServer::pair(bytes);
    let (mut conn, login) =
        MyConnection::login_over(socket, channel, params.connect_timeout, |c| {
            c.login(&params)
        });
    let outcome = login.and_then(|()| work(&mut conn));
    assert_bounded("receive buffers", conn.buffered_capacity(), received);
    drop(conn);
    server.join();
    assert_bounded("peak allocation", probe.peak(), received);
    outcome
}

/// What `query` returns when a server answers it with one text result set of `columns`
/// columns whose rows are these packets (the differential tests encode them).
pub(crate) fn text_result_rows(
    columns: usize,
    rows: Vec<Vec<u8>>,
    deprecate_eof: bool,
) -> Result<Vec<Vec<Option<String>>>> {
    let mut count = Vec::new();
    lenenc_int(&mut count, columns as u64);
    let mut units = vec![count];
    my_coldefs(&mut units, columns, deprecate_eof);
    units.extend(rows);
    units.push(my_end(deprecate_eof, false));
    let bytes = [my_logged_in(deprecate_eof), my_frame(&units)].concat();
    let mut result = Vec::new();
    with_my(bytes, Channel::Unix, my_params(), |conn| {
        result = conn.query("SELECT 1")?;
        Ok(())
    })?;
    Ok(result)
}

// MySQL values in their binary-protocol forms.

/// A column kind, and whether it travels as a BIT string.
type WireKind = (MyKind, bool);

fn my_kind() -> BoxedStrategy<WireKind> {
    prop_oneof![
        6 => select(vec![
            MyKind::Int8,
            MyKind::Int16,
            MyKind::Int32,
            MyKind::Int64,
            MyKind::UInt8,
            MyKind::UInt16,
            MyKind::UInt32,
            MyKind::UInt64,
            MyKind::Float32,
            MyKind::Float64,
            MyKind::Text,
            MyKind::Binary,
            MyKind::Date,
            MyKind::DateTime,
            MyKind::Timestamp,
            MyKind::Time,
        ])
        .prop_map(|k| (k, false)),
        1 => any::<bool>().prop_map(|bits| (MyKind::Bool, bits)),
        1 => Just((MyKind::Bits, true)),
        // DECIMAL(p, s) to decimal128 (p <= 38) and decimal256, at several scales.
        2 => (1u8..=65)
            .prop_flat_map(|p| (Just(p), 0..=p.min(30) as i8))
            .prop_map(|(p, s)| (MyKind::Decimal(p, s), false)),
    ]
    .boxed()
}

fn lenenc_value(bytes: impl Strategy<Value = Vec<u8>> + 'static) -> BoxedStrategy<Vec<u8>> {
    bytes
        .prop_map(|b| {
            let mut v = Vec::new();
            lenenc_str(&mut v, &b);
            v
        })
        .boxed()
}

/// Decimal text: sign, digits, maybe a point and more digits, sometimes junk.
fn decimal_text() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        8 => (
            select(vec!["", "-", "+"]),
            vec(0u8..10, 0..45),
            option::of(vec(0u8..10, 0..45)),
        )
            .prop_map(|(sign, int, frac)| {
                let mut t = sign.as_bytes().to_vec();
                t.extend(int.iter().map(|d| b'0' + d));
                if let Some(frac) = frac {
                    t.push(b'.');
                    t.extend(frac.iter().map(|d| b'0' + d));
                }
                t
            }),
        1 => "[-+.0-9eE ]{0,8}".prop_map(String::into_bytes),
    ]
    .boxed()
}

/// A binary DATE/DATETIME/TIMESTAMP: a length byte, then year, month, day, h, m, s, micros.
fn my_datetime() -> BoxedStrategy<Vec<u8>> {
    (
        select(vec![0u8, 4, 7, 11, 11, 3, 12, 255]),
        prop_oneof![0u16..10_000, any::<u16>()],
        0u8..14,
        0u8..33,
        any::<[u8; 3]>(),
        any::<u32>(),
    )
        .prop_map(|(len, y, m, d, hms, micros)| {
            let mut body = y.to_le_bytes().to_vec();
            body.extend([m, d]);
            body.extend(hms);
            body.extend(micros.to_le_bytes());
            body.resize(usize::from(len), 0);
            let mut v = vec![len];
            v.extend(body);
            v
        })
        .boxed()
}

/// A binary TIME: a length byte, then sign, days, h, m, s, micros.
fn my_time() -> BoxedStrategy<Vec<u8>> {
    (
        select(vec![0u8, 8, 12, 12, 5, 13]),
        0u8..3,
        prop_oneof![0u32..40, any::<u32>()],
        any::<[u8; 3]>(),
        any::<u32>(),
    )
        .prop_map(|(len, sign, days, hms, micros)| {
            let mut body = vec![sign];
            body.extend(days.to_le_bytes());
            body.extend(hms);
            body.extend(micros.to_le_bytes());
            body.resize(usize::from(len), 0);
            let mut v = vec![len];
            v.extend(body);
            v
        })
        .boxed()
}

/// A plausible binary value (not necessarily valid) of a column.
fn my_scalar(kind: MyKind, bits: bool) -> BoxedStrategy<Vec<u8>> {
    let fixed = |n: usize| vec(any::<u8>(), n..=n).boxed();
    match kind {
        MyKind::Bool if bits => lenenc_value(vec(0u8..3, 0..2)),
        MyKind::Bool => vec(0u8..3, 1..=1).boxed(),
        MyKind::Int8 | MyKind::UInt8 => fixed(1),
        MyKind::Int16 | MyKind::UInt16 => fixed(2),
        MyKind::Int32 | MyKind::UInt32 | MyKind::Float32 => fixed(4),
        MyKind::Int64 | MyKind::UInt64 | MyKind::Float64 => fixed(8),
        MyKind::Bits => lenenc_value(vec(any::<u8>(), 0..10)),
        MyKind::Decimal(..) => lenenc_value(decimal_text()),
        MyKind::Text | MyKind::Binary => lenenc_value(prop_oneof![
            "\\PC{0,12}".prop_map(String::into_bytes),
            vec(any::<u8>(), 0..16),
        ]),
        MyKind::Date | MyKind::DateTime | MyKind::Timestamp => my_datetime(),
        MyKind::Time => my_time(),
    }
}

/// Columns, and binary rows for them (`None` values are NULL in the row's bitmap).
fn my_rows(max_rows: usize) -> BoxedStrategy<(Vec<WireKind>, Rows)> {
    vec(my_kind(), 1..5)
        .prop_flat_map(move |kinds| {
            let row: Vec<_> = kinds
                .iter()
                .map(|(k, bits)| option::weighted(0.85, my_scalar(*k, *bits)))
                .collect();
            (Just(kinds), vec(row, 0..max_rows))
        })
        .boxed()
}

/// A binary row: the 0x00 header, the NULL bitmap (offset by 2 bits), the values.
fn my_row(values: &[Option<Vec<u8>>]) -> Vec<u8> {
    let mut bitmap = vec![0u8; (values.len() + 9) / 8];
    let mut data = Vec::new();
    for (i, v) in values.iter().enumerate() {
        match v {
            None => bitmap[(i + 2) / 8] |= 1 << ((i + 2) % 8),
            Some(bytes) => data.extend_from_slice(bytes),
        }
    }
    let mut row = vec![0];
    row.extend(bitmap);
    row.extend(data);
    row
}

fn my_builder(kinds: &[WireKind]) -> MyBatchBuilder {
    let columns: Vec<MyColumn> = kinds
        .iter()
        .enumerate()
        .map(|(i, (kind, _))| MyColumn {
            name: format!("c{i}"),
            kind: *kind,
            source_type: "t".into(),
            logical: None,
        })
        .collect();
    let bits = kinds.iter().map(|(_, bits)| *bits).collect();
    MyBatchBuilder::new(my_schema(&columns), columns, bits, 4)
}

// ---------------------------------------------------------------------------------
// Targets: MySQL
// ---------------------------------------------------------------------------------

/// A server's answer after a login, then `valid` made hostile.
fn my_after_login(
    deprecate_eof: bool,
    valid: BoxedStrategy<Vec<Vec<u8>>>,
) -> BoxedStrategy<Vec<u8>> {
    hostile(valid, my_frame)
        .prop_map(move |answer| [my_logged_in(deprecate_eof), answer].concat())
        .boxed()
}

/// The answer to COM_QUERY: result sets (possibly several), an OK, or an error.
fn my_text_result(deprecate_eof: bool) -> BoxedStrategy<Vec<Vec<u8>>> {
    let set = (1usize..4).prop_flat_map(|cols| {
        vec(vec(option::of(vec(any::<u8>(), 0..12)), cols..=cols), 0..4)
            .prop_map(move |rows| (cols, rows))
    });
    prop_oneof![
        6 => vec(set, 1..3).prop_map(move |sets| {
            let mut units = Vec::new();
            let last = sets.len() - 1;
            for (i, (cols, rows)) in sets.into_iter().enumerate() {
                let mut count = Vec::new();
                lenenc_int(&mut count, cols as u64);
                units.push(count);
                my_coldefs(&mut units, cols, deprecate_eof);
                for r in rows {
                    let mut p = Vec::new();
                    for v in r {
                        match v {
                            None => p.push(0xfb),
                            Some(bytes) => lenenc_str(&mut p, &bytes),
                        }
                    }
                    units.push(p);
                }
                units.push(my_end(deprecate_eof, i < last));
            }
            units
        }),
        1 => Just(vec![my_ok(0)]),
        1 => Just(vec![my_err()]),
    ]
    .boxed()
}

/// The answer to COM_STMT_PREPARE: statement id, counts, parameter and column definitions.
fn my_prepare_result(deprecate_eof: bool) -> BoxedStrategy<Vec<Vec<u8>>> {
    (
        0usize..5,
        prop_oneof![4 => Just(0usize), 1 => 1usize..3],
        any::<bool>(),
    )
        .prop_map(move |(cols, params, fail)| {
            if fail {
                return vec![my_err()];
            }
            let mut head = vec![0];
            head.extend(1u32.to_le_bytes());
            head.extend((cols as u16).to_le_bytes());
            head.extend((params as u16).to_le_bytes());
            head.push(0);
            head.extend(0u16.to_le_bytes());
            let mut units = vec![head];
            my_coldefs(&mut units, params, deprecate_eof);
            my_coldefs(&mut units, cols, deprecate_eof);
            units
        })
        .boxed()
}

/// Binary rows of these columns as the answer to COM_STMT_EXECUTE.
fn my_binary_result() -> BoxedStrategy<(Vec<WireKind>, Vec<u8>)> {
    (any::<bool>(), my_rows(6))
        .prop_flat_map(|(deprecate_eof, (kinds, rows))| {
            let mut count = Vec::new();
            lenenc_int(&mut count, kinds.len() as u64);
            let mut units = vec![count];
            my_coldefs(&mut units, kinds.len(), deprecate_eof);
            for r in &rows {
                units.push(my_row(r));
            }
            units.push(my_end(deprecate_eof, false));
            (
                Just(kinds),
                my_after_login(deprecate_eof, Just(units).boxed()),
            )
        })
        .boxed()
}

/// Packets whose headers announce up to 16 MiB (a payload of 0xffffff bytes continues
/// in the next packet) while far fewer bytes follow.
fn my_announced_packets() -> BoxedStrategy<Vec<u8>> {
    vec(
        (
            prop_oneof![Just(0xff_ffffu32), Just(0xff_fffe), 0u32..48],
            vec(any::<u8>(), 0..48),
            any::<u8>(),
        ),
        1..6,
    )
    .prop_map(|packets| {
        let mut out = my_logged_in(false);
        for (announced, payload, seq) in packets {
            out.extend_from_slice(&announced.to_le_bytes()[..3]);
            out.push(seq);
            out.extend(payload);
        }
        out
    })
    .boxed()
}

proptest! {
    #![proptest_config(config(256))]

    /// The handshake (greeting, native and caching_sha2 authentication, auth switch,
    /// errors) against a hostile server, under every channel.
    #[test]
    fn login(
        bytes in hostile(my_login_exchange().boxed(), my_frame),
        channel in any_channel(),
        database in any::<bool>(),
        allow_unverified in any::<bool>(),
    ) {
        let mut params = my_params();
        params.allow_unverified_password = allow_unverified;
        if !database {
            params.protocol.database = None;
        }
        let _ = bounded(move |_| with_my(bytes, channel, params, |_| Ok(())));
    }

    /// Text result sets of COM_QUERY (several per query, EOF or DEPRECATE_EOF endings).
    #[test]
    fn text_query(
        bytes in any::<bool>().prop_flat_map(|d| my_after_login(d, my_text_result(d)))
    ) {
        let _ = bounded(move |_| {
            with_my(bytes, Channel::Unix, my_params(), |conn| conn.query("SELECT 1").map(|_| ()))
        });
    }

    /// Prepared statement metadata.
    #[test]
    fn prepare(
        bytes in any::<bool>().prop_flat_map(|d| my_after_login(d, my_prepare_result(d)))
    ) {
        let _ = bounded(move |_| {
            with_my(bytes, Channel::Unix, my_params(), |conn| conn.prepare("SELECT 1").map(|_| ()))
        });
    }

    /// Binary rows of COM_STMT_EXECUTE decoded into a batch of several column kinds.
    #[test]
    fn binary_rows((kinds, bytes) in my_binary_result()) {
        let _ = bounded(move |sink| {
            with_my(bytes, Channel::Unix, my_params(), |conn| {
                let limits = small_limits();
                let mut builder = my_builder(&kinds);
                conn.execute_statement(1, |row| {
                    make_room(&mut builder, row.len(), &limits, sink)?;
                    builder.append_row(row)
                })?;
                flush(&mut builder, sink)
            })
        });
    }

    /// Multi-packet reassembly: headers announcing 0xffffff bytes that never arrive must
    /// not make the reader allocate what they announce.
    #[test]
    fn reassembly(bytes in my_announced_packets(), statement in any::<bool>()) {
        let _ = bounded(move |_| {
            with_my(bytes, Channel::Unix, my_params(), |conn| {
                if statement {
                    conn.execute_statement(1, |_| Ok(())).map(|_| ())
                } else {
                    conn.query("SELECT 1").map(|_| ())
                }
            })
        });
    }
}

proptest! {
    #![proptest_config(config(1024))]

    /// MySQL binary rows (`MyBatchBuilder::append_row`) for every column kind, with
    /// plausible and mutated rows, cut into small batches.
    #[test]
    fn binary_row_decoder(
        (kinds, rows) in my_rows(6).prop_flat_map(|(kinds, rows)| {
            let payloads: Vec<Vec<u8>> = rows.iter().map(|r| my_row(r)).collect();
            (Just(kinds), Just(payloads).prop_perturb(|mut p, mut rng| {
                for row in &mut p {
                    if rng.random_bool(0.3) && !row.is_empty() {
                        let at = rng.random_range(0..row.len());
                        row[at] = rng.random();
                    }
                    if rng.random_bool(0.1) {
                        row.truncate(rng.random_range(0..=row.len()));
                    }
                }
                p
            }))
        })
    ) {
        let _ = bounded(move |sink| {
            let received = rows.iter().map(Vec::len).sum::<usize>();
            let probe = Probe::start();
            let limits = small_limits();
            let mut builder = my_builder(&kinds);
            for row in &rows {
                make_room(&mut builder, row.len(), &limits, sink)?;
                builder.append_row(row)?;
            }
            flush(&mut builder, sink)?;
            assert_bounded("peak allocation", probe.peak(), received);
            Ok(())
        });
    }
}

// ---------------------------------------------------------------------------------
// Regressions: inputs the targets found, and cases too large to fuzz
// ---------------------------------------------------------------------------------

mod regressions {
    use super::*;

    /// A real 16 MiB + 10 byte text row, assembled from two packets.
    #[test]
    fn reassembles_a_row_larger_than_one_packet() {
        let value = vec![b'x'; 0xff_ffff];
        let mut row = Vec::new();
        lenenc_str(&mut row, &value);
        let mut answer = vec![vec![1], my_coldef("c", 253, 0, 0)];
        answer.push(row);
        answer.push(my_end(true, false));
        let mut bytes = my_logged_in(true);
        for (seq, p) in answer.iter().enumerate() {
            for (i, chunk) in p.chunks(0xff_ffff).enumerate() {
                bytes.extend(my_packet((seq + i) as u8, chunk));
            }
            if p.len() % 0xff_ffff == 0 {
                bytes.extend(my_packet(seq as u8, b""));
            }
        }
        let rows = bounded(move |_| {
            with_my(bytes, Channel::Unix, my_params(), |conn| {
                let rows = conn.query("SELECT 1")?;
                assert_eq!(rows.len(), 1);
                assert_eq!(rows[0][0].as_ref().map(String::len), Some(0xff_ffff));
                Ok(())
            })
        });
        rows.expect("the row arrives whole");
    }

    /// Found by `binary_rows`: a binary TIME of 4 billion days overflowed its
    /// microseconds (a panic in debug builds, a wrapped value in release builds).
    #[test]
    fn time_of_four_billion_days_is_an_error() {
        let mut builder = my_builder(&[(MyKind::Time, false)]);
        let mut row = vec![0, 0, 12, 0];
        row.extend(u32::MAX.to_le_bytes());
        row.extend([23, 59, 59]);
        row.extend(999_999u32.to_le_bytes());
        let err = builder.append_row(&row).expect_err("refused");
        assert!(err.to_string().contains("TIME out of range"), "{err}");
    }

    /// Found by `prepare`: a 12-byte prepare answer announcing 65535 columns made room
    /// for all of them before any arrived (2.6 MB).
    #[test]
    fn prepare_announcing_65535_columns_allocates_little() {
        let mut head = vec![0];
        head.extend(1u32.to_le_bytes());
        head.extend(u16::MAX.to_le_bytes());
        head.extend(0u16.to_le_bytes());
        head.push(0);
        head.extend(0u16.to_le_bytes());
        let bytes = [my_logged_in(true), my_packet(1, &head)].concat();
        let outcome = bounded(move |_| {
            with_my(bytes, Channel::Unix, my_params(), |conn| {
                conn.prepare("SELECT 1").map(|_| ())
            })
        });
        assert!(
            matches!(outcome, Err(Error::ConnectionLost(_))),
            "{outcome:?}"
        );
    }
}
