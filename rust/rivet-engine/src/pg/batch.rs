//! Assembling decoded columns into bounded record batches.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use crate::batch::{Fill, RowBatch};
use crate::error::{Error, Result};
use crate::metadata::{Column, arrow_schema};
use crate::pg::decode::{Capacity, ColumnBuilder};
use crate::pg::types::PgKind;

/// A result column mapped to Arrow.
pub type PgColumn = Column<PgKind>;

/// Accumulates rows column by column.
pub struct PgBatchBuilder {
    schema: SchemaRef,
    columns: Vec<PgColumn>,
    builders: Vec<ColumnBuilder>,
    fill: Fill,
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
            fill: Fill::default(),
        }
    }

    /// Number of columns.
    pub fn width(&self) -> usize {
        self.builders.len()
    }

    /// Append a value to column `col` of the current row.
    #[inline]
    pub fn append(&mut self, col: usize, value: Option<&[u8]>) -> Result<()> {
        self.fill.bytes += value.map_or(1, |v| v.len() + 4);
        self.builders[col]
            .append(value)
            .map_err(|m| Error::decode(&self.columns[col].name, m))
    }

    /// Close the current row.
    #[inline]
    pub fn end_row(&mut self) {
        self.fill.rows += 1;
    }
}

impl RowBatch for PgBatchBuilder {
    fn fill(&self) -> Fill {
        self.fill
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
        self.fill = Fill::default();
        RecordBatch::try_new(Arc::clone(&self.schema), arrays)
            .map_err(|e| Error::Io(format!("assembling a batch failed: {e}")))
    }
}
