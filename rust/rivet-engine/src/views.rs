//! Text columns as views over their own bytes: the layout polars keeps.
//!
//! A consumer that holds text as views (polars does) converts offsets-based strings
//! on import and keeps the original bytes alive beside its views, with their
//! offsets buffer pinned for nothing. Handing it views built here, over the same
//! bytes buffer, costs 16 bytes a value and drops the offsets.

use std::sync::Arc;

use arrow_array::builder::make_view;
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, GenericStringArray, OffsetSizeTrait, StringViewArray};
use arrow_buffer::ScalarBuffer;
use arrow_schema::DataType;

/// `array` as a `Utf8View` array sharing its bytes, or `None` when it is not text
/// (or its bytes do not fit the signed 32-bit offsets of a view).
pub fn text_as_views(array: &ArrayRef) -> Option<ArrayRef> {
    match array.data_type() {
        DataType::Utf8 => views(array.as_string::<i32>()),
        DataType::LargeUtf8 => views(array.as_string::<i64>()),
        _ => None,
    }
}

fn views<O: OffsetSizeTrait>(strings: &GenericStringArray<O>) -> Option<ArrayRef> {
    let offsets = strings.value_offsets();
    let (first, last) = (offsets.first()?.as_usize(), offsets.last()?.as_usize());
    // A view's offset is read as a signed 32-bit integer (pyarrow, the Arrow spec).
    if last - first > i32::MAX as usize {
        return None;
    }
    let bytes = strings.values().slice_with_length(first, last - first);
    let data = bytes.as_slice();
    let views: ScalarBuffer<u128> = offsets
        .windows(2)
        .map(|pair| {
            let (start, end) = (pair[0].as_usize() - first, pair[1].as_usize() - first);
            // In range: `data` is at most i32::MAX bytes long.
            make_view(&data[start..end], 0, start as u32)
        })
        .collect();
    let array = StringViewArray::try_new(views, vec![bytes], strings.nulls().cloned()).ok()?;
    Some(Arc::new(array))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int32Array, LargeStringArray, StringArray};

    #[test]
    fn views_read_back_the_same_values_nulls_included() {
        let long = "a value longer than twelve bytes, é and all";
        let source: ArrayRef = Arc::new(LargeStringArray::from(vec![
            Some("short"),
            None,
            Some(long),
            Some(""),
            Some("twelve bytes"),
        ]));
        let views = text_as_views(&source).unwrap();
        let views = views.as_string_view();
        let read: Vec<Option<&str>> = views.iter().collect();
        assert_eq!(
            read,
            [
                Some("short"),
                None,
                Some(long),
                Some(""),
                Some("twelve bytes")
            ]
        );
    }

    #[test]
    fn a_sliced_array_keeps_its_own_values() {
        let source = StringArray::from(vec![
            "first value, long enough",
            "b",
            "third value, long enough",
        ]);
        let sliced: ArrayRef = Arc::new(source.slice(1, 2));
        let views = text_as_views(&sliced).unwrap();
        let read: Vec<Option<&str>> = views.as_string_view().iter().collect();
        assert_eq!(read, [Some("b"), Some("third value, long enough")]);
    }

    #[test]
    fn a_slice_holds_only_its_own_bytes() {
        let source = StringArray::from(vec![
            "first value, long enough",
            "b",
            "third value, long enough",
        ]);
        let sliced: ArrayRef = Arc::new(source.slice(0, 2));
        let views = text_as_views(&sliced).unwrap();
        assert_eq!(
            views.as_string_view().data_buffers()[0].len(),
            "first value, long enough".len() + 1
        );
    }

    #[test]
    fn views_share_the_bytes_instead_of_copying_them() {
        let source = LargeStringArray::from(vec!["a value longer than twelve bytes"]);
        let pointer = source.values().as_ptr();
        let views = text_as_views(&(Arc::new(source) as ArrayRef)).unwrap();
        assert_eq!(views.as_string_view().data_buffers()[0].as_ptr(), pointer);
    }

    #[test]
    fn other_types_are_left_alone() {
        let numbers: ArrayRef = Arc::new(Int32Array::from(vec![1, 2]));
        assert!(text_as_views(&numbers).is_none());
    }
}
