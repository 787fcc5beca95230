//! `MyBinlog`: a MySQL/MariaDB binary log read as a replica, for change capture. Events cross
//! as dicts; values keep what the log states (integers as stored, times as their parts).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pyo3::IntoPyObjectExt;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};
use rivet_engine::BatchStream;
use rivet_engine::Error;
use rivet_engine::changes::{change_schema, finish_tables};
use rivet_engine::conn::ConnectOptions;
use rivet_engine::metadata::arrow_schema;
use rivet_engine::mysql::cdc::binlog::{Image, TableMap, Value, kind, rows, table_map};
use rivet_engine::mysql::cdc::changes::{MyChangeSink, MyTable, log_position, logged_as};
use rivet_engine::mysql::cdc::replication::{BinlogReader, LogPosition};
use rivet_engine::mysql::cdc::row::members;
use rivet_engine::mysql::session::MySession;
use rivet_engine::mysql::types::MyColumn;
use rivet_engine::source::Overrides;

use crate::interrupt::{run_interruptible, with_locked};
use crate::reader::PyBatchReader;
use crate::replication::{recalled, remember};
use crate::sources::{ConnectArgs, ScanArgs, finish};

/// A value, owned, until it becomes a Python one.
enum Owned {
    Null,
    Int(u64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
    Parts(Vec<i64>),
}

fn owned(v: &Value<'_>) -> Owned {
    let parts = |p: &[i64]| Owned::Parts(p.to_vec());
    match v {
        Value::Null => Owned::Null,
        Value::Int(bits, _) | Value::Bit(bits) | Value::Set(bits) => Owned::Int(*bits),
        Value::Enum(i) => Owned::Int(u64::from(*i)),
        Value::Year(y) => Owned::Int(u64::from(*y)),
        Value::Float(f) => Owned::Float(f64::from(*f)),
        Value::Double(f) => Owned::Float(*f),
        Value::Decimal(s) => Owned::Text(s.clone()),
        Value::Bytes(b) => Owned::Bytes(b.to_vec()),
        Value::Date(y, m, d) => parts(&[i64::from(*y), i64::from(*m), i64::from(*d)]),
        Value::DateTime(y, mo, d, h, mi, s, us) => parts(&[
            i64::from(*y),
            i64::from(*mo),
            i64::from(*d),
            i64::from(*h),
            i64::from(*mi),
            i64::from(*s),
            i64::from(*us),
        ]),
        Value::Timestamp(s, us) => parts(&[i64::from(*s), i64::from(*us)]),
        Value::Time(negative, h, m, s, us) => parts(&[
            if *negative { -1 } else { 1 },
            i64::from(*h),
            i64::from(*m),
            i64::from(*s),
            i64::from(*us),
        ]),
    }
}

type OwnedImage = Option<Vec<Option<Owned>>>;

fn owned_image(image: Option<&Image<'_>>) -> OwnedImage {
    image.map(|values| values.iter().map(|v| v.as_ref().map(owned)).collect())
}

/// One event, owned.
enum OwnedEvent {
    TableMap(TableMap),
    Rows(&'static str, u64, Vec<(OwnedImage, OwnedImage)>),
    Other(u8),
}

/// An event as it crosses: its kind, where the next one starts, when it was written.
struct Read {
    event: OwnedEvent,
    next_position: u32,
    timestamp: u32,
}

fn read_all(reader: &mut BinlogReader) -> Result<Vec<Read>, Error> {
    let mut maps: HashMap<u64, TableMap> = HashMap::new();
    let mut out = Vec::new();
    while let Some(e) = reader.next_event()? {
        let op = match e.header.kind {
            kind::WRITE_ROWS_V1 | kind::WRITE_ROWS_V2 => Some("write"),
            kind::UPDATE_ROWS_V1 | kind::UPDATE_ROWS_V2 => Some("update"),
            kind::DELETE_ROWS_V1 | kind::DELETE_ROWS_V2 => Some("delete"),
            _ => None,
        };
        let event = if e.header.kind == kind::TABLE_MAP {
            let map = table_map(e.body)?;
            maps.insert(map.table_id, map.clone());
            OwnedEvent::TableMap(map)
        } else if let Some(op) = op {
            let id = e.body.get(..6).map_or(0, |b| {
                b.iter()
                    .rev()
                    .fold(0u64, |acc, x| (acc << 8) | u64::from(*x))
            });
            let map = maps.get(&id).ok_or_else(|| {
                Error::ConnectionLost(format!("rows of table {id} arrived before its table map"))
            })?;
            let decoded = rows(e.header.kind, e.body, map)?;
            OwnedEvent::Rows(
                op,
                decoded.table_id,
                decoded
                    .rows
                    .iter()
                    .map(|(b, a)| (owned_image(b.as_ref()), owned_image(a.as_ref())))
                    .collect(),
            )
        } else {
            OwnedEvent::Other(e.header.kind)
        };
        out.push(Read {
            event,
            next_position: e.header.next_position,
            timestamp: e.header.timestamp,
        });
    }
    Ok(out)
}

fn py_image<'py>(py: Python<'py>, image: OwnedImage) -> PyResult<Bound<'py, PyAny>> {
    let Some(values) = image else {
        return Ok(py.None().into_bound(py));
    };
    let mut out = Vec::with_capacity(values.len());
    for v in values {
        out.push(match v {
            None => py.Ellipsis().into_bound(py),
            Some(Owned::Null) => py.None().into_bound(py),
            Some(Owned::Int(n)) => n.into_bound_py_any(py)?,
            Some(Owned::Float(f)) => f.into_bound_py_any(py)?,
            Some(Owned::Text(s)) => s.into_bound_py_any(py)?,
            Some(Owned::Bytes(b)) => PyBytes::new(py, &b).into_any(),
            Some(Owned::Parts(p)) => PyTuple::new(py, p)?.into_any(),
        });
    }
    Ok(pyo3::types::PyList::new(py, out)?.into_any())
}

fn to_dict<'py>(py: Python<'py>, read: Read) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("next_position", read.next_position)?;
    d.set_item("timestamp", read.timestamp)?;
    match read.event {
        OwnedEvent::TableMap(m) => {
            d.set_item("type", "table_map")?;
            d.set_item("table_id", m.table_id)?;
            d.set_item("schema", m.schema)?;
            d.set_item("table", m.table)?;
            d.set_item("types", m.types)?;
        }
        OwnedEvent::Rows(op, table_id, images) => {
            d.set_item("type", op)?;
            d.set_item("table_id", table_id)?;
            let mut rows = Vec::with_capacity(images.len());
            for (before, after) in images {
                rows.push(PyTuple::new(
                    py,
                    [py_image(py, before)?, py_image(py, after)?],
                )?);
            }
            d.set_item("rows", rows)?;
        }
        OwnedEvent::Other(k) => {
            d.set_item(
                "type",
                match k {
                    kind::XID => "xid",
                    kind::QUERY => "query",
                    kind::ROTATE => "rotate",
                    kind::FORMAT_DESCRIPTION => "format",
                    kind::MARIADB_GTID => "gtid",
                    _ => "other",
                },
            )?;
            d.set_item("kind", k)?;
        }
    }
    Ok(d)
}

/// A MySQL/MariaDB replica connection reading the binary log. One call at a time.
#[pyclass(frozen, module = "rivet._native", name = "MyBinlog")]
pub struct PyMyBinlog {
    inner: Arc<Mutex<BinlogReader>>,
    drained: Arc<Mutex<Option<LogPosition>>>,
    column_changes: Arc<Mutex<Vec<String>>>,
}

/// A string literal of MySQL's dialect.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// A table whose changes a dump reads, as the export described it, and where they start.
struct Described {
    schema: String,
    name: String,
    from: u64,
    columns: Vec<MyColumn>,
    members: Vec<Option<Vec<String>>>,
    key: Vec<bool>,
    logged_types: Vec<Option<&'static [u8]>>,
}

/// `schema.name` described as a read of it would be, with what its changes are checked
/// against (ENUM/SET members, the primary key, the types its columns are logged as).
fn describe(
    session: &MySession,
    schema: String,
    name: String,
    file: &str,
    offset: u32,
) -> Result<Described, Error> {
    let quoted = format!(
        "`{}`.`{}`",
        schema.replace('`', "``"),
        name.replace('`', "``")
    );
    let columns = session.describe(&format!("SELECT * FROM {quoted}"), &Overrides::default())?;
    let catalog = session.query(&format!(
        "SELECT COLUMN_TYPE, COLUMN_KEY = 'PRI', DATA_TYPE FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {} ORDER BY ORDINAL_POSITION",
        literal(&schema),
        literal(&name)
    ))?;
    let members = catalog
        .iter()
        .map(|r| r.first().cloned().flatten().and_then(|t| members(&t)))
        .collect();
    let key = catalog
        .iter()
        .map(|r| r.get(1).cloned().flatten().as_deref() == Some("1"))
        .collect();
    let logged_types = catalog
        .iter()
        .map(|r| r.get(2).cloned().flatten().and_then(|t| logged_as(&t)))
        .collect();
    Ok(Described {
        from: log_position(file, offset),
        schema,
        name,
        columns,
        members,
        key,
        logged_types,
    })
}

#[pymethods]
impl PyMyBinlog {
    /// Connect (raising at once on bad settings or credentials).
    #[new]
    fn new(py: Python<'_>, conn: ConnectArgs) -> PyResult<Self> {
        let options = ConnectOptions::from(conn);
        let result = run_interruptible(py, move || BinlogReader::connect(&options))?;
        Ok(PyMyBinlog {
            inner: Arc::new(Mutex::new(finish(py, result)?)),
            drained: Arc::new(Mutex::new(None)),
            column_changes: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// The changes of each table `(schema, name, file, offset)` from its `(file, offset)` to
    /// the end of the log, read in one dump from the earliest of them, as one reader of Arrow
    /// batches per table (`__op`, `__pos`, `__seq`, `__committed_at`, `__unchanged`, then its
    /// columns, described through a connection made with `conn`). With `follow_column_changes`,
    /// changes logged before columns were added or dropped are read by name into the columns
    /// now (where the log names its columns), and `column_changes` says so; without, they stop
    /// the stream. Once the readers are exhausted, `drained_to` is where the next read starts.
    fn stream_changes(
        &self,
        py: Python<'_>,
        tables: Vec<(String, String, String, u32)>,
        server_id: u32,
        conn: ConnectArgs,
        options: ScanArgs,
        follow_column_changes: bool,
    ) -> PyResult<Vec<PyBatchReader>> {
        let scan = options.options()?;
        let connect = ConnectOptions::from(conn);
        let inner = Arc::clone(&self.inner);
        let drained = Arc::clone(&self.drained);
        let notes = Arc::clone(&self.column_changes);
        remember(&notes, &[]);
        let Some(from) = tables
            .iter()
            .map(|(_, _, file, offset)| (log_position(file, *offset), file, *offset))
            .min()
            .map(|(_, file, offset)| LogPosition {
                file: file.clone(),
                offset,
            })
        else {
            return Ok(Vec::new());
        };
        let result = run_interruptible(py, move || -> Result<Vec<BatchStream>, Error> {
            let session = MySession::connect(&connect)?;
            let described = tables
                .into_iter()
                .map(|(schema, name, file, offset)| describe(&session, schema, name, &file, offset))
                .collect::<Result<Vec<_>, Error>>()?;
            let schemas = described
                .iter()
                .map(|d| change_schema(&arrow_schema(&d.columns)))
                .collect();
            Ok(BatchStream::spawn_many(
                schemas,
                scan.prefetch,
                move |sinks| {
                    let mut reader = inner
                        .lock()
                        .map_err(|_| Error::Internal("a previous binlog call panicked".into()))?;
                    let mut changes: Vec<MyChangeSink<'_>> = described
                        .iter()
                        .map(|d| {
                            let table = MyTable {
                                schema: &d.schema,
                                name: &d.name,
                                columns: &d.columns,
                                members: &d.members,
                                key: &d.key,
                                logged_types: &d.logged_types,
                                limits: scan.limits,
                                follow_column_changes,
                                from: d.from,
                            };
                            MyChangeSink::new(table, &from.file)
                        })
                        .collect();
                    reader.start(&from, server_id, true)?;
                    let mut at = from.clone();
                    while let Some(e) = reader.next_event()? {
                        if e.header.kind == kind::ROTATE {
                            let next = e
                                .body
                                .get(8..)
                                .map(String::from_utf8_lossy)
                                .unwrap_or_default();
                            at.file = next.into_owned();
                        } else if e.header.next_position > 0 {
                            at.offset = e.header.next_position;
                        }
                        for (c, sink) in changes.iter_mut().zip(sinks) {
                            c.take(&e, sink)?;
                        }
                    }
                    let (ends, said) = finish_tables(&mut changes, sinks)?;
                    remember(&notes, &said);
                    if let Ok(mut d) = drained.lock() {
                        *d = Some(at);
                    }
                    Ok(ends)
                },
            ))
        })?;
        let streams = finish(py, result)?;
        Ok(streams.into_iter().map(PyBatchReader::new).collect())
    }

    /// Where the last change stream ended: `(file, offset)` to read from next (None: none yet).
    #[getter]
    fn drained_to(&self) -> Option<(String, u32)> {
        self.drained
            .lock()
            .ok()
            .and_then(|d| d.as_ref().map(|p| (p.file.clone(), p.offset)))
    }

    /// How the last change stream read changes logged under other columns (one note each).
    #[getter]
    fn column_changes(&self) -> Vec<String> {
        recalled(&self.column_changes)
    }

    /// Where the log ends now: `(file, offset)`.
    fn end(&self, py: Python<'_>) -> PyResult<(String, u32)> {
        let at = with_locked(py, &self.inner, BinlogReader::end)?;
        Ok((at.file, at.offset))
    }

    /// Every event from `(file, offset)` to the end of the log, as dicts: table maps, row
    /// events (`write`, `update`, `delete` with `(before, after)` images; `...` for a column
    /// an image does not carry) and the rest by type.
    fn read<'py>(
        &self,
        py: Python<'py>,
        file: String,
        offset: u32,
        server_id: u32,
    ) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let reads = with_locked(py, &self.inner, move |r| {
            r.start(&LogPosition { file, offset }, server_id, true)?;
            read_all(r)
        })?;
        reads.into_iter().map(|read| to_dict(py, read)).collect()
    }
}
