use proptest::prelude::*;

use super::*;

/// The messages of `golden.txt`'s section `name`, as bytes.
fn golden(name: &str) -> Vec<Vec<u8>> {
    let text = include_str!("golden.txt");
    let section = text
        .split(&format!("[{name}]\n"))
        .nth(1)
        .expect("section")
        .split("\n[")
        .next()
        .expect("lines");
    section
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let hex = l.rsplit('|').next().expect("hex");
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex byte"))
                .collect()
        })
        .collect()
}

fn text(v: &Value<'_>) -> Option<String> {
    match v {
        Value::Text(t) => Some(String::from_utf8(t.to_vec()).expect("utf-8")),
        Value::Null => None,
        other => panic!("not a text value: {other:?}"),
    }
}

fn texts(t: &Tuple<'_>) -> Vec<Option<String>> {
    t.0.iter().map(text).collect()
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

#[test]
fn a_servers_messages_decode_to_what_was_done() {
    let bytes = golden("text");
    let messages: Vec<Message<'_>> = bytes.iter().map(|b| message(b).expect("decodes")).collect();
    let Message::Relation(t) = &messages[1] else {
        panic!("no relation: {:?}", messages[1])
    };
    assert_eq!((t.namespace.as_str(), t.name.as_str()), ("public", "t"));
    assert_eq!(t.replica_identity, ReplicaIdentity::Default);
    let columns: Vec<_> = t
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.type_oid, c.typmod, c.key))
        .collect();
    assert_eq!(
        columns,
        [
            ("id", 23, -1, true),
            ("name", 25, -1, false),
            ("amount", 1700, (12 << 16 | 2) + 4, false),
            ("big", 25, -1, false),
            ("at", 1184, -1, false),
        ]
    );
    let Message::Begin { xid, .. } = messages[0] else {
        panic!("no begin")
    };
    assert_eq!(xid, 729);
    let Message::Insert { relation, new } = &messages[2] else {
        panic!("no insert")
    };
    assert_eq!(*relation, t.oid);
    let values = texts(new);
    assert_eq!(values[..3], [s("1"), s("a"), s("1.50")]);
    assert_eq!(values[3].as_deref(), Some("x".repeat(5000).as_str()));
    assert_eq!(values[4], s("2024-01-02 03:04:05.678901+00"));
    let Message::Insert { new, .. } = &messages[3] else {
        panic!("no insert")
    };
    assert_eq!(texts(new), [s("2"), None, s("-3.00"), s("small"), None]);
    let Message::Commit { end_lsn, .. } = messages[4] else {
        panic!("no commit")
    };
    assert!(end_lsn > Lsn(0));

    // The update that left the TOASTed column alone does not send it.
    let Message::Update { old: None, new, .. } = &messages[6] else {
        panic!("no update: {:?}", messages[6])
    };
    assert_eq!(new.0[3], Value::Unchanged);
    assert_eq!(text(&new.0[1]), s("b"));
    // A changed key sends the old key.
    let Message::Update {
        old: Some(OldRow::Key(old)),
        new,
        ..
    } = &messages[7]
    else {
        panic!("no key update: {:?}", messages[7])
    };
    assert_eq!(texts(old), [s("2"), None, None, None, None]);
    assert_eq!(texts(new)[0], s("3"));
    let Message::Delete {
        old: OldRow::Key(old),
        ..
    } = &messages[10]
    else {
        panic!("no delete: {:?}", messages[10])
    };
    assert_eq!(texts(old)[0], s("3"));

    // REPLICA IDENTITY FULL sends whole old rows.
    let Message::Relation(f) = &messages[13] else {
        panic!("no relation f")
    };
    assert_eq!(f.replica_identity, ReplicaIdentity::Full);
    let full: Vec<_> = messages
        .iter()
        .filter_map(|m| match m {
            Message::Update {
                old: Some(OldRow::Full(old)),
                new,
                ..
            } => Some((texts(old), texts(new))),
            _ => None,
        })
        .collect();
    assert_eq!(full, [(vec![s("1"), s("x")], vec![s("1"), s("y")])]);
    assert!(messages.iter().any(
        |m| matches!(m, Message::Delete { old: OldRow::Full(old), .. } if texts(old) == [s("1"), s("y")])
    ));
    let truncated: Vec<_> = messages
        .iter()
        .filter_map(|m| match m {
            Message::Truncate {
                relations,
                cascade: false,
                restart_identity: false,
            } => Some(relations.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(truncated, [vec![f.oid]]);
    // Every transaction is whole: as many commits as begins, in order.
    let marks: String = messages
        .iter()
        .filter_map(|m| match m {
            Message::Begin { .. } => Some('B'),
            Message::Commit { .. } => Some('C'),
            _ => None,
        })
        .collect();
    assert_eq!(marks, "BC".repeat(7));
}

#[test]
fn binary_values_come_in_the_types_send_form() {
    let bytes = golden("binary");
    let Message::Insert { new, .. } = message(&bytes[2]).expect("insert") else {
        panic!("no insert")
    };
    assert_eq!(new.0[0], Value::Binary(&[0, 0, 0, 1]));
    assert_eq!(new.0[1], Value::Binary(b"a"));
}

#[test]
fn every_cut_short_message_is_an_error_not_a_panic() {
    for data in golden("text").iter().chain(&golden("binary")) {
        for end in 0..data.len() {
            assert!(
                message(&data[..end]).is_err(),
                "a prefix of {end} bytes decoded"
            );
        }
        let mut longer = data.clone();
        longer.push(0);
        assert!(message(&longer).is_err(), "a trailing byte was ignored");
    }
}

#[test]
fn counts_larger_than_the_message_are_refused_before_allocating() {
    // An insert claiming 32767 values, and a value claiming 2 GiB, in a few bytes.
    let many = [b'I', 0, 0, 0, 1, b'N', 0x7f, 0xff, b'n'];
    assert!(message(&many).is_err());
    let huge = [
        b'I', 0, 0, 0, 1, b'N', 0, 1, b't', 0x7f, 0xff, 0xff, 0xff, b'x',
    ];
    assert!(message(&huge).is_err());
    let negative = [b'I', 0, 0, 0, 1, b'N', 0xff, 0xff];
    assert!(message(&negative).is_err());
    let truncate = [b'T', 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1];
    assert!(message(&truncate).is_err());
}

#[test]
fn stream_messages_and_status_updates() {
    let mut xlog = vec![b'w'];
    for n in [0x0000_0001_0000_0010_u64, 0x0000_0001_0000_0020, 77] {
        xlog.extend_from_slice(&n.to_be_bytes());
    }
    xlog.extend_from_slice(b"Bxyz");
    assert_eq!(
        copy_message(&xlog).expect("xlogdata"),
        CopyMessage::XLogData {
            start: Lsn(0x1_0000_0010),
            wal_end: Lsn(0x1_0000_0020),
            sent_at: 77,
            data: b"Bxyz",
        }
    );
    let mut keepalive = vec![b'k'];
    keepalive.extend_from_slice(&5u64.to_be_bytes());
    keepalive.extend_from_slice(&6i64.to_be_bytes());
    keepalive.push(1);
    assert_eq!(
        copy_message(&keepalive).expect("keepalive"),
        CopyMessage::Keepalive {
            wal_end: Lsn(5),
            sent_at: 6,
            reply_requested: true
        }
    );
    assert!(copy_message(&keepalive[..17]).is_err());
    assert!(copy_message(b"z").is_err());

    let status = standby_status(Lsn(1), Lsn(2), Lsn(3), 4, false);
    assert_eq!(status.len(), 34);
    assert_eq!(status[0], b'r');
    assert_eq!(status[9..17], 2u64.to_be_bytes());
    assert_eq!(status[33], 0);
}

#[test]
fn wal_positions_read_and_print_as_postgresql_does() {
    let at = Lsn::parse("16/B374D848").expect("lsn");
    assert_eq!(at, Lsn(0x16_B374_D848));
    assert_eq!(at.to_string(), "16/B374D848");
    assert_eq!(Lsn(0x15461E8).to_string(), "0/15461E8");
    assert!(
        Lsn::parse("16").is_err()
            && Lsn::parse("x/1").is_err()
            && Lsn::parse("1/100000000").is_err()
    );
}

proptest! {
    #[test]
    fn any_bytes_decode_or_fail_without_panicking(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = message(&data);
        let _ = copy_message(&data);
    }

    #[test]
    fn any_message_with_a_known_tag_decodes_or_fails(
        tag in prop::sample::select(b"BCORYIUDTM".to_vec()),
        rest in proptest::collection::vec(any::<u8>(), 0..128),
    ) {
        let mut data = vec![tag];
        data.extend(rest);
        let _ = message(&data);
    }
}
