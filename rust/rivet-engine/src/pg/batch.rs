//! Assembling decoded columns into bounded record batches.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Field, Schema, SchemaRef};

use crate::batch::RowBatch;
use crate::error::{Error, Result};
use crate::metadata::field_metadata;
use crate::pg::decode::{Capacity, ColumnBuilder};
use crate::pg::types::PgKind;

/// One result column, mapped.
#[derive(Debug, Clone)]
pub struct PgColumn {
    /// Name in the result.
    pub name: String,
    /// Decoder.
    pub kind: PgKind,
    /// Source type text, e.g. `numeric(15,2)`.
    pub source_type: String,
    /// Logical meaning (json, uuid, enum, interval).
    pub logical: Option<&'static str>,
}

/// The Arrow schema for mapped columns; every field carries its source type.
pub fn arrow_schema(columns: &[PgColumn]) -> SchemaRef {
    let fields: Vec<Field> = columns
        .iter()
        .map(|c| {
            Field::new(&c.name, c.kind.data_type(), true)
                .with_metadata(field_metadata(&c.source_type, c.logical))
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// Accumulates rows column by column.
pub struct PgBatchBuilder {
    schema: SchemaRef,
    columns: Vec<PgColumn>,
    builders: Vec<ColumnBuilder>,
    rows: usize,
    bytes: usize,
}

impl PgBatchBuilder {
    /// A builder for `columns`, sized for `capacity` rows.
    pub fn new(columns: Vec<PgColumn>, capacity: usize) -> Self {
        let schema = arrow_schema(&columns);
        let builders = columns
            .iter()
            .map(|c| ColumnBuilder::new(&c.kind, Capacity::rows(capacity)))
            .collect();
        PgBatchBuilder {
            schema,
            columns,
            builders,
            rows: 0,
            bytes: 0,
        }
    }

    /// Number of columns.
    pub fn width(&self) -> usize {
        self.builders.len()
    }

    /// Append a value to column `col` of the current row.
    #[inline]
    pub fn append(&mut self, col: usize, value: Option<&[u8]>) -> Result<()> {
        self.bytes += value.map_or(1, |v| v.len() + 4);
        self.builders[col]
            .append(value)
            .map_err(|m| Error::decode(&self.columns[col].name, m))
    }

    /// Close the current row.
    #[inline]
    pub fn end_row(&mut self) {
        self.rows += 1;
    }
}

impl RowBatch for PgBatchBuilder {
    fn rows(&self) -> usize {
        self.rows
    }

    fn bytes(&self) -> usize {
        self.bytes
    }

    fn finish(&mut self) -> Result<RecordBatch> {
        let mut arrays = Vec::with_capacity(self.builders.len());
        for (builder, column) in self.builders.iter_mut().zip(&self.columns) {
            let array = builder
                .finish()
                .map_err(|m| Error::decode(&column.name, m))?;
            // Start the next batch with the room this one needed: no regrowing, no copies.
            *builder = ColumnBuilder::new(&column.kind, Capacity::of(array.as_ref()));
            arrays.push(array);
        }
        self.rows = 0;
        self.bytes = 0;
        RecordBatch::try_new(Arc::clone(&self.schema), arrays)
            .map_err(|e| Error::Io(format!("assembling a batch failed: {e}")))
    }
}
