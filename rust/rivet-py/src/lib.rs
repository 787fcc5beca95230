//! `rivet._native`: the private binding of the rivet engine. Registration only.

mod arrow_ffi;
mod binlog;
mod errors;
mod interrupt;
mod meta;
mod reader;
mod replication;
mod session;
mod sources;

use pyo3::prelude::*;

/// The native module. Readers release the GIL while they decode, and every
/// pyclass is frozen, so the module is safe without the GIL.
#[pymodule(gil_used = false)]
mod _native {
    #[pymodule_export]
    use crate::binlog::PyMyBinlog;
    #[pymodule_export]
    use crate::meta::{uuids_as_bytes, with_meta_columns};
    #[pymodule_export]
    use crate::reader::{PyArrowBatch, PyArrowColumn, PyArrowSchema, PyBatchReader};
    #[pymodule_export]
    use crate::replication::PyPgReplication;
    #[pymodule_export]
    use crate::session::PyMySession;
    #[pymodule_export]
    use crate::session::PyPgSession;
    #[pymodule_export]
    use crate::sources::{connection_target, connectorx_url, describe_sqlite, scan_sqlite};

    use pyo3::prelude::*;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        m.add(
            "build_profile",
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
        )?;
        Ok(())
    }
}
