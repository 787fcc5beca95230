//! UUIDs from their text to their 16 bytes, for Parquet's own UUID type: readers hand a
//! `uuid` over as its canonical text (`8-4-4-4-12` hex digits), which is what a Parquet
//! `FIXED_LEN_BYTE_ARRAY(16)` annotated UUID holds as bytes.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, FixedSizeBinaryArray, RecordBatch};
use arrow_schema::{DataType, Field, Schema};

use crate::error::{Error, Result};

/// Where the dashes of a UUID's canonical text are.
const DASHES: [usize; 4] = [8, 13, 18, 23];

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The 16 bytes of a UUID written as `8-4-4-4-12` hex digits (either case); None for anything else.
pub fn uuid_bytes(text: &[u8]) -> Option<[u8; 16]> {
    if text.len() != 36 || DASHES.iter().any(|&i| text[i] != b'-') {
        return None;
    }
    let mut digits = text.iter().enumerate().filter(|(i, _)| !DASHES.contains(i));
    let mut out = [0u8; 16];
    for byte in &mut out {
        let (_, high) = digits.next()?;
        let (_, low) = digits.next()?;
        *byte = (nibble(*high)? << 4) | nibble(*low)?;
    }
    Some(out)
}

/// Every column of `batch` (text) as FixedSizeBinary(16) UUIDs, NULLs kept; a value that is not
/// a UUID's canonical text is an error naming its column.
pub fn text_to_uuid_bytes(batch: &RecordBatch) -> Result<RecordBatch> {
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let values: Vec<Option<[u8; 16]>> = match column.data_type() {
            DataType::Utf8 => collect(field, column.as_string::<i32>().iter())?,
            DataType::LargeUtf8 => collect(field, column.as_string::<i64>().iter())?,
            DataType::Utf8View => collect(field, column.as_string_view().iter())?,
            other => {
                return Err(Error::decode(
                    field.name(),
                    format!("a uuid column of type {other}, not text"),
                ));
            }
        };
        let array = FixedSizeBinaryArray::try_from_sparse_iter_with_size(values.into_iter(), 16)
            .map_err(|e| Error::Internal(format!("building uuid bytes: {e}")))?;
        // A column of NULLs only comes back without a size; its type is still 16 bytes.
        let array = if array.value_length() == 16 {
            array
        } else {
            FixedSizeBinaryArray::new_null(16, column.len())
        };
        fields.push(Field::new(
            field.name(),
            DataType::FixedSizeBinary(16),
            true,
        ));
        columns.push(Arc::new(array));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| Error::Internal(format!("building uuid bytes: {e}")))
}

fn collect<'a>(
    field: &Field,
    values: impl Iterator<Item = Option<&'a str>>,
) -> Result<Vec<Option<[u8; 16]>>> {
    values.map(|v| parsed(field, v)).collect()
}

fn parsed(field: &Field, value: Option<&str>) -> Result<Option<[u8; 16]>> {
    value
        .map(|v| {
            uuid_bytes(v.as_bytes()).ok_or_else(|| {
                // The value itself stays out of the message: it is row data, and messages reach logs.
                let count = v.chars().count();
                Error::decode(
                    field.name(),
                    format!("a value of {count} characters is not a UUID's canonical text"),
                )
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use arrow_array::StringArray;

    use super::*;

    #[test]
    fn canonical_text_becomes_its_bytes_and_nulls_stay() {
        let text = StringArray::from(vec![
            Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            None,
            Some("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"),
        ]);
        let schema = Arc::new(Schema::new(vec![Field::new("u", DataType::Utf8, true)]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(text)]).unwrap();
        let out = text_to_uuid_bytes(&batch).unwrap();
        let bytes = out.column(0).as_fixed_size_binary();
        let expected = [
            0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38,
            0x0a, 0x11,
        ];
        assert_eq!(bytes.value(0), expected);
        assert!(bytes.is_null(1));
        assert_eq!(bytes.value(2), expected);
    }

    #[test]
    fn anything_else_is_refused_by_column() {
        for bad in [
            "a0eebc999c0b4ef8bb6d6bb9bd380a11",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1g",
            "",
            "a0eebc99-9c0b",
        ] {
            assert!(uuid_bytes(bad.as_bytes()).is_none(), "{bad}");
        }
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, true)]));
        let text = StringArray::from(vec!["not a uuid"]);
        let batch = RecordBatch::try_new(schema, vec![Arc::new(text)]).unwrap();
        let err = text_to_uuid_bytes(&batch).unwrap_err().to_string();
        assert!(
            err.contains("\"id\"") && err.contains("not a UUID"),
            "{err}"
        );
    }

    #[test]
    fn a_column_of_nulls_keeps_its_width() {
        let schema = Arc::new(Schema::new(vec![Field::new("u", DataType::Utf8, true)]));
        let text = StringArray::from(vec![None::<&str>, None]);
        let batch = RecordBatch::try_new(schema, vec![Arc::new(text)]).unwrap();
        let out = text_to_uuid_bytes(&batch).unwrap();
        assert_eq!(out.column(0).data_type(), &DataType::FixedSizeBinary(16));
        assert_eq!(out.column(0).null_count(), 2);
    }
}
