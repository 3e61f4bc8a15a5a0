//! Serialize envelopes once, then build gzip request bodies from the bytes.
//!
//! [`encode`] writes each envelope's JSON into one buffer; an item over the service's 64 KiB
//! item limit is shrunk ([`Envelope::shrink`](crate::wire::Envelope::shrink)) or dropped.
//! [`Gzip::bodies`] turns any subset of the items into gzip JSON-array bodies within the
//! request limits, so a retry resends bytes and a 206 re-sends just the failed items.

use std::io;
use std::sync::Mutex;

use super::gzip::{Level, Stream, Tune};
use crate::wire::limits::{MAX_ITEMS_PER_REQUEST, MAX_ITEM_BYTES};
use crate::wire::Envelope;

/// The gzip level of log bodies, and the default (0 = store, 9 = smallest).
///
/// Level 2 (zlib-rs' "fast" strategy) measured in `benches/logs_export.rs`, 512 records: 33
/// bytes per record, against 32 at level 6 for about 2.5 times the compression CPU, which
/// would double the CPU of a log export. Level 1 ("quick") gives 48 bytes.
pub(crate) const GZIP_LEVEL: Level = Level::new(2);

/// The gzip level of span bodies. Measured in `benches/trace_export.rs` (512 spans): level 2
/// gives 58-60 bytes per span, more than the leading Rust exporter's 55-56, because the
/// Python exporter's process tags make the constant head of every item longer than gzip's
/// longest match (258 bytes), which the "fast" strategy handles badly; level 3 gives 55 (a
/// ratio of 0.99 to 1.00, too close), level 4 gives 49 for about 15% more CPU than level 3
/// (0.17 to 0.19 times the other exporter's in three runs). The whole-pipeline bench
/// (`benches/pipeline.rs`, 200,000 spans) agrees: level 3 gave 55.2 bytes per span against the
/// other exporter's 55.5 and 4.00 µs per span (OTLP 4.10 in that run); level 4 gives 49.5 bytes
/// for 3.95 to 4.75 µs between runs. Level 4 keeps the byte target with room; the CPU
/// difference between the two is within the noise of one run, and gzip is most of the delivery
/// thread's CPU either way (zlib-rs' `deflate_medium` and `longest_match`).
///
/// Tuned with zlib's `deflateTune` ([`super::gzip`]): level 4's strategy with a lazy match of 4
/// (level 4: 12), a nice length of 32 (32) and a chain of 4 (24): a shorter search and less
/// lazy matching, for less CPU and a few more bytes. Measured on the bench's 512-span batch, in
/// twenty interleaved rounds with zlib-rs: level 4, 49.4 bytes per span and 1.46 µs of gzip;
/// the first tuning (lazy 6, nice 64, chain 8), 49.1 bytes and 1.05 µs; this one, 51.4 bytes
/// and 0.90 µs. Gzip is about a third of a span export's CPU (`benches/pipeline.rs`), so this
/// one gives about 4% of it for 5% more bytes, still 0.92 times the leading Rust exporter's
/// 55.6. Bytes on the wire are not what Azure Monitor bills (it counts the uncompressed JSON);
/// the CPU is the application's. Shorter still (a nice length of 16, or a chain of 2) costs
/// more bytes for no gain. The same tuning costs metric bodies more bytes, and log bodies
/// (level 2, the "fast" strategy) gain nothing from it, so only spans use it. miniz_oxide,
/// safe and tunable, is two to three times slower at these sizes.
pub(crate) const SPAN_GZIP_LEVEL: Level = Level::tuned(
    4,
    Tune {
        good: 4,
        lazy: 4,
        nice: 32,
        chain: 4,
    },
);

/// The gzip level of metric bodies. A collection repeats the same names and attributes point
/// after point, which zlib-rs' "medium" strategy (levels 4 to 6) finds and "fast" does not:
/// measured in `benches/metrics_export.rs`, level 4 makes the bodies about a fifth smaller than
/// level 2 for little CPU, since metric JSON is cheap to produce.
pub(crate) const METRICS_GZIP_LEVEL: Level = Level::new(4);

/// Most items in one request body (the service's limit).
pub(crate) const MAX_BODY_ITEMS: usize = MAX_ITEMS_PER_REQUEST;

/// Most bytes of uncompressed JSON in one request body.
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The separator written after each item in [`EncodedItems`]' buffer, so that a run of
/// consecutive items is already a valid comma-separated JSON sequence.
const SEPARATOR: u8 = b',';

/// The JSON of a batch of telemetry items, each item serialized once.
///
/// All items live in one buffer, each followed by a comma; `ends[i]` is where item `i` ends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct EncodedItems {
    buf: Vec<u8>,
    ends: Vec<usize>,
    dropped: usize,
}

/// Buffers of batches that are done with, kept for the next batches. A batch's buffer is a
/// few hundred KiB; allocating it fresh for every export and freeing it on the delivery thread
/// cost about 5% of a log export's CPU in `benches/pipeline.rs` (page faults on the new memory,
/// the heap growing and shrinking), which reuse saves. At most [`SPARE_BUFFERS`] are kept, of
/// at most [`SPARE_BUFFER_BYTES`] each, so what is kept idle stays small and bounded.
static SPARE: Spare = Spare::new();

/// How many spare buffers are kept.
const SPARE_BUFFERS: usize = 2;

/// The largest buffer kept as a spare; a larger one (a batch of unusually large items) is
/// freed.
const SPARE_BUFFER_BYTES: usize = 2 * 1024 * 1024;

/// A few empty buffers for reuse (see [`SPARE`]).
struct Spare(Mutex<Vec<Vec<u8>>>);

impl Spare {
    const fn new() -> Self {
        Spare(Mutex::new(Vec::new()))
    }

    /// An empty buffer with room for at least `bytes` bytes: a spare one if there is one
    /// (spares are emptied when given).
    fn take(&self, bytes: usize) -> Vec<u8> {
        let spare = self.0.try_lock().ok().and_then(|mut spare| spare.pop());
        match spare {
            Some(mut buf) => {
                buf.reserve(bytes);
                buf
            }
            None => Vec::with_capacity(bytes),
        }
    }

    /// Keeps `buf` as a spare if there is room for it, else frees it.
    fn give(&self, mut buf: Vec<u8>) {
        if buf.capacity() == 0 || buf.capacity() > SPARE_BUFFER_BYTES {
            return;
        }
        // Never wait for the lock: another thread is taking or giving a buffer, and freeing
        // this one is as good.
        if let Ok(mut spare) = self.0.try_lock() {
            if spare.len() < SPARE_BUFFERS {
                buf.clear();
                spare.push(buf);
            }
        }
    }
}

impl Drop for EncodedItems {
    fn drop(&mut self) {
        SPARE.give(std::mem::take(&mut self.buf));
    }
}

impl EncodedItems {
    /// An empty batch with room for about `bytes` bytes of JSON and `items` items.
    pub(crate) fn with_capacity(bytes: usize, items: usize) -> Self {
        EncodedItems {
            buf: SPARE.take(bytes),
            ends: Vec::with_capacity(items),
            dropped: 0,
        }
    }

    /// Empties the batch, keeping its buffers for reuse.
    #[cfg(test)]
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
        self.dropped = 0;
    }

    /// Serializes `envelope` and appends it. An item over [`MAX_ITEM_BYTES`] is shrunk until
    /// it fits; if it cannot be made to fit it is dropped, reported through the internal log
    /// and counted in [`dropped`](Self::dropped). Returns whether the item was kept.
    pub(crate) fn push(&mut self, mut envelope: Envelope<'_>) -> bool {
        let start = self.buf.len();
        loop {
            envelope.write_json(&mut self.buf);
            let size = self.buf.len() - start;
            if size <= MAX_ITEM_BYTES {
                self.ends.push(self.buf.len());
                self.buf.push(SEPARATOR);
                return true;
            }
            self.buf.truncate(start);
            if !envelope.shrink() {
                self.dropped += 1;
                opentelemetry::otel_warn!(
                    name: "AzureMonitor.Transmit.ItemTooLarge",
                    message = "a telemetry item is larger than the 64 KiB the ingestion service accepts, even with its properties cut, and was dropped",
                    envelope = envelope.data.envelope_name(),
                    bytes = size
                );
                return false;
            }
        }
    }

    /// Appends an item that is already JSON, such as a line read back from offline storage.
    /// Nothing is checked: the caller vouches that `json` is one JSON object.
    pub(crate) fn push_json(&mut self, json: &[u8]) {
        self.buf.extend_from_slice(json);
        self.ends.push(self.buf.len());
        self.buf.push(SEPARATOR);
    }

    /// How many items the batch holds.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the batch holds no item.
    pub(crate) fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// How many items were dropped while encoding (too large or not serializable).
    #[cfg(test)]
    pub(crate) fn dropped(&self) -> usize {
        self.dropped
    }

    /// Where item `i` starts in the buffer.
    fn start(&self, i: usize) -> usize {
        match i.checked_sub(1) {
            Some(prev) => self.ends.get(prev).map_or(self.buf.len(), |e| e + 1),
            None => 0,
        }
    }

    /// The JSON of item `i` (no separator), or `None` if there is no such item.
    pub(crate) fn get(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)?;
        self.buf.get(self.start(i)..end)
    }

    /// The byte length of item `i`'s JSON (0 if there is no such item).
    #[cfg(test)]
    pub(crate) fn item_len(&self, i: usize) -> usize {
        self.get(i).map_or(0, <[u8]>::len)
    }

    /// The JSON of items `first..=last`, separated by commas.
    fn run(&self, first: usize, last: usize) -> &[u8] {
        match self.ends.get(last) {
            Some(&end) if first <= last => self.buf.get(self.start(first)..end).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// Each item's JSON, in order.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }
}

/// Serializes envelopes, each once, into one buffer (see [`EncodedItems::push`]).
pub(crate) fn encode<'a>(envelopes: impl IntoIterator<Item = Envelope<'a>>) -> EncodedItems {
    let envelopes = envelopes.into_iter();
    let n = envelopes.size_hint().0;
    encode_counted(n, envelopes)
}

/// [`encode`] for an iterator that does not know its length: `n` is how many envelopes to
/// expect, so that the buffer is allocated once instead of grown step by step.
pub(crate) fn encode_counted<'a>(
    n: usize,
    envelopes: impl IntoIterator<Item = Envelope<'a>>,
) -> EncodedItems {
    // Spans and log records are typically 0.5 to 2 KiB of JSON.
    let mut items = EncodedItems::with_capacity(n.saturating_mul(1024), n);
    for envelope in envelopes {
        items.push(envelope);
    }
    items
}

/// One gzip request body: a JSON array of some items.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Body {
    /// The gzip-compressed JSON array.
    pub(crate) gzip: Vec<u8>,
    /// Which items it holds, as indices into the [`EncodedItems`], in array order: the item at
    /// position `p` of the array is `items[p]`.
    pub(crate) items: Vec<usize>,
}

/// Splits `indices` into groups that each fit in one body: at most `max_items` items and at
/// most `max_bytes` bytes of `[a,b,...]` JSON. An item larger than `max_bytes` on its own gets
/// a body of its own. Indices of items that do not exist are skipped; order is kept.
pub(crate) fn split(
    items: &EncodedItems,
    indices: impl IntoIterator<Item = usize>,
    max_items: usize,
    max_bytes: usize,
) -> Vec<Vec<usize>> {
    let max_items = max_items.max(1);
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut bytes = 2; // "[]"
    for i in indices {
        let Some(item) = items.get(i) else { continue };
        let added = item.len() + usize::from(!current.is_empty());
        if !current.is_empty() && (current.len() >= max_items || bytes + added > max_bytes) {
            groups.push(std::mem::take(&mut current));
            bytes = 2;
        }
        bytes += item.len() + usize::from(!current.is_empty());
        current.push(i);
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

/// A reusable gzip compressor for request bodies. Keeping one avoids allocating the
/// compressor's state (a few hundred KiB) for every body.
pub(crate) struct Gzip {
    stream: Stream,
    /// Where bodies are compressed, kept from body to body (up to [`SCRATCH_BYTES`]); each
    /// body is then copied out at its exact size. Allocating room for the compressed output
    /// body by body (a quarter of the JSON: about 100 KiB for 512 spans, five times what they
    /// compress to) made the heap grow and shrink on every export.
    scratch: Vec<u8>,
}

/// The largest compression buffer [`Gzip`] keeps between bodies.
const SCRATCH_BYTES: usize = 2 * 1024 * 1024;

impl std::fmt::Debug for Gzip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gzip").finish_non_exhaustive()
    }
}

impl Gzip {
    /// A compressor at `level` (see [`GZIP_LEVEL`]).
    ///
    /// # Errors
    ///
    /// If zlib cannot allocate its state.
    pub(crate) fn new(level: Level) -> io::Result<Self> {
        Ok(Gzip {
            stream: Stream::new(level)?,
            scratch: Vec::new(),
        })
    }

    /// Builds the gzip JSON-array bodies for `indices` (in that order), split so that no body
    /// exceeds [`MAX_BODY_ITEMS`] items or [`MAX_BODY_BYTES`] of uncompressed JSON. Every
    /// existing item is in exactly one body; indices of items that do not exist are skipped.
    ///
    /// # Errors
    ///
    /// Only if the compressor fails, which does not happen with valid input.
    pub(crate) fn bodies(
        &mut self,
        items: &EncodedItems,
        indices: impl IntoIterator<Item = usize>,
    ) -> io::Result<Vec<Body>> {
        split(items, indices, MAX_BODY_ITEMS, MAX_BODY_BYTES)
            .into_iter()
            .map(|group| {
                let gzip = self.body(items, &group)?;
                Ok(Body { gzip, items: group })
            })
            .collect()
    }

    /// Compresses `[item,item,...]` for `group`, writing each run of consecutive items in one go.
    fn body(&mut self, items: &EncodedItems, group: &[usize]) -> io::Result<Vec<u8>> {
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        let body = self.compress(items, group, &mut out);
        if out.capacity() <= SCRATCH_BYTES {
            self.scratch = out;
        }
        body
    }

    /// Compresses the body of `group` into `out`, and returns a copy of exactly its size.
    fn compress(
        &mut self,
        items: &EncodedItems,
        group: &[usize],
        out: &mut Vec<u8>,
    ) -> io::Result<Vec<u8>> {
        self.stream.begin()?;
        self.stream.write(b"[", out, false)?;
        let mut rest = group;
        let mut first = true;
        while let Some((&start, tail)) = rest.split_first() {
            // Extend the run while indices are consecutive.
            let mut last = start;
            let mut len = 0;
            for &i in tail {
                if Some(i) != last.checked_add(1) {
                    break;
                }
                last = i;
                len += 1;
            }
            rest = tail.get(len..).unwrap_or(&[]);
            if !first {
                self.stream.write(b",", out, false)?;
            }
            first = false;
            self.stream.write(items.run(start, last), out, false)?;
        }
        self.stream.write(b"]", out, true)?;
        Ok(out.as_slice().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use proptest::prelude::*;

    use super::*;
    use crate::wire::{Data, EventData, MessageData, SharedTags, Tags, TimeAt, Timestamp};

    fn message<'a>(shared: &'a SharedTags, text: &str, props: &[(&str, String)]) -> Envelope<'a> {
        let mut data = MessageData {
            message: text.to_owned().into(),
            ..Default::default()
        };
        for (k, v) in props {
            data.properties.insert(k.to_string(), v.clone());
        }
        Envelope {
            time: Timestamp(std::time::UNIX_EPOCH),
            sample_rate: None,
            ikey: "00000000-0000-0000-0000-000000000000",
            tags: Tags::new(shared),
            data: Data::Message(data),
            time_at: TimeAt::AfterTags,
        }
    }

    /// Items whose JSON is `"<i>"`-ish strings of the given lengths (not envelopes: splitting
    /// and gzip do not care).
    fn fake_items(lens: &[usize]) -> EncodedItems {
        let mut items = EncodedItems::default();
        for (i, &len) in lens.iter().enumerate() {
            let start = items.buf.len();
            items.buf.extend_from_slice(format!("{i}").as_bytes());
            while items.buf.len() - start < len {
                items.buf.push(b'0');
            }
            items.ends.push(items.buf.len());
            items.buf.push(SEPARATOR);
        }
        items
    }

    fn gunzip(gzip: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let read = flate2::read::GzDecoder::new(gzip).read_to_end(&mut out);
        assert!(read.is_ok(), "not gzip: {read:?}");
        out
    }

    #[test]
    fn encodes_each_item_as_json() {
        let shared = SharedTags::default();
        let items = encode([
            message(&shared, "one", &[]),
            message(&shared, "two", &[("k", "v".into())]),
        ]);
        assert_eq!(items.len(), 2);
        assert_eq!(items.dropped(), 0);
        let values: Vec<serde_json::Value> = items
            .iter()
            .map(|j| serde_json::from_slice(j).unwrap_or_default())
            .collect();
        assert_eq!(values[0]["data"]["baseData"]["message"], "one");
        assert_eq!(values[1]["data"]["baseData"]["properties"]["k"], "v");
        assert_eq!(items.get(2), None);
        assert_eq!(items.item_len(9), 0);
    }

    #[test]
    fn shrinks_items_over_64_kib_and_drops_what_cannot_fit() {
        let shared = SharedTags::default();
        let big: Vec<(&str, String)> = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]
            .iter()
            .map(|k| (*k, "x".repeat(8192)))
            .collect();
        // 80 KiB of properties: shrunk to fit.
        let fits = message(&shared, "m", &big);
        // A message of 32768 four-byte characters is 128 KiB: the message itself is cut.
        let long_message = message(&shared, &"😀".repeat(32768), &[]);
        // 600 properties with 150-character keys and short values: nothing worth cutting.
        let keys: Vec<(String, String)> = (0..600)
            .map(|i| (format!("{i:0>150}"), "v".to_owned()))
            .collect();
        let refs: Vec<(&str, String)> = keys.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let too_big = message(&shared, "m", &refs);
        let mut small_event = Envelope {
            data: Data::Event(EventData {
                name: "e".into(),
                ..Default::default()
            }),
            ..message(&shared, "", &[])
        };
        small_event.sample_rate = Some(50.0);
        let items = encode([fits, long_message, too_big, small_event]);
        assert_eq!(items.len(), 3);
        assert_eq!(items.dropped(), 1);
        for i in 0..2 {
            assert!(items.item_len(i) <= MAX_ITEM_BYTES);
            assert!(
                items.item_len(i) > MAX_ITEM_BYTES / 2,
                "cut more than needed"
            );
        }
        let v: serde_json::Value =
            serde_json::from_slice(items.get(0).unwrap_or_default()).unwrap_or_default();
        assert_eq!(
            v["data"]["baseData"]["properties"]
                .as_object()
                .map(|o| o.len()),
            Some(10)
        );
        let m: serde_json::Value =
            serde_json::from_slice(items.get(1).unwrap_or_default()).unwrap_or_default();
        let text = m["data"]["baseData"]["message"]
            .as_str()
            .unwrap_or_default();
        assert!(text.starts_with("😀😀") && text.chars().all(|c| c == '😀'));
        let e: serde_json::Value =
            serde_json::from_slice(items.get(2).unwrap_or_default()).unwrap_or_default();
        assert_eq!(e["data"]["baseType"], "EventData");
    }

    #[test]
    fn keeps_a_few_spare_buffers_of_bounded_size() {
        let spare = Spare::new();
        let mut used = Vec::with_capacity(1000);
        used.extend_from_slice(b"old bytes");
        let at = used.as_ptr();
        spare.give(used);
        let again = spare.take(500);
        assert!(again.is_empty(), "a spare buffer comes back empty");
        assert_eq!(again.as_ptr(), at, "the spare buffer is reused");
        let grown = {
            spare.give(again);
            spare.take(5000)
        };
        assert!(
            grown.capacity() >= 5000,
            "a spare buffer grows to what is asked"
        );
        // Bounded: no more than SPARE_BUFFERS, none larger than SPARE_BUFFER_BYTES.
        spare.give(Vec::with_capacity(SPARE_BUFFER_BYTES + 1));
        for _ in 0..SPARE_BUFFERS + 3 {
            spare.give(Vec::with_capacity(64));
        }
        let kept = spare
            .0
            .lock()
            .map(|s| s.iter().map(Vec::capacity).collect::<Vec<_>>());
        assert_eq!(kept.ok(), Some(vec![64; SPARE_BUFFERS]));
    }

    #[test]
    fn reuses_its_buffer() {
        let shared = SharedTags::default();
        let mut items = encode([message(&shared, "a", &[])]);
        let cap = items.buf.capacity();
        items.clear();
        assert!(items.is_empty());
        items.push(message(&shared, "b", &[]));
        assert_eq!(items.len(), 1);
        assert_eq!(items.buf.capacity(), cap);
    }

    #[test]
    fn a_body_is_a_gzip_json_array_of_the_chosen_items() {
        let shared = SharedTags::default();
        let items = encode((0..6).map(|i| message(&shared, &format!("m{i}"), &[])));
        let Ok(mut gz) = Gzip::new(GZIP_LEVEL) else {
            panic!("a compressor")
        };
        for subset in [
            vec![0, 1, 2, 3, 4, 5],
            vec![1, 3, 4],
            vec![5],
            vec![4, 2, 0, 1],
        ] {
            let bodies = gz
                .bodies(&items, subset.iter().copied())
                .unwrap_or_default();
            assert_eq!(bodies.len(), 1);
            assert_eq!(bodies[0].items, subset);
            let json: Vec<serde_json::Value> =
                serde_json::from_slice(&gunzip(&bodies[0].gzip)).unwrap_or_default();
            let messages: Vec<String> = json
                .iter()
                .map(|v| {
                    v["data"]["baseData"]["message"]
                        .as_str()
                        .unwrap_or("?")
                        .to_owned()
                })
                .collect();
            let expected: Vec<String> = subset.iter().map(|i| format!("m{i}")).collect();
            assert_eq!(messages, expected);
        }
        assert!(gz.bodies(&items, []).unwrap_or_default().is_empty());
        assert!(gz.bodies(&items, [99]).unwrap_or_default().is_empty());
    }

    #[test]
    fn splits_at_the_service_limits() {
        // 64,000 items per body.
        let many = fake_items(&vec![1; MAX_BODY_ITEMS + 5]);
        let groups = split(&many, 0..many.len(), MAX_BODY_ITEMS, MAX_BODY_BYTES);
        assert_eq!(
            groups.iter().map(Vec::len).collect::<Vec<_>>(),
            [MAX_BODY_ITEMS, 5]
        );
        // 1 MiB per body: 20 items of 60,000 bytes are 17 + 3 (17 x 60,001 + 1 < 1 MiB).
        let large = fake_items(&[60_000; 20]);
        let Ok(mut gz) = Gzip::new(GZIP_LEVEL) else {
            panic!("a compressor")
        };
        let bodies = gz.bodies(&large, 0..20).unwrap_or_default();
        assert_eq!(
            bodies.iter().map(|b| b.items.len()).collect::<Vec<_>>(),
            [17, 3]
        );
        for b in &bodies {
            let raw = gunzip(&b.gzip);
            assert!(raw.len() <= MAX_BODY_BYTES);
            assert_eq!(raw.first(), Some(&b'['));
            assert_eq!(raw.last(), Some(&b']'));
        }
    }

    proptest! {
        #[test]
        fn splitting_keeps_every_item_exactly_once(
            lens in prop::collection::vec(1usize..300, 0..200),
            pick in prop::collection::vec(any::<bool>(), 200),
            max_items in 1usize..20,
            max_bytes in 2usize..1000,
        ) {
            let items = fake_items(&lens);
            let chosen: Vec<usize> = (0..lens.len()).filter(|&i| pick[i]).collect();
            let groups = split(&items, chosen.iter().copied(), max_items, max_bytes);
            let flat: Vec<usize> = groups.iter().flatten().copied().collect();
            prop_assert_eq!(&flat, &chosen);
            for g in &groups {
                prop_assert!(!g.is_empty());
                prop_assert!(g.len() <= max_items);
                let bytes = 1 + g.iter().map(|&i| items.item_len(i) + 1).sum::<usize>();
                prop_assert!(bytes <= max_bytes || g.len() == 1, "{} bytes in {:?}", bytes, g);
            }
        }

        #[test]
        fn bodies_hold_exactly_the_chosen_items(
            lens in prop::collection::vec(1usize..3000, 0..60),
            pick in prop::collection::vec(any::<bool>(), 60),
        ) {
            let items = fake_items(&lens);
            let chosen: Vec<usize> = (0..lens.len()).filter(|&i| pick[i]).collect();
            let bodies = Gzip::new(GZIP_LEVEL).and_then(|mut g| g.bodies(&items, chosen.iter().copied())).unwrap_or_default();
            let mut seen = Vec::new();
            for b in &bodies {
                let raw = gunzip(&b.gzip);
                let mut expected = b"[".to_vec();
                for (n, &i) in b.items.iter().enumerate() {
                    if n > 0 {
                        expected.push(b',');
                    }
                    expected.extend_from_slice(items.get(i).unwrap_or_default());
                }
                expected.push(b']');
                prop_assert_eq!(raw, expected);
                seen.extend_from_slice(&b.items);
            }
            prop_assert_eq!(seen, chosen);
        }
    }
}
