//! Server-Sent-Events decoding: raw byte chunks in, events, comments and retry hints out.
//!
//! Follows the WHATWG "Interpreting an event stream" algorithm, with two deliberate additions:
//! comments are surfaced (the exchange's `:heartbeat` liveness signal is a comment, and generic
//! SSE clients drop them), and the size of one event is bounded so a hostile or broken peer cannot
//! grow our memory without limit.
//!
//! Architecture Invariant: the decoder is pure. It never does IO and never reads the clock; the
//! same bytes give the same items however they are split into chunks.

use std::borrow::Cow;

use memchr::{memchr, memchr2};

/// Default bound on one event: generous for snapshots, small enough to survive a runaway line.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

const BOM: &[u8; 3] = b"\xEF\xBB\xBF";

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event` field, "message" when none was given.
    pub event: String,
    /// Data lines joined with '\n' (no trailing '\n').
    pub data: String,
    /// The last-event-id buffer at dispatch: it persists across events, per spec; None if never set.
    pub id: Option<String>,
}

/// One thing read from the stream, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem {
    Event(SseEvent),
    /// Text after ':' with one leading space stripped (":heartbeat" -> "heartbeat").
    Comment(String),
    /// A valid `retry:` field in milliseconds, surfaced when the line is read.
    Retry(u64),
    Error(SseError),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("sse event exceeds the limit of {limit} bytes")]
    EventTooLarge { limit: usize },
}

/// Incremental decoder for one `text/event-stream` body.
#[derive(Debug)]
pub struct SseDecoder {
    max_event_bytes: usize,
    /// Bytes of the current line seen so far; only used when a line spans chunks.
    line: Vec<u8>,
    /// The spec's data buffer: each `data` value followed by '\n'.
    data: String,
    /// The spec's event type buffer; empty means "message".
    event_type: String,
    last_id: Option<String>,
    /// The previous chunk ended in CR, so an LF opening the next chunk belongs to that line end.
    pending_cr: bool,
    /// How many bytes of a leading BOM have matched so far (the BOM may be split across chunks).
    bom_matched: usize,
    bom_done: bool,
    /// After an oversized event: skip everything up to and including the next blank line.
    discarding: bool,
    /// While discarding: whether the current line has any bytes (so it is not the blank line).
    discard_line_nonempty: bool,
}

impl Default for SseDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_EVENT_BYTES)
    }
}

impl SseDecoder {
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            max_event_bytes,
            line: Vec::new(),
            data: String::new(),
            event_type: String::new(),
            last_id: None,
            pending_cr: false,
            bom_matched: 0,
            bom_done: false,
            discarding: false,
            discard_line_nonempty: false,
        }
    }

    /// Decode as much of `chunk` as forms complete lines; push items in stream order.
    pub fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<SseItem>) {
        if chunk.is_empty() {
            return;
        }
        if !self.bom_done {
            chunk = self.skip_bom(chunk, out);
            if chunk.is_empty() {
                return;
            }
        }
        if self.pending_cr {
            self.pending_cr = false;
            if chunk[0] == b'\n' {
                chunk = &chunk[1..];
            }
        }
        self.decode(chunk, out);
    }

    /// End of stream: per spec an incomplete event (no terminating blank line) is discarded, not
    /// dispatched, and so is an unterminated last line. Nothing is ever pushed today; `out` keeps
    /// the call shape symmetric with `feed`. The decoder is reset, ready for a new stream (the
    /// spec gives each stream fresh buffers, including the last-event-id buffer).
    pub fn finish(&mut self, _out: &mut Vec<SseItem>) {
        *self = Self::new(self.max_event_bytes);
    }

    /// Bytes currently buffered (partial line + pending data), for tests and metrics.
    pub fn buffered_bytes(&self) -> usize {
        self.line.len() + self.data.len()
    }

    /// Consume the leading BOM bytes of the stream, or replay the matched prefix as content when
    /// the stream turns out not to start with one.
    fn skip_bom<'a>(&mut self, chunk: &'a [u8], out: &mut Vec<SseItem>) -> &'a [u8] {
        let mut taken = 0;
        while taken < chunk.len() && self.bom_matched < BOM.len() {
            if chunk[taken] != BOM[self.bom_matched] {
                self.bom_done = true;
                let matched = self.bom_matched;
                // Prefixes of the BOM hold no CR or LF, so they only extend the first line.
                self.decode(&BOM[..matched], out);
                return &chunk[taken..];
            }
            self.bom_matched += 1;
            taken += 1;
        }
        if self.bom_matched == BOM.len() {
            self.bom_done = true;
        }
        &chunk[taken..]
    }

    fn decode(&mut self, mut chunk: &[u8], out: &mut Vec<SseItem>) {
        while let Some(i) = memchr2(b'\n', b'\r', chunk) {
            let is_cr = chunk[i] == b'\r';
            self.end_line(&chunk[..i], out);
            chunk = &chunk[i + 1..];
            if is_cr {
                match chunk.first() {
                    Some(b'\n') => chunk = &chunk[1..],
                    Some(_) => {}
                    None => self.pending_cr = true,
                }
            }
        }
        self.extend_line(chunk, out);
    }

    /// Buffer the unterminated tail of a chunk.
    fn extend_line(&mut self, seg: &[u8], out: &mut Vec<SseItem>) {
        if seg.is_empty() {
            return;
        }
        if self.discarding {
            self.discard_line_nonempty = true;
            return;
        }
        if self.data.len() + self.line.len() + seg.len() > self.max_event_bytes {
            self.overflow(true, out);
            return;
        }
        self.line.extend_from_slice(seg);
    }

    /// A line end was found; `seg` is the part of the line inside the current chunk.
    fn end_line(&mut self, seg: &[u8], out: &mut Vec<SseItem>) {
        if self.discarding {
            let blank = seg.is_empty() && !self.discard_line_nonempty;
            self.discard_line_nonempty = false;
            self.discarding = !blank;
            return;
        }
        if self.data.len() + self.line.len() + seg.len() > self.max_event_bytes {
            self.overflow(false, out);
            return;
        }
        if self.line.is_empty() {
            // Common case: the whole line is inside this chunk, so parse it in place.
            self.process_line(seg, out);
        } else {
            let mut line = std::mem::take(&mut self.line);
            line.extend_from_slice(seg);
            self.process_line(&line, out);
            line.clear();
            // Hand the buffer back so its capacity is reused for the next split line.
            self.line = line;
        }
    }

    fn overflow(&mut self, mid_line: bool, out: &mut Vec<SseItem>) {
        out.push(SseItem::Error(SseError::EventTooLarge {
            limit: self.max_event_bytes,
        }));
        // Release rather than clear: these may have grown close to the limit.
        self.line = Vec::new();
        self.data = String::new();
        self.event_type = String::new();
        self.discarding = true;
        self.discard_line_nonempty = mid_line;
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseItem>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            let text = strip_one_space(&line[1..]);
            out.push(SseItem::Comment(lossy(text).into_owned()));
            return;
        }
        let (name, value): (&[u8], &[u8]) = match memchr(b':', line) {
            Some(i) => (&line[..i], strip_one_space(&line[i + 1..])),
            None => (line, &[]),
        };
        match name {
            b"data" => {
                let value = lossy(value);
                // Lossy decoding can triple invalid bytes, so the raw line check is not enough.
                if self.data.len() + value.len() + 1 > self.max_event_bytes {
                    self.overflow(false, out);
                    return;
                }
                if self.data.is_empty() {
                    // Most events are one data line: size the buffer once, exactly.
                    self.data.reserve(value.len() + 1);
                }
                self.data.push_str(&value);
                self.data.push('\n');
            }
            b"event" => {
                self.event_type.clear();
                self.event_type.push_str(&lossy(value));
            }
            b"id" if memchr(0, value).is_none() => {
                self.last_id = Some(lossy(value).into_owned());
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                // Saturate: an absurd delay is still the server's intent, and a u64 of
                // milliseconds outlives any deployment.
                let ms = value.iter().fold(0u64, |acc, d| {
                    acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
                });
                out.push(SseItem::Retry(ms));
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseItem>) {
        if self.data.is_empty() {
            self.event_type.clear();
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop();
        let event = if self.event_type.is_empty() {
            "message".to_owned()
        } else {
            std::mem::take(&mut self.event_type)
        };
        out.push(SseItem::Event(SseEvent {
            event,
            data,
            id: self.last_id.clone(),
        }));
    }
}

/// `String::from_utf8_lossy`, with valid UTF-8 checked first by `str::from_utf8`: that one
/// skips through ASCII a word at a time, while the lossy decoder steps byte by byte, which was
/// most of the decoder's time on every event's data line.
fn lossy(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

fn strip_one_space(value: &[u8]) -> &[u8] {
    match value.first() {
        Some(b' ') => &value[1..],
        _ => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_chunks(max: usize, chunks: &[&[u8]]) -> Vec<SseItem> {
        let mut dec = SseDecoder::new(max);
        let mut out = Vec::new();
        for chunk in chunks {
            dec.feed(chunk, &mut out);
        }
        dec.finish(&mut out);
        out
    }

    fn decode(input: &[u8]) -> Vec<SseItem> {
        decode_chunks(DEFAULT_MAX_EVENT_BYTES, &[input])
    }

    fn ev(event: &str, data: &str, id: Option<&str>) -> SseItem {
        SseItem::Event(SseEvent {
            event: event.to_owned(),
            data: data.to_owned(),
            id: id.map(str::to_owned),
        })
    }

    fn msg(data: &str) -> SseItem {
        ev("message", data, None)
    }

    fn comment(text: &str) -> SseItem {
        SseItem::Comment(text.to_owned())
    }

    fn too_large(limit: usize) -> SseItem {
        SseItem::Error(SseError::EventTooLarge { limit })
    }

    #[test]
    fn lf_line_endings_dispatch() {
        assert_eq!(decode(b"data: a\n\ndata: b\n\n"), [msg("a"), msg("b")]);
    }

    #[test]
    fn crlf_line_endings_dispatch() {
        assert_eq!(
            decode(b"data: a\r\n\r\ndata: b\r\n\r\n"),
            [msg("a"), msg("b")]
        );
    }

    #[test]
    fn lone_cr_line_endings_dispatch() {
        assert_eq!(decode(b"data: a\r\rdata: b\r\r"), [msg("a"), msg("b")]);
    }

    #[test]
    fn mixed_line_endings_in_one_stream() {
        assert_eq!(
            decode(b"data: a\rdata: b\r\ndata: c\n\r\n"),
            [msg("a\nb\nc")]
        );
    }

    #[test]
    fn crlf_split_across_chunks_is_one_line_end() {
        // Were the LF read as a second line end, the blank line would dispatch "a" alone.
        let out = decode_chunks(
            DEFAULT_MAX_EVENT_BYTES,
            &[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"],
        );
        assert_eq!(out, [msg("a\nb")]);
    }

    #[test]
    fn cr_at_chunk_end_then_other_byte_is_a_line_end() {
        let out = decode_chunks(DEFAULT_MAX_EVENT_BYTES, &[b"data: a\r", b"\r"]);
        assert_eq!(out, [msg("a")]);
        let out = decode_chunks(DEFAULT_MAX_EVENT_BYTES, &[b"data: a\r", b"data: b\n\n"]);
        assert_eq!(out, [msg("a\nb")]);
    }

    #[test]
    fn cr_at_chunk_end_survives_empty_chunks() {
        let out = decode_chunks(
            DEFAULT_MAX_EVENT_BYTES,
            &[b"data: a\r", b"", b"\ndata: b\n\n"],
        );
        assert_eq!(out, [msg("a\nb")]);
    }

    #[test]
    fn leading_bom_is_skipped() {
        assert_eq!(decode(b"\xEF\xBB\xBFdata: a\n\n"), [msg("a")]);
    }

    #[test]
    fn leading_bom_split_across_chunks_is_skipped() {
        let out = decode_chunks(
            DEFAULT_MAX_EVENT_BYTES,
            &[b"\xEF", b"\xBB", b"\xBFdata: a\n\n"],
        );
        assert_eq!(out, [msg("a")]);
    }

    #[test]
    fn only_one_leading_bom_is_skipped() {
        // The second BOM makes the field name "\u{feff}data", which is unknown.
        assert_eq!(
            decode(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\ndata: b\n\n"),
            [msg("b")]
        );
    }

    #[test]
    fn bom_after_stream_start_is_content() {
        assert_eq!(
            decode(b": x\n:\xEF\xBB\xBFy\n"),
            [comment("x"), comment("\u{feff}y")]
        );
    }

    #[test]
    fn partial_bom_prefix_is_kept_as_content() {
        // Were the "\xEF\xBB" prefix dropped, "data: x" would parse and dispatch.
        let out = decode_chunks(
            DEFAULT_MAX_EVENT_BYTES,
            &[b"\xEF\xBB", b"data: x\n\ndata: y\n\n"],
        );
        assert_eq!(out, [msg("y")]);
        let mut dec = SseDecoder::default();
        let mut out = Vec::new();
        dec.feed(b"\xEF\xBB", &mut out);
        dec.feed(b"zz", &mut out);
        assert_eq!(dec.buffered_bytes(), 4);
        // No BOM at all: the first byte is not swallowed.
        assert_eq!(decode(b":x\n"), [comment("x")]);
    }

    #[test]
    fn multibyte_char_split_across_chunks_decodes() {
        let bytes = "data: é€😀\n\n".as_bytes();
        for cut in 0..bytes.len() {
            let out = decode_chunks(DEFAULT_MAX_EVENT_BYTES, &[&bytes[..cut], &bytes[cut..]]);
            assert_eq!(out, [msg("é€😀")], "cut at {cut}");
        }
    }

    #[test]
    fn invalid_utf8_is_replaced_lossily() {
        assert_eq!(decode(b"data: a\xFFb\n\n"), [msg("a\u{fffd}b")]);
    }

    #[test]
    fn one_leading_space_of_value_is_stripped() {
        assert_eq!(decode(b"data:a\ndata: b\ndata:  c\n\n"), [msg("a\nb\n c")]);
    }

    #[test]
    fn value_keeps_later_colons() {
        assert_eq!(decode(b"data: {\"a\":1}\n\n"), [msg("{\"a\":1}")]);
    }

    #[test]
    fn line_without_colon_is_field_with_empty_value() {
        assert_eq!(decode(b"data\n\n"), [msg("")]);
        assert_eq!(decode(b"data\ndata\n\n"), [msg("\n")]);
        assert_eq!(decode(b"event\ndata: x\n\n"), [msg("x")]);
    }

    #[test]
    fn unknown_fields_are_ignored() {
        assert_eq!(decode(b"foo: bar\nData: no\ndata: a\nDATA\n\n"), [msg("a")]);
    }

    #[test]
    fn data_lines_join_with_newline() {
        assert_eq!(decode(b"data: a\ndata: b\ndata: c\n\n"), [msg("a\nb\nc")]);
    }

    #[test]
    fn event_field_sets_type_and_resets_after_dispatch() {
        assert_eq!(
            decode(b"event: delta\ndata: 1\n\ndata: 2\n\n"),
            [ev("delta", "1", None), msg("2")]
        );
    }

    #[test]
    fn last_event_field_wins() {
        assert_eq!(
            decode(b"event: a\nevent: b\ndata: 1\n\n"),
            [ev("b", "1", None)]
        );
    }

    #[test]
    fn empty_event_field_means_message() {
        assert_eq!(decode(b"event:\ndata: 1\n\n"), [msg("1")]);
    }

    #[test]
    fn id_persists_across_events() {
        assert_eq!(
            decode(b"id: 7\ndata: a\n\ndata: b\n\nid: 8\ndata: c\n\n"),
            [
                ev("message", "a", Some("7")),
                ev("message", "b", Some("7")),
                ev("message", "c", Some("8")),
            ]
        );
    }

    #[test]
    fn id_with_nul_is_ignored() {
        assert_eq!(
            decode(b"id: 1\nid: 2\x003\ndata: a\n\n"),
            [ev("message", "a", Some("1"))]
        );
    }

    #[test]
    fn empty_id_sets_empty_last_event_id() {
        assert_eq!(
            decode(b"id: 1\ndata: a\n\nid\ndata: b\n\n"),
            [ev("message", "a", Some("1")), ev("message", "b", Some(""))]
        );
    }

    #[test]
    fn id_without_data_updates_buffer_but_dispatches_nothing() {
        assert_eq!(
            decode(b"id: 5\n\ndata: a\n\n"),
            [ev("message", "a", Some("5"))]
        );
    }

    #[test]
    fn retry_with_ascii_digits_is_surfaced_when_read() {
        assert_eq!(
            decode(b"data: a\nretry: 1500\n\n"),
            [SseItem::Retry(1500), msg("a")]
        );
    }

    #[test]
    fn retry_without_only_digits_is_ignored() {
        assert_eq!(
            decode(
                b"retry: 1.5\nretry: -1\nretry: 10a\nretry:\nretry\nretry:  5\nretry: \xD9\xA1\n"
            ),
            []
        );
    }

    #[test]
    fn retry_beyond_u64_saturates() {
        assert_eq!(
            decode(b"retry: 99999999999999999999999\n"),
            [SseItem::Retry(u64::MAX)]
        );
    }

    #[test]
    fn blank_line_without_data_dispatches_nothing_and_resets_type() {
        assert_eq!(decode(b"event: delta\n\ndata: a\n\n\n\n"), [msg("a")]);
    }

    #[test]
    fn empty_data_value_dispatches_empty_string() {
        assert_eq!(decode(b"data:\n\n"), [msg("")]);
    }

    #[test]
    fn only_one_trailing_newline_is_stripped() {
        assert_eq!(decode(b"data: a\ndata:\n\n"), [msg("a\n")]);
    }

    #[test]
    fn comments_are_surfaced_in_stream_order() {
        assert_eq!(
            decode(b":heartbeat\ndata: a\n: hi\n\n:  two\n:\n"),
            [
                comment("heartbeat"),
                comment("hi"),
                msg("a"),
                comment(" two"),
                comment("")
            ]
        );
    }

    #[test]
    fn comment_does_not_end_an_event() {
        assert_eq!(
            decode(b"data: a\n:heartbeat\ndata: b\n\n"),
            [comment("heartbeat"), msg("a\nb")]
        );
    }

    #[test]
    fn finish_discards_incomplete_event_and_unterminated_line() {
        let mut dec = SseDecoder::default();
        let mut out = Vec::new();
        dec.feed(b"event: delta\ndata: a\n:unterminated", &mut out);
        assert!(out.is_empty());
        dec.finish(&mut out);
        assert!(out.is_empty());
        assert_eq!(dec.buffered_bytes(), 0);
    }

    #[test]
    fn finish_resets_for_a_new_stream() {
        let mut dec = SseDecoder::new(1024);
        let mut out = Vec::new();
        dec.feed(
            b"\xEF\xBB\xBFid: 1\nevent: delta\ndata: a\n\ndata: partial\r",
            &mut out,
        );
        dec.finish(&mut out);
        // Fresh buffers: no stale id, type or data, no pending CR, and a BOM is skipped again.
        dec.feed(b"\xEF\xBB\xBF\ndata: b\n\n", &mut out);
        assert_eq!(out, [ev("delta", "a", Some("1")), msg("b")]);
    }

    #[test]
    fn default_uses_default_limit() {
        assert_eq!(
            SseDecoder::default().max_event_bytes,
            DEFAULT_MAX_EVENT_BYTES
        );
    }

    #[test]
    fn event_too_large_error_message() {
        assert_eq!(
            SseError::EventTooLarge { limit: 64 }.to_string(),
            "sse event exceeds the limit of 64 bytes"
        );
    }

    #[test]
    fn event_too_large_emits_one_error_and_resumes_after_blank_line() {
        let big = "x".repeat(40);
        let input = format!(
            "data: ok\n\nevent: delta\ndata: {big}\ndata: {big}\ndata: {big}\n:dropped\nretry: 5\n\ndata: after\n\n"
        );
        assert_eq!(
            decode_chunks(64, &[input.as_bytes()]),
            [msg("ok"), too_large(64), msg("after")]
        );
    }

    #[test]
    fn event_too_large_drops_the_event_type() {
        let input = format!("event: delta\ndata: {}\n\ndata: after\n\n", "x".repeat(100));
        assert_eq!(
            decode_chunks(64, &[input.as_bytes()]),
            [too_large(64), msg("after")]
        );
    }

    #[test]
    fn event_at_exactly_the_limit_is_accepted() {
        // The line "data: " + 58 bytes is 64 bytes; after it the data buffer holds 59.
        let input = format!("data: {}\n\n", "y".repeat(58));
        assert_eq!(
            decode_chunks(64, &[input.as_bytes()]),
            [msg(&"y".repeat(58))]
        );
        let input = format!("data: {}\n\n", "y".repeat(59));
        assert_eq!(decode_chunks(64, &[input.as_bytes()]), [too_large(64)]);
    }

    #[test]
    fn unterminated_line_keeps_memory_bounded() {
        let mut dec = SseDecoder::new(64);
        let mut out = Vec::new();
        let chunk = [b'z'; 1000];
        dec.feed(b"data: ", &mut out);
        for _ in 0..1000 {
            dec.feed(&chunk, &mut out);
            assert!(dec.buffered_bytes() <= 64);
        }
        assert_eq!(out, [too_large(64)]);
        // The runaway line ends, the next blank line ends the discard, decoding resumes.
        dec.feed(b"\n:skipped\n\n:seen\ndata: a\n\n", &mut out);
        assert_eq!(out, [too_large(64), comment("seen"), msg("a")]);
    }

    #[test]
    fn oversized_line_split_across_chunks_matches_whole() {
        let input = format!("data: {}\n\ndata: b\n\n", "q".repeat(200));
        let bytes = input.as_bytes();
        let whole = decode_chunks(64, &[bytes]);
        assert_eq!(whole, [too_large(64), msg("b")]);
        for cut in 0..bytes.len() {
            assert_eq!(
                decode_chunks(64, &[&bytes[..cut], &bytes[cut..]]),
                whole,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn buffered_bytes_counts_partial_line_and_data() {
        let mut dec = SseDecoder::default();
        let mut out = Vec::new();
        dec.feed(b"data: abc\ndata: d", &mut out);
        // "abc\n" in the data buffer plus "data: d" pending.
        assert_eq!(dec.buffered_bytes(), 4 + 7);
        dec.feed(b"\n\n", &mut out);
        assert_eq!(dec.buffered_bytes(), 0);
        assert_eq!(out, [msg("abc\nd")]);
    }

    // ---- property tests ----

    fn feed_all(max: usize, input: &[u8], cuts: &[usize]) -> Vec<SseItem> {
        let mut positions: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        positions.sort_unstable();
        let mut chunks: Vec<&[u8]> = Vec::new();
        let mut start = 0;
        for p in positions {
            chunks.push(&input[start..p]);
            start = p;
        }
        chunks.push(&input[start..]);
        decode_chunks(max, &chunks)
    }

    fn bytewise(max: usize, input: &[u8]) -> Vec<SseItem> {
        let chunks: Vec<&[u8]> = input.chunks(1).collect();
        decode_chunks(max, &chunks)
    }

    fn line_end() -> impl Strategy<Value = &'static [u8]> {
        prop_oneof![Just(&b"\n"[..]), Just(&b"\r\n"[..]), Just(&b"\r"[..])]
    }

    fn value() -> impl Strategy<Value = Vec<u8>> {
        // Mostly text with multi-byte characters, sometimes raw bytes (invalid UTF-8, NUL, colons,
        // never CR/LF), occasionally long enough to trip small limits.
        prop_oneof![
            4 => "[ a-z0-9:{}\"é€😀]{0,12}".prop_map(String::into_bytes),
            1 => proptest::collection::vec(
                any::<u8>().prop_filter("no line ends", |b| *b != b'\n' && *b != b'\r'),
                0..8
            ),
            1 => (0usize..120).prop_map(|n| vec![b'w'; n]),
            1 => "[0-9]{1,6}".prop_map(String::into_bytes),
        ]
    }

    fn sse_line() -> impl Strategy<Value = Vec<u8>> {
        let field = prop_oneof![
            Just(&b"data"[..]),
            Just(&b"event"[..]),
            Just(&b"id"[..]),
            Just(&b"retry"[..]),
            Just(&b""[..]),
            Just(&b"other"[..]),
        ];
        prop_oneof![
            3 => (field, any::<bool>(), any::<bool>(), value()).prop_map(|(f, colon, space, v)| {
                let mut line = f.to_vec();
                if colon {
                    line.push(b':');
                    if space {
                        line.push(b' ');
                    }
                    line.extend_from_slice(&v);
                }
                line
            }),
            1 => value().prop_map(|v| {
                let mut line = vec![b':'];
                line.extend_from_slice(&v);
                line
            }),
            2 => Just(Vec::new()),
        ]
    }

    fn sse_stream() -> impl Strategy<Value = Vec<u8>> {
        (
            any::<bool>(),
            proptest::collection::vec((sse_line(), line_end()), 0..40),
            proptest::collection::vec(any::<u8>(), 0..3),
        )
            .prop_map(|(bom, lines, tail)| {
                let mut out = Vec::new();
                if bom {
                    out.extend_from_slice(BOM);
                }
                for (line, end) in lines {
                    out.extend_from_slice(&line);
                    out.extend_from_slice(end);
                }
                out.extend_from_slice(&tail);
                out
            })
    }

    fn limit() -> impl Strategy<Value = usize> {
        prop_oneof![Just(16usize), Just(64), Just(DEFAULT_MAX_EVENT_BYTES)]
    }

    fn check_split_invariance(
        max: usize,
        input: &[u8],
        cuts: &[usize],
    ) -> Result<(), TestCaseError> {
        let whole = decode_chunks(max, &[input]);
        prop_assert_eq!(&feed_all(max, input, cuts), &whole);
        prop_assert_eq!(&bytewise(max, input), &whole);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn prop_split_invariant_arbitrary_bytes(
            input in proptest::collection::vec(any::<u8>(), 0..300),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
            max in limit(),
        ) {
            check_split_invariance(max, &input, &cuts)?;
        }

        #[test]
        fn prop_split_invariant_sse_like(
            input in sse_stream(),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
            max in limit(),
        ) {
            check_split_invariance(max, &input, &cuts)?;
        }

        #[test]
        fn prop_buffer_stays_bounded(
            input in prop_oneof![
                sse_stream(),
                proptest::collection::vec(any::<u8>(), 0..600),
            ],
            cuts in proptest::collection::vec(any::<usize>(), 0..24),
        ) {
            const MAX: usize = 64;
            let mut positions: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
            positions.sort_unstable();
            positions.push(input.len());
            let mut dec = SseDecoder::new(MAX);
            let mut out = Vec::new();
            let mut start = 0;
            for p in positions {
                dec.feed(&input[start..p], &mut out);
                start = p;
                prop_assert!(dec.buffered_bytes() <= MAX, "buffered {}", dec.buffered_bytes());
                prop_assert!(dec.event_type.len() <= MAX && dec.last_id.as_ref().is_none_or(|s| s.len() <= 3 * MAX));
            }
            for item in &out {
                if let SseItem::Event(e) = item {
                    prop_assert!(e.data.len() < MAX);
                }
            }
        }
    }
}
