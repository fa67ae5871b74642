//! The upstream records of one page, kept for `include=raw` alone, LZ4-compressed as one
//! block (SPEC §7: the cache is bounded however large a tenant's records are).
//!
//! Sorting, filtering and paging read only the normalized [`User`](crate::model::User)s;
//! the record, often ten times their size, is unpacked only to render it. On the sandbox's
//! large tenant (3.5 KB records, 100 a page) a page's records pack 2.9× smaller; unpacking
//! one takes about 0.2 ms, once per page per response (`docs/BENCHMARKS.md`).

use serde_json::value::RawValue;

/// A page's records, as received (after redaction), in page order.
pub struct RawRecords {
    /// `lz4_flex` block, its uncompressed length prepended.
    packed: Box<[u8]>,
    /// Where each record ends in the unpacked text.
    ends: Box<[u32]>,
}

impl RawRecords {
    /// Packs records; their text must be JSON (as a `RawValue`'s is).
    pub fn pack<'a>(records: impl IntoIterator<Item = &'a RawValue>) -> RawRecords {
        let mut text = String::new();
        let mut ends = Vec::new();
        for record in records {
            text.push_str(record.get());
            // A page of over 4 GiB never gets here: bodies are size-limited (SPEC §8).
            ends.push(u32::try_from(text.len()).unwrap_or(u32::MAX));
        }
        RawRecords {
            packed: lz4_flex::compress_prepend_size(text.as_bytes()).into_boxed_slice(),
            ends: ends.into_boxed_slice(),
        }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The packed block and the record ends, as the shared tier stores them.
    pub fn parts(&self) -> (&[u8], &[u32]) {
        (&self.packed, &self.ends)
    }

    /// Records from [`RawRecords::parts`] read back: `None` unless the ends never go back
    /// and the block unpacks to at least the last end's length.
    pub fn from_parts(packed: Vec<u8>, ends: Vec<u32>) -> Option<RawRecords> {
        let ordered = ends.windows(2).all(|pair| pair[0] <= pair[1]);
        let declared = packed
            .get(..4)
            .map(|len| u32::from_le_bytes([len[0], len[1], len[2], len[3]]));
        let fits = declared.is_some_and(|len| ends.last().is_none_or(|&last| last <= len));
        (ordered && fits).then(|| RawRecords {
            packed: packed.into_boxed_slice(),
            ends: ends.into_boxed_slice(),
        })
    }

    /// Heap bytes held, for the cache's weigher.
    pub fn heap_bytes(&self) -> usize {
        self.packed.len() + self.ends.len() * std::mem::size_of::<u32>()
    }

    /// Every record's text, unpacked.
    pub fn unpack(&self) -> Unpacked<'_> {
        let text = lz4_flex::decompress_size_prepended(&self.packed)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok());
        if text.is_none() {
            // Packed by `pack` from UTF-8 text: only a bug gets here.
            tracing::error!("a page's packed upstream records did not unpack");
        }
        Unpacked {
            text: text.unwrap_or_default(),
            ends: &self.ends,
        }
    }
}

impl std::fmt::Debug for RawRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawRecords")
            .field("records", &self.len())
            .field("packed_bytes", &self.packed.len())
            .finish()
    }
}

/// A page's records unpacked, for one response.
pub struct Unpacked<'a> {
    text: String,
    ends: &'a [u32],
}

impl Unpacked<'_> {
    /// Record `idx` as received; `None` only if the records failed to unpack.
    pub fn get(&self, idx: usize) -> Option<&RawValue> {
        let end = *self.ends.get(idx)? as usize;
        let start = idx.checked_sub(1).map_or(0, |before| self.ends[before] as usize);
        let text = self.text.get(start..end)?;
        serde_json::from_str(text).ok()
    }
}

/// The unpacked records of the pages one response shows: each page unpacked once.
#[derive(Default)]
pub struct UnpackedPages<'a> {
    pages: Vec<(&'a RawRecords, Unpacked<'a>)>,
}

impl<'a> UnpackedPages<'a> {
    /// Unpacks `records` unless already done.
    pub fn add(&mut self, records: &'a RawRecords) {
        if !self.pages.iter().any(|(seen, _)| std::ptr::eq(*seen, records)) {
            self.pages.push((records, records.unpack()));
        }
    }

    /// Record `idx` of `records`, which must have been added.
    pub fn get(&self, records: &RawRecords, idx: usize) -> Option<&RawValue> {
        let (_, unpacked) = self.pages.iter().find(|(seen, _)| std::ptr::eq(*seen, records))?;
        unpacked.get(idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn an_empty_page_packs_and_unpacks() {
        let records = RawRecords::pack([]);
        assert!(records.is_empty());
        assert!(records.unpack().get(0).is_none());
    }

    #[test]
    fn pages_unpack_once_per_response() {
        let a = RawRecords::pack([&*raw(r#"{"id":"a"}"#), &*raw(r#"{"id":"b"}"#)]);
        let b = RawRecords::pack([&*raw("[1, 2]")]);
        let mut pages = UnpackedPages::default();
        for records in [&a, &b, &a] {
            pages.add(records);
        }
        assert_eq!(pages.pages.len(), 2);
        assert_eq!(pages.get(&a, 1).map(RawValue::get), Some(r#"{"id":"b"}"#));
        assert_eq!(pages.get(&b, 0).map(RawValue::get), Some("[1, 2]"));
        assert!(pages.get(&b, 1).is_none());
    }

    proptest! {
        /// Whatever the records (escapes, non-ASCII, whitespace kept), each comes back byte
        /// for byte, and a page of repetitive records packs smaller than its text.
        #[test]
        fn records_come_back_as_received(values in proptest::collection::vec(any::<(String, i64, bool)>(), 0..40)) {
            let texts: Vec<String> = values
                .iter()
                .map(|(name, n, flag)| format!("{{ \"name\": {}, \"n\":{n},\"flag\" :{flag} }}", serde_json::to_string(name).unwrap()))
                .collect();
            let boxed: Vec<Box<RawValue>> = texts.iter().map(|text| raw(text)).collect();
            let records = RawRecords::pack(boxed.iter().map(|record| &**record));
            let unpacked = records.unpack();
            for (idx, text) in texts.iter().enumerate() {
                prop_assert_eq!(unpacked.get(idx).map(RawValue::get), Some(text.as_str()));
            }
            prop_assert!(unpacked.get(texts.len()).is_none());
            let total: usize = texts.iter().map(String::len).sum();
            if texts.len() >= 10 {
                prop_assert!(records.heap_bytes() < total + texts.len() * 4, "{} vs {}", records.heap_bytes(), total);
            }
        }
    }
}
