use proptest::prelude::*;

use super::*;
use crate::mysql::types::code as column;

/// The bytes of `golden.txt`'s log.
fn golden() -> Vec<u8> {
    let hex: String = include_str!("golden.txt")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Every event of the log, checksums verified (the format event says they are there).
fn events(log: &[u8]) -> Vec<Event<'_>> {
    assert_eq!(log[..4], MAGIC);
    let (format, _) = event(&log[4..], false).expect("format event");
    assert_eq!(format.header.kind, kind::FORMAT_DESCRIPTION);
    let checksum = format_has_checksum(format.body);
    assert!(checksum);
    let mut at = 4;
    let mut out = Vec::new();
    while at < log.len() {
        let (e, size) = event(&log[at..], checksum).expect("event");
        assert_eq!(e.header.next_position as usize, at + size);
        out.push(e);
        at += size;
    }
    out
}

fn bytes<'a>(v: &Option<Value<'a>>) -> &'a [u8] {
    match v {
        Some(Value::Bytes(b)) => b,
        other => panic!("not bytes: {other:?}"),
    }
}

#[test]
fn a_servers_log_decodes_to_what_was_done() {
    let log = golden();
    let events = events(&log);
    let maps: Vec<TableMap> = events
        .iter()
        .filter(|e| e.header.kind == kind::TABLE_MAP)
        .map(|e| table_map(e.body).expect("table map"))
        .collect();
    let map = &maps[0];
    assert_eq!((map.schema.as_str(), map.table.as_str()), ("shop", "t"));
    assert_eq!(
        map.types,
        [
            column::LONG,
            column::LONGLONG,
            column::NEWDECIMAL,
            column::VARCHAR,
            column::BLOB,
            column::DATETIME2,
            column::DATE,
            column::TIMESTAMP2,
            column::DOUBLE,
            column::TINY,
            column::BLOB,
            column::TIME2,
            column::YEAR,
            column::STRING,
            column::STRING,
            column::BIT,
        ]
    );
    assert_eq!(map.nullable[..2], [false, true]);
    assert_eq!(map.names, None, "logged without binlog_row_metadata=FULL");
    let rows: Vec<(u8, Rows<'_>)> = events
        .iter()
        .filter(|e| (kind::WRITE_ROWS_V1..=kind::DELETE_ROWS_V1).contains(&e.header.kind))
        .map(|e| {
            (
                e.header.kind,
                rows(e.header.kind, e.body, map).expect("rows"),
            )
        })
        .collect();
    assert_eq!(
        rows.iter()
            .map(|(k, r)| (*k, r.rows.len()))
            .collect::<Vec<_>>(),
        [
            (kind::WRITE_ROWS_V1, 1),
            (kind::WRITE_ROWS_V1, 1),
            (kind::UPDATE_ROWS_V1, 1),
            (kind::UPDATE_ROWS_V1, 1),
            (kind::DELETE_ROWS_V1, 1),
        ]
    );
    let first = rows[0].1.rows[0].1.as_ref().expect("after image");
    assert_eq!(first[0], Some(Value::Int(1, 4)));
    assert_eq!(first[1], Some(Value::Int(u64::MAX, 8)));
    assert_eq!(first[2], Some(Value::Decimal("-1234567890123.45".into())));
    assert_eq!(bytes(&first[3]), "Grüße 🎉".as_bytes());
    assert_eq!(bytes(&first[4]), b"long note");
    assert_eq!(
        first[5],
        Some(Value::DateTime(2024, 2, 29, 12, 34, 56, 123_456))
    );
    assert_eq!(first[6], Some(Value::Date(1000, 1, 1)));
    assert_eq!(first[7], Some(Value::Timestamp(1_704_164_645, 678_901)));
    assert_eq!(first[8], Some(Value::Double(0.1)));
    assert_eq!(first[9], Some(Value::Int(0x80, 1)));
    assert_eq!(bytes(&first[10]), [0x00, 0xff]);
    assert_eq!(first[11], Some(Value::Time(true, 838, 59, 59, 0)));
    assert_eq!(first[12], Some(Value::Year(2155)));
    assert_eq!(first[13], Some(Value::Enum(2)));
    assert_eq!(first[14], Some(Value::Set(3)));
    assert_eq!(first[15], Some(Value::Bit(0b10_1010_1010)));

    let second = rows[1].1.rows[0].1.as_ref().expect("after image");
    assert_eq!(second[0], Some(Value::Int(2, 4)));
    assert!(second[1..].iter().all(|v| *v == Some(Value::Null)));

    // A full row image: the whole row before and after.
    let (before, after) = &rows[2].1.rows[0];
    let (before, after) = (
        before.as_ref().expect("before"),
        after.as_ref().expect("after"),
    );
    assert_eq!(before[2], Some(Value::Decimal("-1234567890123.45".into())));
    assert_eq!(after[2], Some(Value::Decimal("0.01".into())));
    assert_eq!(bytes(&after[3]), b"b");
    let (before, after) = &rows[3].1.rows[0];
    assert_eq!(before.as_ref().expect("before")[0], Some(Value::Int(2, 4)));
    assert_eq!(after.as_ref().expect("after")[0], Some(Value::Int(3, 4)));
    let (gone, none) = &rows[4].1.rows[0];
    assert!(none.is_none());
    assert_eq!(gone.as_ref().expect("before")[0], Some(Value::Int(3, 4)));
    assert_eq!(
        events.iter().filter(|e| e.header.kind == kind::XID).count(),
        4
    );
}

#[test]
fn a_corrupted_event_fails_its_checksum() {
    let mut log = golden();
    let last = log.len() - 10;
    log[last] ^= 1;
    let mut at = 4 + event(&log[4..], false).expect("format").1;
    let failed = loop {
        match event(&log[at..], true) {
            Ok((_, size)) => at += size,
            Err(e) => break e,
        }
    };
    assert!(
        failed.to_string().contains("fails its checksum"),
        "{failed}"
    );
}

#[test]
fn cut_short_events_and_rows_are_errors_not_panics() {
    let log = golden();
    let events = events(&log);
    let map = events
        .iter()
        .find(|e| e.header.kind == kind::TABLE_MAP)
        .map(|e| table_map(e.body).expect("map"))
        .expect("a table map");
    for e in &events {
        for end in 0..e.body.len() {
            let body = &e.body[..end];
            match e.header.kind {
                kind::TABLE_MAP => assert!(table_map(body).is_err(), "a map cut at {end} decoded"),
                k @ kind::WRITE_ROWS_V1..=kind::DELETE_ROWS_V1 => {
                    // A row cut short is an error; a cut exactly between rows leaves whole rows.
                    if let Ok(r) = rows(k, body, &map) {
                        assert!(r.rows.len() <= 1);
                    }
                }
                _ => {}
            }
        }
    }
}

proptest! {
    #[test]
    fn any_bytes_decode_or_fail_without_panicking(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = event(&data, true);
        let _ = event(&data, false);
        let _ = table_map(&data);
        let map = TableMap {
            table_id: 1,
            schema: "s".into(),
            table: "t".into(),
            types: vec![column::NEWDECIMAL, column::TIME2, column::STRING, column::BLOB, column::DATETIME2],
            meta: vec![(65 << 8) | 30, 6, (u16::from(column::STRING) << 8) | 200, 4, 6],
            nullable: vec![true; 5],
            names: None,
        };
        for k in [kind::WRITE_ROWS_V1, kind::UPDATE_ROWS_V2, kind::DELETE_ROWS_V1] {
            let _ = rows(k, &data, &map);
        }
    }
}

#[test]
fn a_row_event_whose_rows_carry_no_column_is_refused_not_read_forever() {
    let map = TableMap {
        table_id: 1,
        schema: "s".into(),
        table: "t".into(),
        types: vec![column::LONG],
        meta: vec![0],
        nullable: vec![true],
        names: None,
    };
    // table id, flags, width 1, no column present, then bytes no row can use.
    let body = [1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 7, 7];
    assert!(rows(kind::WRITE_ROWS_V1, &body, &map).is_err());
}

#[test]
fn a_table_map_names_its_columns_when_the_server_logs_them() {
    let mut body = vec![9, 0, 0, 0, 0, 0, 0, 0, 1, b's', 0, 1, b't', 0, 2];
    body.extend([column::LONG, column::VARCHAR, 2, 40, 0, 0b10]);
    // Signedness (skipped), then the names.
    body.extend([1, 1, 0]);
    body.extend([COLUMN_NAME, 8, 2, b'i', b'd', 4, b'n', b'o', b't', b'e']);
    let map = table_map(&body).expect("table map");
    assert_eq!(map.names, Some(vec!["id".to_string(), "note".to_string()]));
    // A name list that does not name every column is malformed.
    let short = body.len() - 5;
    body.truncate(short);
    body[short - 4] = 3;
    assert!(table_map(&body).is_err());
}

#[test]
fn a_truncation_of_the_table_is_seen_however_it_is_written() {
    for sql in [
        "TRUNCATE t",
        "truncate table t;",
        "TRUNCATE TABLE `shop`.`t`",
        "/* app */ TRUNCATE shop.t",
        "-- a note\nTRUNCATE TABLE T",
        "# a note\ntruncate \"shop\".\"t\"",
        "ALTER TABLE shop.t TRUNCATE PARTITION p1",
    ] {
        assert!(truncates(sql, "shop", "shop", "t"), "{sql}");
    }
    for sql in [
        "TRUNCATE TABLE t2",
        "TRUNCATE other.t",
        "DELETE FROM t",
        "TRUNCATE `t.x`",
    ] {
        assert!(!truncates(sql, "shop", "shop", "t"), "{sql}");
    }
    assert!(!truncates("TRUNCATE t", "other", "shop", "t"));
    // thread, seconds, database length 4, error 0, no status variables, "shop", NUL, the statement.
    let mut body = vec![1, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0];
    body.extend(b"shop\0TRUNCATE t");
    assert_eq!(
        query(&body).expect("query"),
        ("shop".into(), "TRUNCATE t".into())
    );
}
