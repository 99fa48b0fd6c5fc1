//! Cheap parsing of server frames.
//!
//! The loadgen shares a 2-core box with the server it measures, so it reads only what it
//! reports on: `type`, `ch`, `seq`, `ts`, `reset` and `code`. Strings are borrowed from the
//! frame when they hold no escapes, every other field (prices, snapshot `data`, ...) is skipped
//! by serde without building values, and an array frame is walked element by element with a
//! callback instead of being collected into a `Vec`.

use std::borrow::Cow;
use std::fmt;

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
    /// `true` on a snapshot sent because a `from` gap is no longer held.
    #[serde(default)]
    pub reset: bool,
    /// Stable error code on `error` replies.
    #[serde(default, borrow, deserialize_with = "opt_cow")]
    pub code: Option<Cow<'a, str>>,
}

/// Calls `f` for every event in `text` (one object or an array of objects) and returns how many
/// there were.
pub fn for_each_event<'a, F>(text: &'a str, mut f: F) -> Result<usize, serde_json::Error>
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

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(text: &str) -> Vec<Event<'_>> {
        let mut out = Vec::new();
        let n = for_each_event(text, |e| out.push(e)).expect("frame parses");
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
            assert!(for_each_event(bad, |_| {}).is_err(), "{bad:?} must fail");
        }
    }
}
