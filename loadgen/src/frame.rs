//! Cheap parsing of server frames.
//!
//! The loadgen shares a 2-core box with the server it measures, so it reads only what it
//! reports on: `type`, `ch`, `seq`, `ts`, `reset` and `code`. JSON frames go through a byte
//! scanner (`scan.rs`) that reads those fields and only checks the grammar of every other value
//! (a price is never converted to a float); what it is unsure of goes to serde, which reads the
//! same fields, borrows strings from the frame when they hold no escapes and skips every other
//! field without building values. An array frame is walked element by element with a callback
//! instead of being collected into a `Vec`.
//!
//! `?encoding=msgpack` frames (binary, one MessagePack array of messages) are read the same way
//! by [`for_each_msgpack_event`]: with `rmp`'s low-level readers over the frame's bytes, strings
//! borrowed from it, everything else stepped over without building values.

use std::borrow::Cow;
use std::fmt;
use std::io;

use rmp::Marker;
use rmp::decode::{self as mp, NumValueReadError, ValueReadError};

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// The fields of one server event that the loadgen looks at.
#[derive(Debug, Deserialize, PartialEq)]
pub struct Event<'a> {
    /// `tick`, `bar`, `indicators`, `snapshot`, `ack`, `error`, `pong`, `list`, ...
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    /// Concrete channel (`ticks:AAPL`); absent on replies such as `ack`.
    #[serde(default, borrow, deserialize_with = "opt_cow")]
    pub ch: Option<Cow<'a, str>>,
    /// Per-channel sequence number, the basis of gap accounting.
    #[serde(default)]
    pub seq: Option<u64>,
    /// Nanoseconds since the Unix epoch at ingest; latency is `now - ts`.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub ts: Option<u64>,
    /// `true` on a snapshot sent because a `from` gap is no longer held, and on a `book` event
    /// that carries the whole book (after a gap of a slow consumer, or a venue's resync).
    #[serde(default)]
    pub reset: bool,
    /// Stable error code on `error` replies.
    #[serde(default, borrow, deserialize_with = "opt_cow")]
    pub code: Option<Cow<'a, str>>,
}

/// Every event of a JSON frame by serde alone: the reference the scanner (`scan.rs`, what the
/// loadgen reads frames with) is tested against, and what it falls back to for a frame that is
/// not an object or an array.
pub(crate) fn for_each_event_serde<'a, F>(
    text: &'a str,
    mut f: F,
) -> Result<usize, serde_json::Error>
where
    F: FnMut(Event<'a>),
{
    let mut de = serde_json::Deserializer::from_str(text);
    let n = FrameSeed { f: &mut f }.deserialize(&mut de)?;
    de.end()?;
    Ok(n)
}

/// `Option<Cow<str>>` that borrows from the frame when it can; serde's own `Option<Cow>` always
/// allocates.
fn opt_cow<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string or null")
        }
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// Accepts `ts` as an integer or, from a sloppy peer, as a float.
fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a non-negative number")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(u64::try_from(v).ok())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok((v >= 0.0).then_some(v as u64))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

struct FrameSeed<'f, F> {
    f: &'f mut F,
}

impl<'de, F: FnMut(Event<'de>)> DeserializeSeed<'de> for FrameSeed<'_, F> {
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, F: FnMut(Event<'de>)> Visitor<'de> for FrameSeed<'_, F> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event object or an array of event objects")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<usize, A::Error> {
        let ev = Event::deserialize(de::value::MapAccessDeserializer::new(map))?;
        (self.f)(ev);
        Ok(1)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut n = 0;
        while let Some(ev) = seq.next_element::<Event<'de>>()? {
            (self.f)(ev);
            n += 1;
        }
        Ok(n)
    }
}

// === MessagePack (`?encoding=msgpack`) ===

/// The `type` of the positional events, by their leading kind code (1 to 8).
const KIND_CODES: [&str; 8] = [
    "tick",
    "bar",
    "indicators",
    "portfolio",
    "book",
    "ticker",
    "bbo",
    "prediction",
];

/// The kind code of `book` events, whose fifth element is `reset`:
/// `[5, ch, seq, ts, reset, bids, asks, checksum]`.
const BOOK_CODE: u64 = 5;

/// The `type` given to a positional event whose kind code this loadgen does not know (a newer
/// server's channel kind): like an unknown JSON `type`, it counts as a live event.
pub const UNKNOWN_KIND: &str = "unknown";

/// Why a MessagePack frame could not be read, and at which byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsgpackError {
    pub offset: usize,
    pub what: &'static str,
}

impl fmt::Display for MsgpackError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "bad MessagePack frame at byte {}: {}",
            self.offset, self.what
        )
    }
}

impl std::error::Error for MsgpackError {}

/// Calls `f` for every message in a binary `?encoding=msgpack` frame (one array of messages)
/// and returns how many there were. Positional events (`[1, ch, seq, ts, ...]`) give their
/// `type` from the kind code and their `ch`, `seq`, `ts` (and a `book` event its `reset`); maps (`ack`, `error`, `snapshot`,
/// ...) are read like the JSON objects: `type`, `ch`, `seq`, `ts`, `reset`, `code`, with every
/// other key (a snapshot's `data` too) skipped. On an error, `f` has seen the messages before
/// it, as with the JSON reader.
pub fn for_each_msgpack_event<'a, F>(frame: &'a [u8], mut f: F) -> Result<usize, MsgpackError>
where
    F: FnMut(Event<'a>),
{
    let mut rd = Reader::new(frame);
    let n = rd.array_len("a frame must be one array of messages")?;
    for _ in 0..n {
        let ev = match rd.peek()? {
            Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => rd.positional_event()?,
            Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => rd.map_message()?,
            _ => return Err(rd.err("a message must be an array or a map")),
        };
        f(ev);
    }
    rd.end()?;
    Ok(n as usize)
}

/// The `symbols` of the first `list` reply in a MessagePack frame, if it holds one (symbol
/// discovery; not on the hot path).
pub fn msgpack_list_symbols(frame: &[u8]) -> Result<Option<Vec<String>>, MsgpackError> {
    let mut rd = Reader::new(frame);
    let n = rd.array_len("a frame must be one array of messages")?;
    let mut found = None;
    for _ in 0..n {
        if !matches!(
            rd.peek()?,
            Marker::FixMap(_) | Marker::Map16 | Marker::Map32
        ) {
            rd.skip()?;
            continue;
        }
        let (mut is_list, mut symbols) = (false, Vec::new());
        for _ in 0..rd.map_len()? {
            match rd.key()? {
                b"type" => is_list = rd.str()? == "list",
                b"symbols" => {
                    for _ in 0..rd.array_len("symbols must be an array")? {
                        symbols.push(rd.str()?.to_string());
                    }
                }
                _ => rd.skip()?,
            }
        }
        if is_list && found.is_none() {
            found = Some(symbols);
        }
    }
    rd.end()?;
    Ok(found)
}

/// Whether an `rmp` read failed for want of bytes (rather than on a wrong type).
trait ReadFailure {
    fn truncated(&self) -> bool;
}

impl ReadFailure for ValueReadError<io::Error> {
    fn truncated(&self) -> bool {
        !matches!(self, ValueReadError::TypeMismatch(_))
    }
}

impl ReadFailure for NumValueReadError<io::Error> {
    fn truncated(&self) -> bool {
        matches!(
            self,
            NumValueReadError::InvalidMarkerRead(_) | NumValueReadError::InvalidDataRead(_)
        )
    }
}

/// A cursor over one frame. Values are read with `rmp::decode` on the remaining slice (which
/// advances it); strings and skipped values are sliced off it, never copied.
struct Reader<'a> {
    rest: &'a [u8],
    len: usize,
}

impl<'a> Reader<'a> {
    fn new(frame: &'a [u8]) -> Self {
        Self {
            rest: frame,
            len: frame.len(),
        }
    }

    fn offset(&self) -> usize {
        self.len - self.rest.len()
    }

    fn err(&self, what: &'static str) -> MsgpackError {
        MsgpackError {
            offset: self.offset(),
            what,
        }
    }

    /// Runs one `rmp` reader; `what` names the value expected, for a type mismatch.
    fn read<T, E: ReadFailure>(
        &mut self,
        what: &'static str,
        f: impl FnOnce(&mut &'a [u8]) -> Result<T, E>,
    ) -> Result<T, MsgpackError> {
        let offset = self.offset();
        f(&mut self.rest).map_err(|e| MsgpackError {
            offset,
            what: if e.truncated() { "truncated" } else { what },
        })
    }

    fn peek(&self) -> Result<Marker, MsgpackError> {
        match self.rest.first() {
            Some(&b) => Ok(Marker::from_u8(b)),
            None => Err(self.err("truncated")),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], MsgpackError> {
        if n > self.rest.len() {
            return Err(self.err("truncated"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    /// Every value takes at least one byte: a count of values the rest cannot hold is refused
    /// before any loop runs on it.
    fn check_count(&self, values: u64, at: usize) -> Result<(), MsgpackError> {
        if values > self.rest.len() as u64 {
            return Err(MsgpackError {
                offset: at,
                what: "length beyond the end of the frame",
            });
        }
        Ok(())
    }

    fn end(&self) -> Result<(), MsgpackError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.err("trailing bytes after the frame's array"))
        }
    }

    fn array_len(&mut self, what: &'static str) -> Result<u32, MsgpackError> {
        let at = self.offset();
        let n = self.read(what, mp::read_array_len)?;
        self.check_count(u64::from(n), at)?;
        Ok(n)
    }

    fn map_len(&mut self) -> Result<u32, MsgpackError> {
        let at = self.offset();
        let n = self.read("expected a map", mp::read_map_len)?;
        self.check_count(2 * u64::from(n), at)?;
        Ok(n)
    }

    fn str_bytes(&mut self, what: &'static str) -> Result<&'a [u8], MsgpackError> {
        let n = self.read(what, mp::read_str_len)?;
        self.take(n as usize)
    }

    /// A map key, as raw bytes: compared against the few keys read, never validated.
    fn key(&mut self) -> Result<&'a [u8], MsgpackError> {
        self.str_bytes("map keys must be strings")
    }

    fn str(&mut self) -> Result<&'a str, MsgpackError> {
        let at = self.offset();
        let bytes = self.str_bytes("expected a string")?;
        std::str::from_utf8(bytes).map_err(|_| MsgpackError {
            offset: at,
            what: "invalid UTF-8 in a string",
        })
    }

    /// `nil` reads as `None`.
    fn nil(&mut self) -> Result<bool, MsgpackError> {
        if self.peek()? == Marker::Null {
            self.take(1)?;
            return Ok(true);
        }
        Ok(false)
    }

    fn opt_str(&mut self) -> Result<Option<&'a str>, MsgpackError> {
        if self.nil()? {
            return Ok(None);
        }
        self.str().map(Some)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, MsgpackError> {
        self.read(what, mp::read_int::<u64, _>)
    }

    fn opt_u64(&mut self, what: &'static str) -> Result<Option<u64>, MsgpackError> {
        if self.nil()? {
            return Ok(None);
        }
        self.u64(what).map(Some)
    }

    /// `ts` as the JSON path takes it: an integer, or from a sloppy peer a float; a negative
    /// value or `nil` is no `ts`.
    fn lenient_ts(&mut self) -> Result<Option<u64>, MsgpackError> {
        const WHAT: &str = "ts must be a number";
        Ok(match self.peek()? {
            Marker::Null => {
                self.take(1)?;
                None
            }
            Marker::F32 => {
                let v = self.read(WHAT, mp::read_f32)?;
                (v >= 0.0).then_some(v as u64)
            }
            Marker::F64 => {
                let v = self.read(WHAT, mp::read_f64)?;
                (v >= 0.0).then_some(v as u64)
            }
            Marker::FixNeg(_) | Marker::I8 | Marker::I16 | Marker::I32 | Marker::I64 => {
                let v = self.read(WHAT, mp::read_int::<i64, _>)?;
                u64::try_from(v).ok()
            }
            _ => Some(self.u64(WHAT)?),
        })
    }

    /// `[kind, ch, seq, ts, ...]`: the fields after `ts` are skipped, but for a `book` event's
    /// `reset` (`[5, ch, seq, ts, reset, bids, asks, checksum]`).
    fn positional_event(&mut self) -> Result<Event<'a>, MsgpackError> {
        let at = self.offset();
        let n = self.array_len("expected an event array")?;
        if n < 4 {
            return Err(MsgpackError {
                offset: at,
                what: "an event array needs at least [kind, ch, seq, ts]",
            });
        }
        let code = self.u64("an event's kind code must be a non-negative integer")?;
        let kind = usize::try_from(code)
            .ok()
            .and_then(|c| c.checked_sub(1))
            .and_then(|i| KIND_CODES.get(i))
            .copied()
            .unwrap_or(UNKNOWN_KIND);
        let ch = self.opt_str()?;
        let seq = self.opt_u64("seq must be a non-negative integer")?;
        let ts = self.lenient_ts()?;
        let mut rest = n - 4;
        let mut reset = false;
        if code == BOOK_CODE && rest > 0 {
            reset = self.read("a book event's reset must be a boolean", mp::read_bool)?;
            rest -= 1;
        }
        self.skip_n(u64::from(rest))?;
        Ok(Event {
            kind: Cow::Borrowed(kind),
            ch: ch.map(Cow::Borrowed),
            seq,
            ts,
            reset,
            code: None,
        })
    }

    /// A map message: the keys [`Event`] has, the rest skipped. As with the JSON objects,
    /// `type` is required and a key read twice is an error.
    fn map_message(&mut self) -> Result<Event<'a>, MsgpackError> {
        let at = self.offset();
        let n = self.map_len()?;
        let (mut kind, mut ch, mut seq, mut ts, mut reset, mut code) =
            (None, None, None, None, false, None);
        let mut seen = 0u8;
        for _ in 0..n {
            let key_at = self.offset();
            let bit = match self.key()? {
                b"type" => 1,
                b"ch" => 2,
                b"seq" => 4,
                b"ts" => 8,
                b"reset" => 16,
                b"code" => 32,
                _ => {
                    self.skip()?;
                    continue;
                }
            };
            if seen & bit != 0 {
                return Err(MsgpackError {
                    offset: key_at,
                    what: "duplicate key",
                });
            }
            seen |= bit;
            match bit {
                1 => kind = Some(self.str()?),
                2 => ch = self.opt_str()?,
                4 => seq = self.opt_u64("seq must be a non-negative integer")?,
                8 => ts = self.lenient_ts()?,
                16 => reset = self.read("reset must be a boolean", mp::read_bool)?,
                _ => code = self.opt_str()?,
            }
        }
        let Some(kind) = kind else {
            return Err(MsgpackError {
                offset: at,
                what: "a map message needs a type",
            });
        };
        Ok(Event {
            kind: Cow::Borrowed(kind),
            ch: ch.map(Cow::Borrowed),
            seq,
            ts,
            reset,
            code: code.map(Cow::Borrowed),
        })
    }

    fn skip(&mut self) -> Result<(), MsgpackError> {
        self.skip_n(1)
    }

    /// Steps over `n` values of any type without building them. Nesting is followed with a
    /// count, not recursion, so a deeply nested frame cannot exhaust the stack.
    fn skip_n(&mut self, mut pending: u64) -> Result<(), MsgpackError> {
        // The marker was peeked first, so these reads can only fail for want of bytes.
        const MALFORMED: &str = "malformed value";
        while pending > 0 {
            pending -= 1;
            let at = self.offset();
            let bytes = match self.peek()? {
                Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 => {
                    self.read(MALFORMED, mp::read_str_len)?
                }
                Marker::Bin8 | Marker::Bin16 | Marker::Bin32 => {
                    self.read(MALFORMED, mp::read_bin_len)?
                }
                Marker::FixExt1
                | Marker::FixExt2
                | Marker::FixExt4
                | Marker::FixExt8
                | Marker::FixExt16
                | Marker::Ext8
                | Marker::Ext16
                | Marker::Ext32 => self.read(MALFORMED, mp::read_ext_meta)?.size,
                Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => {
                    pending += u64::from(self.read(MALFORMED, mp::read_array_len)?);
                    0
                }
                Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => {
                    pending += 2 * u64::from(self.read(MALFORMED, mp::read_map_len)?);
                    0
                }
                Marker::Reserved => return Err(self.err("reserved marker byte 0xc1")),
                scalar => {
                    self.take(1)?;
                    match scalar {
                        Marker::U8 | Marker::I8 => 1,
                        Marker::U16 | Marker::I16 => 2,
                        Marker::U32 | Marker::I32 | Marker::F32 => 4,
                        Marker::U64 | Marker::I64 | Marker::F64 => 8,
                        _ => 0, // fixint, nil, bool: the marker is the value
                    }
                }
            };
            self.take(bytes as usize)?;
            self.check_count(pending, at)?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn collect(text: &str) -> Vec<Event<'_>> {
        let mut out = Vec::new();
        let n = for_each_event_serde(text, |e| out.push(e)).expect("frame parses");
        assert_eq!(n, out.len());
        out
    }

    #[test]
    fn single_object() {
        let evs = collect(
            r#"{"type":"tick","ch":"ticks:AAPL","seq":102,"ts":1764070000123456789,"price":189.23,"size":100,"side":"buy"}"#,
        );
        assert_eq!(evs.len(), 1);
        let e = &evs[0];
        assert_eq!(e.kind, "tick");
        assert_eq!(e.ch.as_deref(), Some("ticks:AAPL"));
        assert_eq!(e.seq, Some(102));
        assert_eq!(e.ts, Some(1_764_070_000_123_456_789));
        assert!(
            matches!(e.ch, Some(Cow::Borrowed(_))),
            "no escapes: borrowed"
        );
        assert!(matches!(e.kind, Cow::Borrowed(_)));
    }

    #[test]
    fn array_of_events() {
        let evs = collect(
            r#"[{"type":"tick","ch":"ticks:A","seq":1,"ts":5},{"type":"tick","ch":"ticks:B","seq":9,"ts":6}]"#,
        );
        let chans: Vec<_> = evs.iter().map(|e| e.ch.as_deref().unwrap()).collect();
        assert_eq!(chans, ["ticks:A", "ticks:B"]);
        assert_eq!(evs[1].seq, Some(9));
        assert!(collect("[]").is_empty());
    }

    #[test]
    fn snapshot_skips_data() {
        let evs = collect(
            r#"{"type":"snapshot","ch":"ticks:AAPL","seq":101,"data":[{"type":"tick","seq":100,"nested":{"a":[1,2]}}]}"#,
        );
        assert_eq!(evs[0].kind, "snapshot");
        assert_eq!(evs[0].seq, Some(101));
        assert_eq!(evs[0].ts, None);
        assert!(!evs[0].reset);
        let evs = collect(r#"{"type":"snapshot","ch":"ticks:X","seq":3,"reset":true,"data":[]}"#);
        assert!(evs[0].reset);
    }

    #[test]
    fn unknown_fields_and_replies() {
        let evs = collect(
            r#"{"type":"ack","id":1,"op":"subscribe","channels":["ticks:*"],"extra":{"x":null}}"#,
        );
        assert_eq!(evs[0].kind, "ack");
        assert_eq!(evs[0].ch, None);
        let evs = collect(
            r#"{"type":"error","id":1,"code":"unknown_channel","message":"no such symbol: \"X\""}"#,
        );
        assert_eq!(evs[0].code.as_deref(), Some("unknown_channel"));
    }

    #[test]
    fn lenient_ts_and_escapes() {
        let evs = collect(r#"{"type":"bar","ch":"bars.1s:A\u0042","seq":7,"ts":1.5e18}"#);
        assert_eq!(evs[0].ts, Some(1_500_000_000_000_000_000));
        assert_eq!(evs[0].ch.as_deref(), Some("bars.1s:AB"));
    }

    #[test]
    fn malformed_frames_error() {
        for bad in [
            "",
            "{",
            "42",
            r#"{"ch":"ticks:A"}"#,
            r#"[{"type":"tick"}] x"#,
        ] {
            assert!(
                for_each_event_serde(bad, |_| {}).is_err(),
                "{bad:?} must fail"
            );
        }
    }

    // --- MessagePack ---

    use rmp::encode as enc;

    /// Builds MessagePack test frames with `rmp::encode` (also used by the `ws` tests).
    #[derive(Default)]
    pub(crate) struct Mp(pub(crate) Vec<u8>);

    impl Mp {
        pub(crate) fn arr(mut self, n: u32) -> Self {
            enc::write_array_len(&mut self.0, n).unwrap();
            self
        }
        pub(crate) fn map(mut self, n: u32) -> Self {
            enc::write_map_len(&mut self.0, n).unwrap();
            self
        }
        pub(crate) fn s(mut self, v: &str) -> Self {
            enc::write_str(&mut self.0, v).unwrap();
            self
        }
        pub(crate) fn u(mut self, v: u64) -> Self {
            enc::write_uint(&mut self.0, v).unwrap();
            self
        }
        pub(crate) fn i(mut self, v: i64) -> Self {
            enc::write_sint(&mut self.0, v).unwrap();
            self
        }
        pub(crate) fn f(mut self, v: f64) -> Self {
            enc::write_f64(&mut self.0, v).unwrap();
            self
        }
        pub(crate) fn b(mut self, v: bool) -> Self {
            enc::write_bool(&mut self.0, v).unwrap();
            self
        }
        pub(crate) fn nil(mut self) -> Self {
            enc::write_nil(&mut self.0).unwrap();
            self
        }
        pub(crate) fn raw(mut self, bytes: &[u8]) -> Self {
            self.0.extend_from_slice(bytes);
            self
        }
        /// `[1, ch, seq, ts, price, size, side, xts]`, as the server writes it.
        pub(crate) fn tick(self, ch: &str, seq: u64, ts: i64) -> Self {
            self.arr(8)
                .u(1)
                .s(ch)
                .u(seq)
                .i(ts)
                .f(189.23)
                .i(100)
                .s("buy")
                .i(ts - 3_000_000)
        }
        /// `[2, ch, seq, ts, start, open, high, low, close, volume, trades, final]`
        pub(crate) fn bar(self, ch: &str, seq: u64, ts: i64) -> Self {
            self.arr(12)
                .u(2)
                .s(ch)
                .u(seq)
                .i(ts)
                .i(1_764_070_000_000)
                .f(1.0)
                .f(1.2)
                .f(0.9)
                .f(1.1)
                .f(300.5)
                .u(3)
                .b(true)
        }
        /// `[5, ch, seq, ts, reset, bids, asks, checksum]` with two bid levels (one removed)
        /// and one ask.
        pub(crate) fn book(self, ch: &str, seq: u64, ts: i64, reset: bool) -> Self {
            self.arr(8)
                .u(5)
                .s(ch)
                .u(seq)
                .i(ts)
                .b(reset)
                .arr(2)
                .arr(2)
                .f(42000.5)
                .f(1.25)
                .arr(2)
                .i(41999)
                .i(0)
                .arr(1)
                .arr(2)
                .i(42001)
                .i(3)
                .u(2_374_859_382)
        }
        /// `[3, ch, seq, ts, {name: value, ...}]` with warming-up (nil) values.
        pub(crate) fn indicators(self, ch: &str, seq: u64, ts: i64) -> Self {
            self.arr(5)
                .u(3)
                .s(ch)
                .u(seq)
                .i(ts)
                .map(5)
                .s("sma_20")
                .nil()
                .s("ema_20")
                .f(1.0)
                .s("rsi_14")
                .nil()
                .s("volatility")
                .f(0.012)
                .s("vwap")
                .f(1.05)
        }
    }

    fn mp_collect(frame: &[u8]) -> Vec<Event<'_>> {
        let mut out = Vec::new();
        let n = for_each_msgpack_event(frame, |e| out.push(e)).expect("frame parses");
        assert_eq!(n, out.len());
        out
    }

    const TS: i64 = 1_764_070_000_123_456_789;

    #[test]
    fn msgpack_tick_batch() {
        let frame = Mp::default()
            .arr(3)
            .tick("ticks:AAPL", 102, TS)
            .tick("ticks:MSFT", 7, TS + 1)
            .tick("ticks:AAPL", 103, TS + 2)
            .0;
        let evs = mp_collect(&frame);
        assert_eq!(evs.len(), 3);
        let e = &evs[0];
        assert_eq!(e.kind, "tick");
        assert_eq!(e.ch.as_deref(), Some("ticks:AAPL"));
        assert_eq!((e.seq, e.ts), (Some(102), Some(TS as u64)));
        assert!(!e.reset);
        assert_eq!(e.code, None);
        assert!(matches!(e.ch, Some(Cow::Borrowed(_))), "borrowed");
        assert_eq!(evs[1].ch.as_deref(), Some("ticks:MSFT"));
        assert_eq!(evs[2].seq, Some(103));
        assert_eq!(evs[2].ts, Some(TS as u64 + 2));
        // The JSON of the same events reads the same.
        let json = format!(
            r#"[{{"type":"tick","ch":"ticks:AAPL","seq":102,"ts":{TS},"price":189.23,"size":100,"side":"buy","xts":1}},{{"type":"tick","ch":"ticks:MSFT","seq":7,"ts":{}}},{{"type":"tick","ch":"ticks:AAPL","seq":103,"ts":{}}}]"#,
            TS + 1,
            TS + 2
        );
        assert_eq!(collect(&json), evs);
    }

    #[test]
    fn msgpack_book_events_read_like_json() {
        let frame = Mp::default()
            .arr(3)
            .book("book:BTC-USD", 42, TS, false)
            .book("book:BTC-USD", 50, TS + 1, true)
            .book("book:ETH-USD", 7, TS + 2, false)
            .0;
        let evs = mp_collect(&frame);
        assert_eq!(evs.len(), 3);
        assert_eq!(evs[0].kind, "book");
        assert_eq!(evs[0].ch.as_deref(), Some("book:BTC-USD"));
        assert_eq!((evs[0].seq, evs[0].ts), (Some(42), Some(TS as u64)));
        assert!(!evs[0].reset);
        assert!(evs[1].reset, "reset is read from the fifth element");
        assert_eq!(evs[1].seq, Some(50));
        assert!(!evs[2].reset);
        // The JSON of the same events (docs/PROTOCOL.md "Order books") reads the same.
        let json = format!(
            r#"[{{"type":"book","ch":"book:BTC-USD","seq":42,"ts":{TS},"reset":false,"bids":[[42000.5,1.25],[41999,0]],"asks":[[42001,3]],"checksum":2374859382}},{{"type":"book","ch":"book:BTC-USD","seq":50,"ts":{},"reset":true,"bids":[[42000.5,1.25],[41999,0]],"asks":[[42001,3]],"checksum":2374859382}},{{"type":"book","ch":"book:ETH-USD","seq":7,"ts":{},"reset":false,"bids":[[42000.5,1.25],[41999,0]],"asks":[[42001,3]],"checksum":2374859382}}]"#,
            TS + 1,
            TS + 2
        );
        assert_eq!(collect(&json), evs);
        // Portfolio (code 4) has a name too; a book event cut short after `ts` still reads
        // (reset false), one whose reset is not a boolean is an error.
        let frame = Mp::default()
            .arr(2)
            .arr(5)
            .u(4)
            .s("portfolio")
            .u(3)
            .i(TS)
            .map(0)
            .arr(4)
            .u(5)
            .s("book:A")
            .u(1)
            .i(TS)
            .0;
        let evs = mp_collect(&frame);
        assert_eq!(evs[0].kind, "portfolio");
        assert_eq!((evs[1].kind.as_ref(), evs[1].reset), ("book", false));
        let bad = Mp::default()
            .arr(1)
            .arr(5)
            .u(5)
            .s("book:A")
            .u(1)
            .i(TS)
            .u(1)
            .0;
        let err = for_each_msgpack_event(&bad, |_| {}).unwrap_err();
        assert_eq!(err.what, "a book event's reset must be a boolean");
    }

    #[test]
    fn msgpack_bar_and_indicators() {
        let frame = Mp::default()
            .arr(2)
            .bar("bars.1s:AAPL", 7, TS)
            .indicators("indicators:AAPL", 9, TS + 5)
            .0;
        let evs = mp_collect(&frame);
        assert_eq!(evs[0].kind, "bar");
        assert_eq!(evs[0].ch.as_deref(), Some("bars.1s:AAPL"));
        assert_eq!((evs[0].seq, evs[0].ts), (Some(7), Some(TS as u64)));
        assert_eq!(evs[1].kind, "indicators");
        assert_eq!(evs[1].ch.as_deref(), Some("indicators:AAPL"));
        assert_eq!((evs[1].seq, evs[1].ts), (Some(9), Some(TS as u64 + 5)));
        // An indicators event whose every value is still nil, and one with no fields at all.
        let frame = Mp::default()
            .arr(2)
            .arr(5)
            .u(3)
            .s("indicators:X")
            .u(1)
            .i(TS)
            .map(2)
            .s("sma_3")
            .nil()
            .s("rsi_3")
            .nil()
            .arr(5)
            .u(3)
            .s("indicators:Y")
            .u(2)
            .i(TS)
            .map(0)
            .0;
        let evs = mp_collect(&frame);
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].seq, Some(1));
        assert_eq!(evs[1].ch.as_deref(), Some("indicators:Y"));
    }

    #[test]
    fn msgpack_one_element_array_and_empty() {
        let frame = Mp::default().arr(1).tick("ticks:A", 1, TS).0;
        let evs = mp_collect(&frame);
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].ch.as_deref(), Some("ticks:A"));
        assert!(mp_collect(&Mp::default().arr(0).0).is_empty());
    }

    #[test]
    fn msgpack_replies_and_snapshots() {
        // ack, error, pong, list, and two snapshots (one with reset), in one frame.
        let frame = Mp::default()
            .arr(6)
            .map(5)
            .s("type")
            .s("ack")
            .s("id")
            .u(1)
            .s("op")
            .s("subscribe")
            .s("channels")
            .arr(2)
            .s("ticks:AAPL")
            .s("indicators:*")
            .s("epoch")
            .u(1_764_070_000_123_456)
            .map(4)
            .s("type")
            .s("error")
            .s("id")
            .u(1)
            .s("code")
            .s("unknown_channel")
            .s("message")
            .s("no such symbol: AAPLX")
            .map(3)
            .s("type")
            .s("pong")
            .s("id")
            .u(3)
            .s("ts")
            .u(TS as u64)
            .map(4)
            .s("type")
            .s("list")
            .s("id")
            .u(4)
            .s("symbols")
            .arr(2)
            .s("AAPL")
            .s("MSFT")
            .s("kinds")
            .arr(1)
            .s("ticks")
            .map(4)
            .s("type")
            .s("snapshot")
            .s("ch")
            .s("ticks:AAPL")
            .s("seq")
            .u(101)
            .s("data")
            .arr(2)
            .tick("ticks:AAPL", 100, TS)
            .tick("ticks:AAPL", 101, TS)
            .map(5)
            .s("data")
            .arr(0)
            .s("reset")
            .b(true)
            .s("seq")
            .u(3)
            .s("ch")
            .s("ticks:X")
            .s("type")
            .s("snapshot")
            .0;
        let evs = mp_collect(&frame);
        let kinds: Vec<&str> = evs.iter().map(|e| e.kind.as_ref()).collect();
        assert_eq!(
            kinds,
            ["ack", "error", "pong", "list", "snapshot", "snapshot"]
        );
        assert_eq!(evs[0].ch, None);
        assert_eq!(evs[0].seq, None);
        assert_eq!(evs[1].code.as_deref(), Some("unknown_channel"));
        assert_eq!(evs[2].ts, Some(TS as u64));
        // A snapshot's data is skipped, as in JSON: the snapshot is one message.
        let snap = &evs[4];
        assert_eq!(snap.ch.as_deref(), Some("ticks:AAPL"));
        assert_eq!((snap.seq, snap.ts, snap.reset), (Some(101), None, false));
        assert_eq!(
            (evs[5].ch.as_deref(), evs[5].seq, evs[5].reset),
            (Some("ticks:X"), Some(3), true)
        );
        assert_eq!(
            msgpack_list_symbols(&frame).unwrap(),
            Some(vec!["AAPL".to_string(), "MSFT".to_string()])
        );
        let ticks = Mp::default().arr(1).tick("ticks:A", 1, TS).0;
        assert_eq!(msgpack_list_symbols(&ticks).unwrap(), None);
    }

    #[test]
    fn msgpack_lenient_values() {
        // nil ch/seq/ts, a float ts, a negative ts, an unknown kind code with extra fields,
        // and map values of every other type, skipped.
        let frame = Mp::default()
            .arr(4)
            .arr(4)
            .u(1)
            .nil()
            .nil()
            .nil()
            .arr(6)
            .u(2)
            .s("bars.1m:A")
            .u(1)
            .f(1.5e18)
            .raw(&[0xc4, 2, 0xff, 0xfe]) // bin8
            .raw(&[0xd6, 1, 0, 0, 0, 0]) // fixext4
            .arr(4)
            .u(9)
            .s("future:A")
            .u(5)
            .i(-1)
            .map(7)
            .s("type")
            .s("whatever")
            .s("nested")
            .map(1)
            .s("a")
            .arr(3)
            .i(-5)
            .f(0.5)
            .nil()
            .s("u64")
            .u(u64::MAX)
            .s("i64")
            .i(i64::MIN)
            .s("f32")
            .raw(&[0xca, 0, 0, 0, 0])
            .s("str16")
            .s(&"x".repeat(300))
            .s("seq")
            .nil()
            .0;
        let evs = mp_collect(&frame);
        assert_eq!(evs[0].kind, "tick");
        assert_eq!(
            (evs[0].ch.as_deref(), evs[0].seq, evs[0].ts),
            (None, None, None)
        );
        assert_eq!(evs[1].kind, "bar");
        assert_eq!(evs[1].ts, Some(1_500_000_000_000_000_000));
        assert_eq!(evs[2].kind, UNKNOWN_KIND);
        assert_eq!(evs[2].ts, None, "negative ts is no ts");
        assert_eq!(evs[3].kind, "whatever");
        assert_eq!(evs[3].seq, None);
    }

    #[test]
    fn msgpack_malformed_frames_error() {
        let good = Mp::default()
            .arr(2)
            .tick("ticks:A", 1, TS)
            .map(2)
            .s("type")
            .s("snapshot")
            .s("data")
            .arr(1)
            .bar("bars.1s:A", 1, TS)
            .0;
        assert_eq!(mp_collect(&good).len(), 2);
        // Every truncation of a good frame is an error, never a panic.
        for cut in 0..good.len() {
            assert!(
                for_each_msgpack_event(&good[..cut], |_| {}).is_err(),
                "cut at {cut} must fail"
            );
        }
        let bad: Vec<(&str, Vec<u8>)> = vec![
            ("bare map", Mp::default().map(1).s("type").s("ack").0),
            ("bare event", Mp::default().tick("ticks:A", 1, TS).0),
            ("scalar", Mp::default().u(42).0),
            ("string message", Mp::default().arr(1).s("tick").0),
            ("trailing", Mp::default().arr(0).u(1).0),
            (
                "short event",
                Mp::default().arr(1).arr(3).u(1).s("a").u(1).0,
            ),
            (
                "string kind",
                Mp::default().arr(1).arr(4).s("tick").s("a").u(1).u(1).0,
            ),
            (
                "negative kind",
                Mp::default().arr(1).arr(4).i(-1).s("a").u(1).u(1).0,
            ),
            ("int ch", Mp::default().arr(1).arr(4).u(1).u(5).u(1).u(1).0),
            (
                "negative seq",
                Mp::default().arr(1).arr(4).u(1).s("a").i(-1).u(1).0,
            ),
            (
                "float seq",
                Mp::default().arr(1).arr(4).u(1).s("a").f(1.0).u(1).0,
            ),
            (
                "string ts",
                Mp::default().arr(1).arr(4).u(1).s("a").u(1).s("1").0,
            ),
            ("no type", Mp::default().arr(1).map(1).s("ch").s("a").0),
            ("nil type", Mp::default().arr(1).map(1).s("type").nil().0),
            (
                "duplicate key",
                Mp::default()
                    .arr(1)
                    .map(2)
                    .s("type")
                    .s("a")
                    .s("type")
                    .s("b")
                    .0,
            ),
            ("int key", Mp::default().arr(1).map(1).u(1).s("a").0),
            (
                "nil reset",
                Mp::default()
                    .arr(1)
                    .map(2)
                    .s("type")
                    .s("snapshot")
                    .s("reset")
                    .nil()
                    .0,
            ),
            (
                "bad utf-8",
                Mp::default()
                    .arr(1)
                    .map(1)
                    .s("type")
                    .raw(&[0xa2, 0xff, 0xfe])
                    .0,
            ),
            (
                "reserved",
                Mp::default()
                    .arr(1)
                    .map(2)
                    .s("type")
                    .s("a")
                    .s("x")
                    .raw(&[0xc1])
                    .0,
            ),
            // Lengths far beyond the frame fail at once.
            (
                "huge array",
                Mp::default().raw(&[0xdd, 0xff, 0xff, 0xff, 0xff]).0,
            ),
            (
                "huge nested",
                Mp::default()
                    .arr(1)
                    .map(2)
                    .s("type")
                    .s("a")
                    .s("x")
                    .raw(&[0xdf, 0xff, 0xff, 0xff, 0xff])
                    .0,
            ),
            (
                "huge str",
                Mp::default()
                    .arr(1)
                    .map(1)
                    .s("type")
                    .raw(&[0xdb, 0xff, 0xff, 0xff, 0xff])
                    .0,
            ),
            (
                "huge bin",
                Mp::default()
                    .arr(1)
                    .arr(5)
                    .u(1)
                    .s("a")
                    .u(1)
                    .u(1)
                    .raw(&[0xc6, 0xff, 0xff, 0xff, 0xff])
                    .0,
            ),
            (
                "huge ext",
                Mp::default()
                    .arr(1)
                    .arr(5)
                    .u(1)
                    .s("a")
                    .u(1)
                    .u(1)
                    .raw(&[0xc9, 0xff, 0xff, 0xff, 0xff, 1])
                    .0,
            ),
            ("json text", br#"[{"type":"tick"}]"#.to_vec()),
        ];
        for (name, frame) in bad {
            let err = for_each_msgpack_event(&frame, |_| {}).expect_err(name);
            assert!(err.offset <= frame.len(), "{name}: {err}");
            assert!(!err.to_string().is_empty());
        }
        assert!(msgpack_list_symbols(&[0x91, 0x81, 0xa4]).is_err());
    }

    #[test]
    fn msgpack_deep_nesting_does_not_overflow() {
        // 200k nested arrays inside a skipped field: walked with a counter, not recursion.
        let depth = 200_000;
        let mut frame = Mp::default().arr(1).arr(5).u(1).s("a").u(1).u(1).0;
        frame.extend(std::iter::repeat_n(0x91, depth));
        frame.push(0xc0);
        assert_eq!(mp_collect(&frame).len(), 1);
        frame.pop();
        assert!(for_each_msgpack_event(&frame, |_| {}).is_err());
    }

    #[test]
    fn msgpack_garbage_never_panics() {
        // Deterministic pseudo-random bytes, and random mutations of a good frame.
        let good = Mp::default()
            .arr(3)
            .tick("ticks:A", 1, TS)
            .indicators("indicators:A", 2, TS)
            .map(3)
            .s("type")
            .s("error")
            .s("code")
            .s("bad_request")
            .s("id")
            .nil()
            .0;
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let len = (next() % 64) as usize;
            let garbage: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = for_each_msgpack_event(&garbage, |_| {});
            let _ = msgpack_list_symbols(&garbage);
            let mut m = good.clone();
            for _ in 0..1 + next() % 3 {
                let i = (next() as usize) % m.len();
                m[i] = next() as u8;
            }
            let _ = for_each_msgpack_event(&m, |_| {});
        }
    }
}
