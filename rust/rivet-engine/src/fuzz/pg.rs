//! PostgreSQL: the login, the answers to queries, describes, binary FETCHes and COPY,
//! and every value decoder.

use std::time::{Duration, Instant};

use arrow_array::{Array, RecordBatch};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{Index, select};

use super::{
    FakeServer, Probe, Rows, any_channel, apply, assert_bounded, assert_decimals_fit, bounded,
    config, edit, hostile, small_limits, tls,
};
use crate::batch::{BatchLimits, RowBatch, flush, make_room};
use crate::error::{Error, Result};
use crate::net::{Channel, OverLink};
use crate::pg::batch::{PgBatchBuilder, PgColumn};
use crate::pg::connect::{ConnectParams, PgSettings};
use crate::pg::decode::{Capacity, ColumnBuilder};
use crate::pg::tuple::{CopyDecoder, decode_tuple};
use crate::pg::types::PgKind;
use crate::pg::wire::PgConnection;
use crate::pg::wire::auth::BindingPolicy;
use crate::stream::BatchSink;
use crate::tls::TlsMode;

// ---------------------------------------------------------------------------------
// PostgreSQL messages
// ---------------------------------------------------------------------------------

/// A message as a unit: its type byte, then its body.
fn pg_unit(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut u = vec![tag];
    u.extend_from_slice(body);
    u
}

/// Frame PostgreSQL messages: type byte, length (counting itself), body.
pub(super) fn pg_frame(units: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for u in units {
        let Some((&tag, body)) = u.split_first() else {
            continue;
        };
        out.push(tag);
        out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        out.extend_from_slice(body);
    }
    out
}

fn pg_auth(code: i32, rest: &[u8]) -> Vec<u8> {
    let mut body = code.to_be_bytes().to_vec();
    body.extend_from_slice(rest);
    pg_unit(b'R', &body)
}

const PG_ERROR: &[u8] = b"SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed\0\0";
const PG_NOTICE: &[u8] = b"SNOTICE\0C00000\0Mhello\0\0";

fn pg_ready() -> Vec<u8> {
    pg_unit(b'Z', b"I")
}

/// What a server sends after the startup message, up to ReadyForQuery (or an error).
pub(super) fn pg_login_exchange() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let scram = (
        vec(any::<u8>(), 0..24),
        select(vec![1u32, 4096, 100_000, 100_001, u32::MAX]),
    )
        .prop_map(|(nonce, iterations)| {
            let mut first = b"r=".to_vec();
            first.extend(nonce.iter().map(|b| b'a' + b % 26));
            first.extend_from_slice(format!(",s=c2FsdA==,i={iterations}").as_bytes());
            vec![
                pg_auth(10, b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0"),
                pg_auth(11, &first),
                pg_auth(12, b"v=dmVyaWZpZXI="),
            ]
        });
    let auth = prop_oneof![
        Just(vec![]),
        Just(vec![pg_auth(3, b"")]),
        any::<[u8; 4]>().prop_map(|salt| vec![pg_auth(5, &salt)]),
        scram,
        any::<i32>().prop_map(|code| vec![pg_auth(code, b"")]),
    ];
    let param = (
        select(vec!["server_version", "server_encoding", "TimeZone", "x"]),
        "[a-zA-Z0-9 .]{0,12}",
    )
        .prop_map(|(k, v)| pg_unit(b'S', format!("{k}\0{v}\0").as_bytes()));
    let key = (any::<i32>(), vec(any::<u8>(), 0..40)).prop_map(|(pid, secret)| {
        let mut body = pid.to_be_bytes().to_vec();
        body.extend(secret);
        pg_unit(b'K', &body)
    });
    (
        auth,
        vec(param, 0..4),
        option::of(key),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(mut units, params, key, notice, fail)| {
            if notice {
                units.push(pg_unit(b'N', PG_NOTICE));
            }
            if fail {
                units.push(pg_unit(b'E', PG_ERROR));
                return units;
            }
            units.push(pg_auth(0, b""));
            units.extend(params);
            units.extend(key);
            units.push(pg_ready());
            units
        })
}

/// What a trusting server sends to log in: AuthenticationOk, ReadyForQuery.
fn pg_logged_in() -> Vec<u8> {
    pg_frame(&[pg_auth(0, b""), pg_ready()])
}

pub(super) fn pg_params(
    password: bool,
    allow_unverified: bool,
    binding: BindingPolicy,
) -> ConnectParams {
    ConnectParams {
        host: "127.0.0.1".into(),
        port: 5432,
        user: "u".into(),
        password: password.then(|| "pw".into()),
        tls: tls(TlsMode::Disable),
        connect_timeout: Duration::from_secs(10),
        keepalive: None,
        read_timeout: Some(Duration::from_secs(10)),
        allow_unverified_password: allow_unverified,
        dial: None,
        protocol: PgSettings {
            database: "d".into(),
            application_name: "rivet-fuzz".into(),
            channel_binding: binding,
            replication: false,
        },
    }
}

/// Log in to a fake server that sends `bytes`, run `work` on the connection if the
/// login succeeded, and check the connection's memory stayed bounded.
fn with_pg(
    bytes: Vec<u8>,
    channel: Channel,
    params: ConnectParams,
    work: impl FnOnce(&mut PgConnection) -> Result<()>,
) -> Result<()> {
    let received = bytes.len();
    let probe = Probe::start();
    let (socket, server) = FakeServer::pair(bytes);
    let (mut conn, login) =
        PgConnection::login_over(socket, channel, params.connect_timeout, |c| {
            c.login(&params)
        });
    let outcome = login.and_then(|()| work(&mut conn));
    assert_bounded("receive buffer", conn.buffered_capacity(), received);
    drop(conn);
    server.join();
    assert_bounded("peak allocation", probe.peak(), received);
    outcome
}

// PostgreSQL values in their binary forms.

fn pg_leaf_kind() -> BoxedStrategy<PgKind> {
    prop_oneof![
        4 => select(vec![
            PgKind::Bool,
            PgKind::Int2,
            PgKind::Int4,
            PgKind::Int8,
            PgKind::Oid,
            PgKind::Float4,
            PgKind::Float8,
            PgKind::Text,
            PgKind::Jsonb,
            PgKind::Bytea,
            PgKind::Date,
            PgKind::Time,
            PgKind::Timestamp,
            PgKind::Timestamptz,
            PgKind::Interval,
            PgKind::Uuid,
        ]),
        // numeric(p, s) to decimal128 (p <= 38) and decimal256, at several scales.
        1 => (1u8..=76)
            .prop_flat_map(|p| (Just(p), 0..=p as i8))
            .prop_map(|(precision, scale)| PgKind::Numeric { precision, scale }),
    ]
    .boxed()
}

fn pg_kind() -> BoxedStrategy<PgKind> {
    prop_oneof![
        3 => pg_leaf_kind(),
        1 => pg_leaf_kind().prop_map(|k| PgKind::List(Box::new(k))),
    ]
    .boxed()
}

/// `width` bytes: boundary values more often than chance would pick them.
fn fixed_bytes(width: usize) -> BoxedStrategy<Vec<u8>> {
    let edge = select(vec![
        0i64,
        1,
        -1,
        i64::MAX,
        i64::MIN,
        i64::MAX - 1,
        i64::MIN + 1,
    ]);
    prop_oneof![
        vec(any::<u8>(), width..=width),
        edge.prop_map(move |v| {
            let all = v.to_be_bytes();
            match width {
                8 => all.to_vec(),
                // Narrower: the same boundary at that width (MAX, MIN, ...).
                _ => {
                    let narrow =
                        v.signum() * ((1i64 << (8 * width - 1)) - 1) - i64::from(v == i64::MIN);
                    narrow.to_be_bytes()[8 - width..].to_vec()
                }
            }
        }),
    ]
    .boxed()
}

/// A binary numeric: base-10000 digits (sometimes out of range), weight, sign, scale.
fn pg_numeric() -> BoxedStrategy<Vec<u8>> {
    (
        vec(prop_oneof![4 => 0u16..10_000, 1 => any::<u16>()], 0..12),
        prop_oneof![-12i16..12, any::<i16>()],
        select(vec![0u16, 0x4000, 0xC000, 0xD000, 0xF000, 0x1234]),
        prop_oneof![0u16..40, any::<u16>()],
        option::weighted(0.1, any::<u16>()),
    )
        .prop_map(|(digits, weight, sign, dscale, count)| {
            let mut v = count.unwrap_or(digits.len() as u16).to_be_bytes().to_vec();
            v.extend(weight.to_be_bytes());
            v.extend(sign.to_be_bytes());
            v.extend(dscale.to_be_bytes());
            for d in digits {
                v.extend(d.to_be_bytes());
            }
            v
        })
        .boxed()
}

/// A binary array of `inner` values: dimensions, flags, element type, bounds, elements.
fn pg_array(inner: &PgKind) -> BoxedStrategy<Vec<u8>> {
    (
        select(vec![0i32, 1, 1, 1, 2, -1, i32::MAX]),
        any::<i32>(),
        vec(option::of(pg_scalar(inner)), 0..6),
        option::weighted(0.2, any::<i32>()),
        any::<i32>(),
    )
        .prop_map(|(ndim, flags, elements, count, lower)| {
            let mut v = ndim.to_be_bytes().to_vec();
            v.extend(flags.to_be_bytes());
            v.extend(23u32.to_be_bytes());
            for _ in 0..ndim.clamp(0, 2) {
                v.extend(count.unwrap_or(elements.len() as i32).to_be_bytes());
                v.extend(lower.to_be_bytes());
            }
            for e in elements {
                match e {
                    None => v.extend((-1i32).to_be_bytes()),
                    Some(bytes) => {
                        v.extend((bytes.len() as i32).to_be_bytes());
                        v.extend(bytes);
                    }
                }
            }
            v
        })
        .boxed()
}

/// A plausible binary value of `kind` (not necessarily valid).
fn pg_scalar(kind: &PgKind) -> BoxedStrategy<Vec<u8>> {
    match kind {
        PgKind::Bool => vec(0u8..3, 1..=1).boxed(),
        PgKind::Int2 => fixed_bytes(2),
        PgKind::Int4 | PgKind::Oid | PgKind::Float4 | PgKind::Date => fixed_bytes(4),
        PgKind::Int8 | PgKind::Float8 | PgKind::Time | PgKind::Timestamp => fixed_bytes(8),
        PgKind::Timestamptz => fixed_bytes(8),
        PgKind::Interval | PgKind::Uuid => vec(any::<u8>(), 16..=16).boxed(),
        PgKind::Numeric { .. } => pg_numeric(),
        PgKind::Text | PgKind::Bytea => prop_oneof![
            "\\PC{0,12}".prop_map(String::into_bytes),
            vec(any::<u8>(), 0..16),
        ]
        .boxed(),
        PgKind::Jsonb => (select(vec![1u8, 1, 2]), "\\PC{0,12}")
            .prop_map(|(version, text)| {
                let mut v = vec![version];
                v.extend(text.into_bytes());
                v
            })
            .boxed(),
        PgKind::List(inner) => pg_array(inner),
    }
}

/// A value of `kind` as a hostile server may send it: plausible, NULL, or noise.
fn pg_value(kind: &PgKind) -> BoxedStrategy<Option<Vec<u8>>> {
    prop_oneof![
        6 => pg_scalar(kind).prop_map(Some),
        1 => Just(None),
        2 => (pg_scalar(kind), vec(edit(), 1..3)).prop_map(|(mut v, edits)| {
            apply(&mut v, &edits);
            Some(v)
        }),
        1 => vec(any::<u8>(), 0..24).prop_map(Some),
    ]
    .boxed()
}

/// Columns of these kinds, and rows of values for them.
fn pg_rows(max_rows: usize) -> BoxedStrategy<(Vec<PgKind>, Rows)> {
    vec(pg_kind(), 1..4)
        .prop_flat_map(move |kinds| {
            let row: Vec<_> = kinds.iter().map(pg_value).collect();
            (Just(kinds), vec(row, 0..max_rows))
        })
        .boxed()
}

fn pg_columns(kinds: &[PgKind]) -> Vec<PgColumn> {
    kinds
        .iter()
        .enumerate()
        .map(|(i, kind)| PgColumn {
            name: format!("c{i}"),
            kind: kind.clone(),
            source_type: "t".into(),
            logical: None,
        })
        .collect()
}

/// A tuple: field count, then each value with its length (-1 for NULL).
fn pg_tuple(values: &[Option<Vec<u8>>]) -> Vec<u8> {
    let mut v = (values.len() as i16).to_be_bytes().to_vec();
    for value in values {
        match value {
            None => v.extend((-1i32).to_be_bytes()),
            Some(bytes) => {
                v.extend((bytes.len() as i32).to_be_bytes());
                v.extend_from_slice(bytes);
            }
        }
    }
    v
}

fn pg_row_description(types: &[(u32, i32)]) -> Vec<u8> {
    let mut v = (types.len() as i16).to_be_bytes().to_vec();
    for (i, (oid, typmod)) in types.iter().enumerate() {
        v.extend(format!("col{i}\0").as_bytes());
        v.extend(16384u32.to_be_bytes());
        v.extend((i as i16 + 1).to_be_bytes());
        v.extend(oid.to_be_bytes());
        v.extend((-1i16).to_be_bytes());
        v.extend(typmod.to_be_bytes());
        v.extend(0i16.to_be_bytes());
    }
    v
}

// ---------------------------------------------------------------------------------
// Targets
// ---------------------------------------------------------------------------------

/// A server's answer after a trusting login, then `valid` made hostile.
fn pg_after_login(valid: BoxedStrategy<Vec<Vec<u8>>>) -> BoxedStrategy<Vec<u8>> {
    hostile(valid, pg_frame)
        .prop_map(|answer| [pg_logged_in(), answer].concat())
        .boxed()
}

/// The answer to an extended-protocol query with text rows.
fn pg_text_result() -> BoxedStrategy<Vec<Vec<u8>>> {
    (
        vec(vec(option::of(vec(any::<u8>(), 0..12)), 0..4), 0..5),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(rows, describe, fail)| {
            let mut units = vec![pg_unit(b'1', b""), pg_unit(b'2', b"")];
            if describe {
                units.push(pg_unit(b'T', &pg_row_description(&[(25, -1)])));
            }
            for r in &rows {
                units.push(pg_unit(b'D', &pg_tuple(r)));
            }
            if fail {
                units.push(pg_unit(b'E', PG_ERROR));
            } else {
                units.push(pg_unit(b'C', format!("SELECT {}\0", rows.len()).as_bytes()));
            }
            units.push(pg_ready());
            units
        })
        .boxed()
}

/// The answer to Parse + Describe: parameters, then row description or NoData.
fn pg_describe_result() -> BoxedStrategy<Vec<Vec<u8>>> {
    (
        vec(any::<u32>(), 0..3),
        option::of(vec(
            (select(vec![16u32, 20, 23, 25, 1700, 1007, 0]), any::<i32>()),
            0..5,
        )),
        any::<bool>(),
    )
        .prop_map(|(params, fields, fail)| {
            let mut t = (params.len() as i16).to_be_bytes().to_vec();
            for oid in params {
                t.extend(oid.to_be_bytes());
            }
            let mut units = vec![pg_unit(b'1', b""), pg_unit(b't', &t)];
            match fields {
                Some(f) => units.push(pg_unit(b'T', &pg_row_description(&f))),
                None => units.push(pg_unit(b'n', b"")),
            }
            if fail {
                units.push(pg_unit(b'E', PG_ERROR));
            }
            units.push(pg_ready());
            units
        })
        .boxed()
}

/// Rows of these columns as the answer to a binary FETCH.
fn pg_binary_result() -> BoxedStrategy<(Vec<PgKind>, Vec<u8>)> {
    pg_rows(6)
        .prop_flat_map(|(kinds, rows)| {
            let mut units = vec![pg_unit(b'1', b""), pg_unit(b'2', b"")];
            for r in &rows {
                units.push(pg_unit(b'D', &pg_tuple(r)));
            }
            units.push(pg_unit(b'C', format!("FETCH {}\0", rows.len()).as_bytes()));
            units.push(pg_ready());
            (Just(kinds), pg_after_login(Just(units).boxed()))
        })
        .boxed()
}

/// Rows of these columns as a binary COPY stream cut into CopyData messages anywhere.
fn pg_copy_result() -> BoxedStrategy<(Vec<PgKind>, Vec<u8>)> {
    (pg_rows(6), vec(any::<Index>(), 0..4))
        .prop_flat_map(|((kinds, rows), cuts)| {
            let data = pg_copy_data(&rows);
            let mut at: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
            at.push(0);
            at.push(data.len());
            at.sort_unstable();
            let mut header = vec![1u8];
            header.extend((kinds.len() as i16).to_be_bytes());
            for _ in &kinds {
                header.extend(1i16.to_be_bytes());
            }
            let mut units = vec![
                pg_unit(b'1', b""),
                pg_unit(b'2', b""),
                pg_unit(b'H', &header),
            ];
            for w in at.windows(2) {
                units.push(pg_unit(b'd', &data[w[0]..w[1]]));
            }
            units.push(pg_unit(b'c', b""));
            units.push(pg_unit(b'C', format!("COPY {}\0", rows.len()).as_bytes()));
            units.push(pg_ready());
            (Just(kinds), pg_after_login(Just(units).boxed()))
        })
        .boxed()
}

proptest! {
    #![proptest_config(config(256))]

    /// Startup and authentication (trust, cleartext, MD5, SCRAM, errors, parameter
    /// reports, BackendKeyData) against a hostile server, under every channel and policy.
    #[test]
    fn login(
        bytes in hostile(pg_login_exchange().boxed(), pg_frame),
        channel in any_channel(),
        password in any::<bool>(),
        allow_unverified in any::<bool>(),
        binding in select(vec![BindingPolicy::Prefer, BindingPolicy::Require, BindingPolicy::Disable]),
    ) {
        let params = pg_params(password, allow_unverified, binding);
        let _ = bounded(move |_| with_pg(bytes, channel, params, |_| Ok(())));
    }

    /// Text rows of `query` (extended protocol) and `execute` (simple protocol).
    #[test]
    fn text_query(bytes in pg_after_login(pg_text_result()), extended in any::<bool>()) {
        let params = pg_params(false, false, BindingPolicy::Prefer);
        let _ = bounded(move |_| {
            with_pg(bytes, Channel::Unix, params, |conn| {
                if extended {
                    conn.query("SELECT 1").map(|_| ())
                } else {
                    conn.execute("BEGIN")
                }
            })
        });
    }

    /// Parameter and row descriptions of `describe`.
    #[test]
    fn describe(bytes in pg_after_login(pg_describe_result())) {
        let params = pg_params(false, false, BindingPolicy::Prefer);
        let _ = bounded(move |_| {
            with_pg(bytes, Channel::Unix, params, |conn| conn.describe("SELECT 1").map(|_| ()))
        });
    }

    /// Binary rows of a FETCH, decoded into a batch of several column kinds.
    #[test]
    fn binary_rows((kinds, bytes) in pg_binary_result()) {
        let params = pg_params(false, false, BindingPolicy::Prefer);
        let _ = bounded(move |sink| {
            with_pg(bytes, Channel::Unix, params, |conn| {
                let limits = small_limits();
                let mut builder = PgBatchBuilder::new(pg_columns(&kinds), 4);
                conn.send_binary_query("FETCH FORWARD 10 FROM c")?;
                conn.read_binary_result(|row| {
                    make_room(&mut builder, row.len(), &limits, sink)?;
                    decode_tuple(row, &mut builder)
                })?;
                flush(&mut builder, sink)
            })
        });
    }

    /// A binary COPY stream whose tuples are split across CopyData messages anywhere.
    #[test]
    fn copy_out((kinds, bytes) in pg_copy_result()) {
        let params = pg_params(false, false, BindingPolicy::Prefer);
        let _ = bounded(move |sink| {
            with_pg(bytes, Channel::Unix, params, |conn| {
                let limits = small_limits();
                let mut builder = PgBatchBuilder::new(pg_columns(&kinds), 4);
                let mut decoder = CopyDecoder::default();
                conn.copy_out("COPY (SELECT 1) TO STDOUT (FORMAT binary)", |data| {
                    decoder.feed(data, &mut builder, &limits, sink)
                })?;
                decoder.finish(&mut builder, sink)
            })
        });
    }
}

/// A binary COPY stream of `rows`: signature, flags, no extension, tuples, trailer.
fn pg_copy_data(rows: &Rows) -> Vec<u8> {
    let mut data = b"PGCOPY\n\xff\r\n\0".to_vec();
    data.extend(0i32.to_be_bytes());
    data.extend(0i32.to_be_bytes());
    for r in rows {
        data.extend(pg_tuple(r));
    }
    data.extend([0xff, 0xff]);
    data
}

/// Decode a COPY stream fed in `chunks` into one batch.
fn decode_copy(kinds: &[PgKind], chunks: &[&[u8]], sink: &BatchSink) -> Result<RecordBatch> {
    let limits = BatchLimits::new(1000, 1 << 30)?;
    let mut builder = PgBatchBuilder::new(pg_columns(kinds), 4);
    let mut decoder = CopyDecoder::default();
    for chunk in chunks {
        decoder.feed(chunk, &mut builder, &limits, sink)?;
    }
    // Take the rows before `finish` hands them to the sink; it then checks the ending.
    let batch = RowBatch::finish(&mut builder)?;
    decoder.finish(&mut builder, sink)?;
    Ok(batch)
}

proptest! {
    #![proptest_config(config(256))]

    /// Cutting a COPY stream into CopyData messages anywhere changes nothing: the same
    /// rows, or the same error, as the stream in one piece.
    #[test]
    fn copy_cuts_change_nothing((kinds, rows) in pg_rows(8), cuts in vec(any::<Index>(), 0..8)) {
        let _ = bounded(move |sink| {
            let data = pg_copy_data(&rows);
            let mut at: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
            at.extend([0, data.len()]);
            at.sort_unstable();
            let pieces: Vec<&[u8]> = at.windows(2).map(|w| &data[w[0]..w[1]]).collect();
            match (decode_copy(&kinds, &[&data], sink), decode_copy(&kinds, &pieces, sink)) {
                (Ok(whole), Ok(cut)) => assert_eq!(whole, cut),
                (Err(whole), Err(cut)) => assert_eq!(whole.to_string(), cut.to_string()),
                (whole, cut) => panic!("in one piece: {whole:?}; cut: {cut:?}"),
            }
            Ok(())
        });
    }
}

proptest! {
    #![proptest_config(config(1024))]

    /// Every value decoder (`ColumnBuilder::append`) with plausible and arbitrary bytes:
    /// ints, floats, numeric to decimal128/256 at several scales, text, jsonb, bytea,
    /// uuid, dates and times, intervals, and arrays of them. Decimals must fit their precision.
    #[test]
    fn values(
        (kind, values) in pg_kind().prop_flat_map(|k| {
            let value = pg_value(&k);
            (Just(k), vec(value, 1..12))
        })
    ) {
        let _ = bounded(move |_| {
            let received = values.iter().flatten().map(Vec::len).sum::<usize>();
            let probe = Probe::start();
            let mut builder = ColumnBuilder::new(&kind, Capacity::rows(4));
            for v in &values {
                // The first bad value ends a scan: its builder is never finished.
                builder.append(v.as_deref()).map_err(|m| Error::decode("c", m))?;
            }
            let array = builder.finish().map_err(|m| Error::decode("c", m))?;
            assert_eq!(array.len(), values.len());
            assert_decimals_fit(array.as_ref());
            assert_bounded("peak allocation", probe.peak(), received);
            Ok(())
        });
    }
}

// ---------------------------------------------------------------------------------
// Regressions: inputs the targets found, and cases too slow or large to fuzz
// ---------------------------------------------------------------------------------

mod regressions {
    use super::*;

    /// A 2-byte RowDescription or DataRow announcing 32767 fields made room for all of
    /// them before reading any (1.3 MB and 0.8 MB).
    #[test]
    fn messages_announcing_32767_fields_allocate_little() {
        for tag in [b'T', b'D'] {
            let answer = [pg_unit(b'1', b""), pg_unit(tag, &i16::MAX.to_be_bytes())];
            let bytes = [pg_logged_in(), pg_frame(&answer)].concat();
            let outcome = bounded(move |_| {
                with_pg(
                    bytes,
                    Channel::Unix,
                    pg_params(false, false, BindingPolicy::Prefer),
                    |conn| {
                        if tag == b'T' {
                            conn.describe("SELECT 1").map(|_| ())
                        } else {
                            conn.query("SELECT 1").map(|_| ())
                        }
                    },
                )
            });
            assert!(
                matches!(outcome, Err(Error::ConnectionLost(_))),
                "{outcome:?}"
            );
        }
    }

    /// One tuple of 32767 fields sent in 1-byte CopyData messages: each message rescanned
    /// the tuple's field headers from its start, 32767 steps per byte received (6 s for
    /// these 131 kB in a release build, over 30 s in a debug build). Now each byte is
    /// scanned once.
    #[test]
    fn a_copy_tuple_in_one_byte_messages_is_scanned_once() {
        let outcome = bounded(|sink| {
            let mut data = b"PGCOPY\n\xff\r\n\0".to_vec();
            data.extend([0u8; 8]);
            data.extend(i16::MAX.to_be_bytes());
            for _ in 0..i16::MAX {
                data.extend(0i32.to_be_bytes());
            }
            let mut builder = PgBatchBuilder::new(pg_columns(&[PgKind::Int4]), 4);
            let mut decoder = CopyDecoder::default();
            let started = Instant::now();
            let mut outcome = Ok(());
            for byte in data.chunks(1) {
                outcome = decoder.feed(byte, &mut builder, &small_limits(), sink);
                if outcome.is_err() {
                    break;
                }
            }
            let took = started.elapsed();
            assert!(took < Duration::from_secs(5), "{took:?}");
            outcome
        });
        // All of the tuple was scanned: it is then refused for its field count.
        let err = outcome.expect_err("a tuple of 32767 fields for 1 column");
        assert!(err.to_string().contains("wrong field count"), "{err}");
    }
}
