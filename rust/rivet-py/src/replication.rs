//! `PgReplication`: a PostgreSQL logical replication connection (slots and the decoded change
//! stream), for change capture. Messages cross as dicts; values keep their wire form.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use rivet_engine::BatchStream;
use rivet_engine::Error;
use rivet_engine::changes::{change_schema, finish_tables};
use rivet_engine::conn::ConnectOptions;
use rivet_engine::metadata::arrow_schema;
use rivet_engine::pg::batch::PgColumn;
use rivet_engine::pg::cdc::changes::{ChangeSink, TableChanges};
use rivet_engine::pg::cdc::pgoutput::{
    CopyMessage, Lsn, Message, OldRow, PG_EPOCH_UNIX_MICROS, ReplicaIdentity, Tuple, Value, message,
};
use rivet_engine::pg::cdc::replication::Replication;
use rivet_engine::pg::session::PgSession;
use rivet_engine::source::Overrides;

use crate::interrupt::{run_interruptible, with_locked};
use crate::reader::PyBatchReader;
use crate::sources::{ConnectArgs, ScanArgs, finish};

/// A value as it crossed the wire, owned.
enum Wire {
    Null,
    Unchanged,
    Text(String),
    Binary(Vec<u8>),
}

/// One field of a message, owned, until it becomes a Python value.
enum Field {
    Text(String),
    Int(i64),
    Flag(bool),
    Row(Vec<Wire>),
    Oids(Vec<u32>),
    Columns(Vec<(String, u32, i32, bool)>),
}

type Fields = Vec<(&'static str, Field)>;

fn row(t: &Tuple<'_>) -> Field {
    Field::Row(
        t.0.iter()
            .map(|v| match v {
                Value::Null => Wire::Null,
                Value::Unchanged => Wire::Unchanged,
                Value::Text(t) => Wire::Text(String::from_utf8_lossy(t).into_owned()),
                Value::Binary(b) => Wire::Binary(b.to_vec()),
            })
            .collect(),
    )
}

fn old(o: &OldRow<'_>) -> Vec<(&'static str, Field)> {
    match o {
        OldRow::Key(t) => vec![("old_key", row(t))],
        OldRow::Full(t) => vec![("old", row(t))],
    }
}

fn lsn(l: Lsn) -> Field {
    Field::Text(l.to_string())
}

fn unix_micros(pg: i64) -> Field {
    Field::Int(pg.saturating_add(PG_EPOCH_UNIX_MICROS))
}

fn fields_of(m: &Message<'_>) -> Fields {
    match m {
        Message::Begin {
            final_lsn,
            committed_at,
            xid,
        } => vec![
            ("type", Field::Text("begin".into())),
            ("final_lsn", lsn(*final_lsn)),
            ("committed_at_us", unix_micros(*committed_at)),
            ("xid", Field::Int(i64::from(*xid))),
        ],
        Message::Commit {
            commit_lsn,
            end_lsn,
            committed_at,
        } => vec![
            ("type", Field::Text("commit".into())),
            ("commit_lsn", lsn(*commit_lsn)),
            ("end_lsn", lsn(*end_lsn)),
            ("committed_at_us", unix_micros(*committed_at)),
        ],
        Message::Origin { commit_lsn, name } => vec![
            ("type", Field::Text("origin".into())),
            ("commit_lsn", lsn(*commit_lsn)),
            ("name", Field::Text((*name).into())),
        ],
        Message::Relation(r) => vec![
            ("type", Field::Text("relation".into())),
            ("oid", Field::Int(i64::from(r.oid))),
            ("namespace", Field::Text(r.namespace.clone())),
            ("name", Field::Text(r.name.clone())),
            (
                "replica_identity",
                Field::Text(
                    match r.replica_identity {
                        ReplicaIdentity::Default => "default",
                        ReplicaIdentity::Nothing => "nothing",
                        ReplicaIdentity::Full => "full",
                        ReplicaIdentity::Index => "index",
                    }
                    .into(),
                ),
            ),
            (
                "columns",
                Field::Columns(
                    r.columns
                        .iter()
                        .map(|c| (c.name.clone(), c.type_oid, c.typmod, c.key))
                        .collect(),
                ),
            ),
        ],
        Message::Type {
            oid,
            namespace,
            name,
        } => vec![
            ("type", Field::Text("type".into())),
            ("oid", Field::Int(i64::from(*oid))),
            ("namespace", Field::Text((*namespace).into())),
            ("name", Field::Text((*name).into())),
        ],
        Message::Insert { relation, new } => vec![
            ("type", Field::Text("insert".into())),
            ("relation", Field::Int(i64::from(*relation))),
            ("new", row(new)),
        ],
        Message::Update {
            relation,
            old: o,
            new,
        } => {
            let mut f = vec![
                ("type", Field::Text("update".into())),
                ("relation", Field::Int(i64::from(*relation))),
                ("new", row(new)),
            ];
            f.extend(o.as_ref().map(old).unwrap_or_default());
            f
        }
        Message::Delete { relation, old: o } => {
            let mut f = vec![
                ("type", Field::Text("delete".into())),
                ("relation", Field::Int(i64::from(*relation))),
            ];
            f.extend(old(o));
            f
        }
        Message::Truncate {
            relations,
            cascade,
            restart_identity,
        } => vec![
            ("type", Field::Text("truncate".into())),
            ("relations", Field::Oids(relations.clone())),
            ("cascade", Field::Flag(*cascade)),
            ("restart_identity", Field::Flag(*restart_identity)),
        ],
        Message::Logical {
            transactional,
            lsn: at,
            prefix,
            content,
        } => vec![
            ("type", Field::Text("message".into())),
            ("transactional", Field::Flag(*transactional)),
            ("lsn", lsn(*at)),
            ("prefix", Field::Text((*prefix).into())),
            ("content", Field::Row(vec![Wire::Binary(content.to_vec())])),
        ],
    }
}

/// The fields of the next stream message (None at the end of the stream).
fn next_fields(replication: &mut Replication) -> Result<Option<Fields>, Error> {
    Ok(match replication.next_message()? {
        None => None,
        Some(CopyMessage::Keepalive {
            wal_end,
            reply_requested,
            ..
        }) => Some(vec![
            ("type", Field::Text("keepalive".into())),
            ("wal_end", lsn(wal_end)),
            ("reply_requested", Field::Flag(reply_requested)),
        ]),
        Some(CopyMessage::XLogData { start, data, .. }) => {
            let mut f = fields_of(&message(data)?);
            f.push(("start", lsn(start)));
            Some(f)
        }
    })
}

fn to_dict<'py>(py: Python<'py>, fields: Fields) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    for (key, field) in fields {
        match field {
            Field::Text(s) => out.set_item(key, s)?,
            Field::Int(n) => out.set_item(key, n)?,
            Field::Flag(b) => out.set_item(key, b)?,
            Field::Oids(o) => out.set_item(key, o)?,
            Field::Columns(c) => out.set_item(key, c)?,
            Field::Row(values) => {
                let list = PyList::empty(py);
                for v in values {
                    match v {
                        Wire::Null => list.append(py.None())?,
                        Wire::Unchanged => list.append(py.Ellipsis())?,
                        Wire::Text(s) => list.append(s)?,
                        Wire::Binary(b) => list.append(PyBytes::new(py, &b))?,
                    }
                }
                out.set_item(key, list)?;
            }
        }
    }
    Ok(out)
}
/// Keep a finished stream's notes on changed columns for `column_changes`.
pub(crate) fn remember(kept: &Mutex<Vec<String>>, notes: &[String]) {
    if let Ok(mut k) = kept.lock() {
        *k = notes.to_vec();
    }
}

/// The notes `remember` kept.
pub(crate) fn recalled(kept: &Mutex<Vec<String>>) -> Vec<String> {
    kept.lock().map(|n| n.clone()).unwrap_or_default()
}

/// Now, in microseconds since PostgreSQL's epoch.
fn pg_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        - PG_EPOCH_UNIX_MICROS
}

fn parse_lsn(text: &str) -> PyResult<Lsn> {
    Lsn::parse(text).map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))
}

/// A PostgreSQL logical replication connection: its WAL position, pgoutput slots, and the
/// stream of a slot's decoded changes. One call at a time.
#[pyclass(frozen, module = "rivet._native", name = "PgReplication")]
pub struct PyPgReplication {
    inner: Arc<Mutex<Replication>>,
    drained: Arc<Mutex<Option<Lsn>>>,
    column_changes: Arc<Mutex<Vec<String>>>,
}

/// A table whose changes a stream reads: its columns, their type OIDs and which make the
/// primary key, and where its changes start.
struct Described {
    namespace: String,
    name: String,
    from: Lsn,
    columns: Vec<PgColumn>,
    type_oids: Vec<u32>,
    primary_key: Vec<bool>,
}

/// `namespace.name` as a read of it with `overrides` (decimal(p,s) only: the log carries values
/// in binary) describes its columns, with each one's type OID and whether it is in the primary
/// key (what a moved row is); its changes start at `from`.
fn describe(
    session: &PgSession,
    namespace: String,
    name: String,
    from: Lsn,
    overrides: &Overrides,
) -> Result<Described, Error> {
    let quoted = format!(
        "\"{}\".\"{}\"",
        namespace.replace('"', "\"\""),
        name.replace('"', "\"\"")
    );
    let columns = session.describe(&format!("SELECT * FROM {quoted}"), overrides)?;
    let literal = quoted.replace('\'', "''");
    let catalog = session.query(&format!(
        "SELECT a.atttypid::int8, EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid \
         AND i.indisprimary AND a.attnum = ANY (i.indkey))::text FROM pg_attribute a \
         WHERE a.attrelid = '{literal}'::regclass AND a.attnum > 0 AND NOT a.attisdropped \
         ORDER BY a.attnum"
    ))?;
    let type_oids = catalog
        .iter()
        .map(|r| {
            r.first()
                .cloned()
                .flatten()
                .and_then(|v| v.parse::<u32>().ok())
                .ok_or_else(|| Error::Internal("a type OID that is not a number".into()))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let primary_key = catalog
        .iter()
        .map(|r| r.get(1).cloned().flatten().as_deref() == Some("true"))
        .collect();
    Ok(Described {
        namespace,
        name,
        from,
        columns,
        type_oids,
        primary_key,
    })
}

#[pymethods]
impl PyPgReplication {
    /// Connect with `replication=database` (raising at once on bad settings or privileges).
    #[new]
    fn new(py: Python<'_>, conn: ConnectArgs) -> PyResult<Self> {
        let options = ConnectOptions::from(conn);
        let result = run_interruptible(py, move || Replication::connect(&options))?;
        Ok(PyPgReplication {
            inner: Arc::new(Mutex::new(finish(py, result)?)),
            drained: Arc::new(Mutex::new(None)),
            column_changes: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// `{system_id, timeline, wal_position}` of the cluster now.
    fn identify_system<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let info = with_locked(py, &self.inner, Replication::identify_system)?;
        to_dict(
            py,
            vec![
                ("system_id", Field::Text(info.system_id)),
                ("timeline", Field::Int(i64::from(info.timeline))),
                ("wal_position", lsn(info.wal_position)),
            ],
        )
    }

    /// Create a pgoutput slot: `{name, consistent_point, snapshot}`.
    fn create_slot<'py>(
        &self,
        py: Python<'py>,
        name: String,
        export_snapshot: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let slot = with_locked(py, &self.inner, move |r| {
            r.create_slot(&name, export_snapshot)
        })?;
        let mut fields = vec![
            ("name", Field::Text(slot.name)),
            ("consistent_point", lsn(slot.consistent_point)),
        ];
        if let Some(s) = slot.snapshot {
            fields.push(("snapshot", Field::Text(s)));
        }
        to_dict(py, fields)
    }

    /// Drop a slot.
    fn drop_slot(&self, py: Python<'_>, name: String) -> PyResult<()> {
        with_locked(py, &self.inner, move |r| r.drop_slot(&name))
    }

    /// Stream `slot`'s changes committed after `from_lsn` for the tables of `publications`.
    fn start(
        &self,
        py: Python<'_>,
        slot: String,
        from_lsn: &str,
        publications: Vec<String>,
        binary: bool,
    ) -> PyResult<()> {
        let from = parse_lsn(from_lsn)?;
        with_locked(py, &self.inner, move |r| {
            r.start(&slot, from, &publications, binary)
        })
    }

    /// The next message as a dict (`type`: begin, commit, relation, insert, update, delete,
    /// truncate, keepalive, ...), or None once the server ended the stream. Values are text,
    /// bytes (binary), None (NULL) or ``...`` (a TOASTed value the change did not touch).
    fn next_message<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        match with_locked(py, &self.inner, next_fields)? {
            Some(fields) => to_dict(py, fields).map(Some),
            None => Ok(None),
        }
    }

    /// Every change committed up to `until_lsn` (the WAL end when the run began), as
    /// [`next_message`]'s dicts, and the end of the last commit among them (None: none).
    fn drain<'py>(
        &self,
        py: Python<'py>,
        until_lsn: &str,
    ) -> PyResult<(Vec<Bound<'py, PyDict>>, Option<String>)> {
        let until = parse_lsn(until_lsn)?;
        let (messages, end) = with_locked(py, &self.inner, move |r| {
            let mut messages = Vec::new();
            let end = r.drain(until, pg_now, |m| {
                messages.push(fields_of(m));
                Ok(())
            })?;
            Ok((messages, end))
        })?;
        let dicts = messages
            .into_iter()
            .map(|f| to_dict(py, f))
            .collect::<PyResult<Vec<_>>>()?;
        Ok((dicts, end.map(|l| l.to_string())))
    }

    /// The changes of each table `(namespace, name, from_lsn)` committed from its `from_lsn`
    /// to `until_lsn`, read in one stream, as one reader of Arrow batches per table (`__op`,
    /// `__pos`, `__seq`, `__committed_at`, `__unchanged`, then its columns, described through
    /// a connection made with `conn`). The slot must have been started at the earliest
    /// `from_lsn`. With `follow_column_changes`, changes logged before columns were added or
    /// dropped are read by name into the columns now, and `column_changes` says so; without,
    /// they stop the stream. Once the readers are exhausted, `drained_to` is the end of the last
    /// commit read.
    #[allow(clippy::too_many_arguments)]
    fn stream_changes(
        &self,
        py: Python<'_>,
        until_lsn: &str,
        conn: ConnectArgs,
        tables: Vec<(String, String, String)>,
        options: ScanArgs,
        follow_column_changes: bool,
        decimal_overrides: HashMap<String, (u8, i8)>,
    ) -> PyResult<Vec<PyBatchReader>> {
        let until = parse_lsn(until_lsn)?;
        let tables = tables
            .into_iter()
            .map(|(namespace, name, from)| Ok((namespace, name, parse_lsn(&from)?)))
            .collect::<PyResult<Vec<_>>>()?;
        let scan = options.options()?;
        let connect = ConnectOptions::from(conn);
        let inner = Arc::clone(&self.inner);
        let drained = Arc::clone(&self.drained);
        let notes = Arc::clone(&self.column_changes);
        remember(&notes, &[]);
        let overrides = Overrides {
            decimal: decimal_overrides,
            ..Overrides::default()
        };
        let result = run_interruptible(py, move || -> Result<Vec<BatchStream>, Error> {
            let session = PgSession::connect(&connect)?;
            let described = tables
                .into_iter()
                .map(|(namespace, name, from)| {
                    describe(&session, namespace, name, from, &overrides)
                })
                .collect::<Result<Vec<_>, Error>>()?;
            let schemas = described
                .iter()
                .map(|d| change_schema(&arrow_schema(&d.columns)))
                .collect();
            Ok(BatchStream::spawn_many(
                schemas,
                scan.prefetch,
                move |sinks| {
                    let mut replication = inner.lock().map_err(|_| {
                        Error::Internal("a previous replication call panicked".into())
                    })?;
                    let mut changes: Vec<ChangeSink<'_>> = described
                        .iter()
                        .map(|d| {
                            ChangeSink::new(TableChanges {
                                namespace: &d.namespace,
                                name: &d.name,
                                columns: &d.columns,
                                type_oids: &d.type_oids,
                                primary_key: &d.primary_key,
                                limits: scan.limits,
                                follow_column_changes,
                                from: d.from,
                            })
                        })
                        .collect();
                    let end = replication.drain(until, pg_now, |m| {
                        changes
                            .iter_mut()
                            .zip(sinks)
                            .try_for_each(|(c, sink)| c.take(m, sink))
                    })?;
                    let (ends, said) = finish_tables(&mut changes, sinks)?;
                    remember(&notes, &said);
                    // Everything committed before `until` was handed over: the next stream
                    // may start there even when none of it was these tables'.
                    let next = end.map_or(until, |e| e.max(until));
                    if let Ok(mut d) = drained.lock() {
                        *d = Some(next);
                    }
                    Ok(ends)
                },
            ))
        })?;
        let streams = finish(py, result)?;
        Ok(streams.into_iter().map(PyBatchReader::new).collect())
    }

    /// Where the next change stream starts: the end of the last commit the last one read, or
    /// the WAL end it drained to, whichever is later (None: no stream has ended yet).
    #[getter]
    fn drained_to(&self) -> Option<String> {
        self.drained
            .lock()
            .ok()
            .and_then(|at| at.map(|l| l.to_string()))
    }

    /// How the last change stream read changes logged under other columns (one note each).
    #[getter]
    fn column_changes(&self) -> Vec<String> {
        recalled(&self.column_changes)
    }

    /// Tell the server everything up to `flushed_lsn` is durable; with `reply`, ask for a
    /// keepalive back at once.
    fn confirm(&self, py: Python<'_>, flushed_lsn: &str, reply: bool) -> PyResult<()> {
        let flushed = parse_lsn(flushed_lsn)?;
        with_locked(py, &self.inner, move |r| {
            r.confirm(flushed, pg_now(), reply)
        })
    }

    /// End the stream; the connection then takes commands again.
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        with_locked(py, &self.inner, Replication::stop)
    }
}
