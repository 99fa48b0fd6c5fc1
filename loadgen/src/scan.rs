//! The JSON frame reader's fast path: a byte scanner that reads the fields an [`Event`] holds
//! (`type`, `ch`, `seq`, `ts`, `reset`, `code`) and steps over every other value by validating
//! its grammar without building it (a price is checked as a JSON number, never converted to a
//! float). Anything it is unsure of (an escape in a field it reads, a duplicate field, a `ts`
//! that is not a plain integer, a malformed value) is handed to serde for that one object, so
//! the result, errors included, is what [`crate::frame::for_each_event_serde`] gives; the tests
//! compare the two on valid, odd and mutated frames.

use std::borrow::Cow;

use serde::de::Error as _;

use crate::frame::Event;

/// Deepest nesting of a skipped value the scanner walks (serde's recursion limit is 128).
const MAX_DEPTH: usize = 100;

/// Calls `f` for every event in `text` (one object or an array of objects) and returns how many
/// there were; the events before an error in a frame that breaks off are still passed to `f`.
pub fn for_each_event<'a, F>(text: &'a str, mut f: F) -> Result<usize, serde_json::Error>
where
    F: FnMut(Event<'a>),
{
    let b = text.as_bytes();
    let mut i = ws(b, 0);
    let n = match b.get(i) {
        Some(b'[') => {
            i = ws(b, i + 1);
            let mut n = 0;
            if b.get(i) == Some(&b']') {
                i += 1;
            } else {
                loop {
                    let (ev, next) = object(text, i)?;
                    f(ev);
                    n += 1;
                    i = ws(b, next);
                    match b.get(i) {
                        Some(b',') => i = ws(b, i + 1),
                        Some(b']') => {
                            i += 1;
                            break;
                        }
                        _ => return Err(bad("expected `,` or `]` after an event")),
                    }
                }
            }
            n
        }
        Some(b'{') => {
            let (ev, next) = object(text, i)?;
            f(ev);
            i = next;
            1
        }
        // Not an event or an array: serde words the error.
        _ => return crate::frame::for_each_event_serde(text, |_| {}),
    };
    if ws(b, i) != b.len() {
        return Err(bad("trailing characters after the frame"));
    }
    Ok(n)
}

fn bad(what: &'static str) -> serde_json::Error {
    serde_json::Error::custom(what)
}

/// One event object starting at `at`: scanned, or read by serde when the scanner declines.
/// Returns the event and the offset just past its closing brace.
fn object(text: &str, at: usize) -> Result<(Event<'_>, usize), serde_json::Error> {
    if let Some(done) = scan_object(text.as_bytes(), at) {
        return Ok(done);
    }
    let rest = text
        .get(at..)
        .ok_or_else(|| bad("event offset inside a character"))?;
    let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<Event<'_>>();
    match stream.next() {
        Some(Ok(ev)) => Ok((ev, at + stream.byte_offset())),
        Some(Err(e)) => Err(e),
        None => Err(bad("expected an event object")),
    }
}

/// The fields of one object, scanned; `None` when serde must decide.
fn scan_object(b: &[u8], at: usize) -> Option<(Event<'_>, usize)> {
    if b.get(at) != Some(&b'{') {
        return None;
    }
    let mut kind: Option<&str> = None;
    let (mut ch, mut code): (Option<Option<&str>>, Option<Option<&str>>) = (None, None);
    let (mut seq, mut ts): (Option<Option<u64>>, Option<Option<u64>>) = (None, None);
    let mut reset: Option<bool> = None;
    let mut i = ws(b, at + 1);
    if b.get(i) == Some(&b'}') {
        return None; // no `type`: serde's "missing field"
    }
    loop {
        let (key, after) = plain_str(b, i)?;
        i = ws(b, after);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = ws(b, i + 1);
        i = match key {
            "type" => {
                let (v, next) = plain_str(b, i)?;
                set(&mut kind, v)?;
                next
            }
            "ch" | "code" => {
                let (v, next) = match literal(b, i, b"null") {
                    Some(next) => (None, next),
                    None => plain_str(b, i).map(|(v, next)| (Some(v), next))?,
                };
                set(if key == "ch" { &mut ch } else { &mut code }, v)?;
                next
            }
            "seq" | "ts" => {
                let (v, next) = match literal(b, i, b"null") {
                    Some(next) => (None, next),
                    None => uint(b, i).map(|(v, next)| (Some(v), next))?,
                };
                set(if key == "seq" { &mut seq } else { &mut ts }, v)?;
                next
            }
            "reset" => {
                let (v, next) = match literal(b, i, b"true") {
                    Some(next) => (true, next),
                    None => (false, literal(b, i, b"false")?),
                };
                set(&mut reset, v)?;
                next
            }
            _ => skip(b, i, 0)?,
        };
        i = ws(b, i);
        match b.get(i) {
            Some(b',') => i = ws(b, i + 1),
            Some(b'}') => break,
            _ => return None,
        }
    }
    let ev = Event {
        kind: Cow::Borrowed(kind?),
        ch: ch.flatten().map(Cow::Borrowed),
        seq: seq.flatten(),
        ts: ts.flatten(),
        reset: reset.unwrap_or(false),
        code: code.flatten().map(Cow::Borrowed),
    };
    Some((ev, i + 1))
}

/// Sets a field once; a second time is serde's "duplicate field".
fn set<T>(slot: &mut Option<T>, v: T) -> Option<()> {
    match slot {
        Some(_) => None,
        None => {
            *slot = Some(v);
            Some(())
        }
    }
}

fn ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// `lit` at `i`, followed by the end of the value.
fn literal(b: &[u8], i: usize, lit: &[u8]) -> Option<usize> {
    let end = i + lit.len();
    (b.get(i..end) == Some(lit) && !b.get(end).is_some_and(u8::is_ascii_alphanumeric))
        .then_some(end)
}

/// A string without escapes or control characters, borrowed; `None` for any other string.
fn plain_str(b: &[u8], i: usize) -> Option<(&str, usize)> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let body = b.get(i + 1..)?;
    let len = body
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
    if body[len] != b'"' {
        return None;
    }
    // The frame is a `str` and the string ends at an ASCII quote: a whole UTF-8 sequence.
    let s = std::str::from_utf8(&body[..len]).ok()?;
    Some((s, i + 1 + len + 1))
}

/// A plain non-negative integer that fits a `u64` (no sign, fraction or exponent).
fn uint(b: &[u8], i: usize) -> Option<(u64, usize)> {
    let end = number(b, i)?;
    let digits = &b[i..end];
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: u64 = 0;
    for &d in digits {
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some((v, end))
}

/// The end of a JSON number at `i`: `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`.
fn number(b: &[u8], mut i: usize) -> Option<usize> {
    let digits = |b: &[u8], mut i: usize| {
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        (i > start).then_some(i)
    };
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    i = match b.get(i) {
        Some(b'0') => i + 1,
        Some(b'1'..=b'9') => digits(b, i)?,
        _ => return None,
    };
    if b.get(i) == Some(&b'.') {
        i = digits(b, i + 1)?;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        i = digits(b, i)?;
    }
    Some(i)
}

/// Steps over one JSON value at `i`, checking its grammar; returns the offset past it.
fn skip(b: &[u8], i: usize, depth: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => skip_str(b, i),
        b'{' | b'[' if depth >= MAX_DEPTH => None,
        b'{' => {
            let mut i = ws(b, i + 1);
            if b.get(i) == Some(&b'}') {
                return Some(i + 1);
            }
            loop {
                i = ws(b, skip_str(b, i)?);
                if b.get(i) != Some(&b':') {
                    return None;
                }
                i = ws(b, skip(b, ws(b, i + 1), depth + 1)?);
                match b.get(i)? {
                    b',' => i = ws(b, i + 1),
                    b'}' => return Some(i + 1),
                    _ => return None,
                }
            }
        }
        b'[' => {
            let mut i = ws(b, i + 1);
            if b.get(i) == Some(&b']') {
                return Some(i + 1);
            }
            loop {
                i = ws(b, skip(b, i, depth + 1)?);
                match b.get(i)? {
                    b',' => i = ws(b, i + 1),
                    b']' => return Some(i + 1),
                    _ => return None,
                }
            }
        }
        b't' => literal(b, i, b"true"),
        b'f' => literal(b, i, b"false"),
        b'n' => literal(b, i, b"null"),
        _ => number(b, i),
    }
}

/// Steps over a string, escapes included (checked as JSON allows them).
fn skip_str(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let mut i = i + 1;
    loop {
        match *b.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => {
                i += match *b.get(i + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => 2,
                    b'u' if b.get(i + 2..i + 6)?.iter().all(u8::is_ascii_hexdigit) => 6,
                    _ => return None,
                };
            }
            c if c < 0x20 => return None,
            _ => i += 1,
        }
    }
}

/// An event as serde reads it, for the tests' comparisons.
#[cfg(test)]
fn serde_events(text: &str) -> (Vec<Event<'_>>, bool) {
    let mut out = Vec::new();
    let ok = crate::frame::for_each_event_serde(text, |e| out.push(e)).is_ok();
    (out, ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanned(text: &str) -> (Vec<Event<'_>>, bool) {
        let mut out = Vec::new();
        let ok = for_each_event(text, |e| out.push(e)).is_ok();
        (out, ok)
    }

    fn same_as_serde(text: &str) {
        assert_eq!(scanned(text), serde_events(text), "frame {text:?}");
    }

    const TICK: &str = r#"{"type":"tick","ch":"ticks:AAPL","seq":102,"ts":1764070000123456789,"price":189.23,"size":100,"side":"buy","xts":1764070000120000000}"#;

    #[test]
    fn ticks_are_scanned_without_serde() {
        let frame = format!("[{TICK},{TICK}]");
        let b = frame.as_bytes();
        let (ev, end) = scan_object(b, 1).expect("a plain tick is scanned");
        assert_eq!(
            (ev.kind.as_ref(), ev.ch.as_deref(), ev.seq, ev.ts),
            (
                "tick",
                Some("ticks:AAPL"),
                Some(102),
                Some(1_764_070_000_123_456_789)
            )
        );
        assert_eq!(b[end], b',');
        same_as_serde(&frame);
    }

    #[test]
    fn valid_and_odd_frames_read_as_serde_reads_them() {
        for text in [
            TICK,
            "[]",
            " [ ] ",
            r#"{"type":"snapshot","ch":"ticks:X","seq":3,"reset":true,"data":[{"a":[1,{"b":null}]},-0.5e-3]}"#,
            r#"{"type":"ack","id":1,"op":"subscribe","channels":["ticks:*"],"extra":{"x":null}}"#,
            r#"{"type":"error","id":1,"code":"unknown_channel","message":"no such symbol: \"X\""}"#,
            r#"{"type":"bar","ch":"bars.1s:A\u0042","seq":7,"ts":1.5e18}"#,
            r#"{"type":"tick","ch":null,"seq":null,"ts":null,"code":null,"reset":false}"#,
            r#"{"type":"tick","seq":1,"seq":2}"#,
            r#"{"type":"tick","ts":-5}"#,
            r#"{"type":"tick","ts":99999999999999999999999}"#,
            r#"{"type":"tick","seq":18446744073709551616}"#,
            r#"{"type":"tick","seq":1.0}"#,
            r#"{ "type" : "tick" , "ch" : "ticks:é" }"#,
            r#"[{"type":"tick","x":01}]"#,
            r#"[{"type":"tick","x":"\q"}]"#,
            r#"[{"type":"tick","x":tru}]"#,
            r#"[{"type":"tick"},{"ch":"ticks:A"}]"#,
            r#"[{"type":"tick"}] x"#,
            r#"[{"type":"tick"},]"#,
            r#"{"type":"tick"}{"type":"tick"}"#,
            "",
            "{",
            "42",
            "[1]",
            r#"{"ch":"ticks:A"}"#,
            "{}",
        ] {
            same_as_serde(text);
        }
    }

    #[test]
    fn mutated_frames_read_as_serde_reads_them() {
        let base = format!(
            r#"[{TICK},{{"type":"snapshot","ch":"ticks:B","seq":4,"data":[{TICK}],"reset":true}},{{"type":"error","code":"x","message":"a\"b"}}]"#
        );
        let alphabet = br#"{}[],:"\0123456789.-eEtrufalsn x"#;
        let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: usize| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % n as u64) as usize
        };
        for _ in 0..20_000 {
            let mut bytes = base.clone().into_bytes();
            for _ in 0..1 + next(3) {
                let at = next(bytes.len());
                match next(3) {
                    0 => {
                        bytes.remove(at);
                    }
                    1 => bytes.insert(at, alphabet[next(alphabet.len())]),
                    _ => bytes[at] = alphabet[next(alphabet.len())],
                }
            }
            let text = String::from_utf8(bytes).expect("ASCII in, ASCII out");
            same_as_serde(&text);
        }
    }

    #[test]
    fn deep_nesting_goes_to_serde() {
        let deep = format!(
            r#"{{"type":"x","d":{}{}}}"#,
            "[".repeat(300),
            "]".repeat(300)
        );
        same_as_serde(&deep);
    }
}
