//! Order books: one per symbol, built at ingest from the feeds' depth updates. What clients see
//! is a symbol's *view*, the top `book.depth` levels per side, published as deltas (the levels
//! that changed, size 0 for a level that left the view) each with a checksum of the view's top
//! levels, so a client can prove its copy (docs/PROTOCOL.md "Order books").
//!
//! Prices key the levels by their bit pattern: for positive finite floats the bits order as the
//! numbers do, so a `BTreeMap<u64, f64>` walks a side in price order without a float wrapper.

mod config;
mod published;

use std::collections::BTreeMap;
use std::fmt;

pub use config::BookConfig;
pub use published::PublishedView;

/// One price level: (price, size). Size 0 in a delta removes the level.
pub type Level = (f64, f64);

/// How many levels per side the checksum covers (as Kraken's and OKX's books do).
pub const CHECKSUM_LEVELS: usize = 10;

/// A depth update as a feed reports it, before ingest gives it a symbol id and a `seq`.
#[derive(Debug, Clone, PartialEq)]
pub struct BookUpdate {
    pub symbol: String,
    /// A whole book (a venue's snapshot, or the first after a resync): replaces every level.
    pub snapshot: bool,
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
    /// Exchange time, nanoseconds since the Unix epoch.
    pub exchange_ts: i64,
}

/// Why a depth update was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BookError {
    #[error("invalid symbol {0:?}: must match [A-Z0-9._-]{{1,32}}")]
    Symbol(String),
    #[error("level price must be a finite number > 0, got {0}")]
    Price(f64),
    #[error("level size must be a finite number >= 0, got {0}")]
    Size(f64),
    #[error("exchange time must be > 0 ns since the epoch, got {0}")]
    Time(i64),
}

impl BookUpdate {
    /// Checks the update against the contract's rules.
    pub fn validate(&self) -> Result<(), BookError> {
        if !crate::symbol_name::is_valid_symbol(&self.symbol) {
            return Err(BookError::Symbol(self.symbol.clone()));
        }
        if self.exchange_ts <= 0 {
            return Err(BookError::Time(self.exchange_ts));
        }
        for &(price, size) in self.bids.iter().chain(&self.asks) {
            if !(price.is_finite() && price > 0.0) {
                return Err(BookError::Price(price));
            }
            if !(size.is_finite() && size >= 0.0) {
                return Err(BookError::Size(size));
            }
        }
        Ok(())
    }
}

/// One symbol's whole book: every level its source reported, up to `max_levels` per side.
#[derive(Debug, Clone, Default)]
pub struct Book {
    bids: BTreeMap<u64, f64>,
    asks: BTreeMap<u64, f64>,
}

impl Book {
    /// Applies an update (a snapshot replaces everything); keeps at most `max_levels` per side,
    /// dropping the levels farthest from the touch. Returns how many levels were dropped.
    pub fn apply(&mut self, u: &BookUpdate, max_levels: usize) -> usize {
        if u.snapshot {
            self.bids.clear();
            self.asks.clear();
        }
        for &(price, size) in &u.bids {
            set(&mut self.bids, price, size);
        }
        for &(price, size) in &u.asks {
            set(&mut self.asks, price, size);
        }
        let mut dropped = 0;
        while self.bids.len() > max_levels {
            self.bids.pop_first(); // the lowest bid
            dropped += 1;
        }
        while self.asks.len() > max_levels {
            self.asks.pop_last(); // the highest ask
            dropped += 1;
        }
        dropped
    }

    /// The top `depth` levels per side.
    pub fn view(&self, depth: usize) -> BookView {
        BookView {
            bids: self
                .bids
                .iter()
                .rev()
                .take(depth)
                .map(|(&p, &s)| (f64::from_bits(p), s))
                .collect(),
            asks: self
                .asks
                .iter()
                .take(depth)
                .map(|(&p, &s)| (f64::from_bits(p), s))
                .collect(),
        }
    }

    /// Levels held, both sides.
    pub fn len(&self) -> usize {
        self.bids.len() + self.asks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn set(side: &mut BTreeMap<u64, f64>, price: f64, size: f64) {
    if size == 0.0 {
        side.remove(&price.to_bits());
    } else {
        side.insert(price.to_bits(), size);
    }
}

/// The top levels of a book: bids from the highest price down, asks from the lowest up.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BookView {
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
}

impl BookView {
    /// The top `depth` levels per side of this view.
    pub fn top(&self, depth: usize) -> BookView {
        BookView {
            bids: self.bids.iter().take(depth).copied().collect(),
            asks: self.asks.iter().take(depth).copied().collect(),
        }
    }

    /// What turns `self` into `next`: the levels of `next` that are new or changed, and size 0
    /// for each level of `self` that `next` no longer has; per side, in `next`'s order then the
    /// removals.
    ///
    /// Linear when both sides are in view order (bids strictly descending, asks strictly
    /// ascending, as [`Book::view`] makes them); any other input (a venue's levels as it sent
    /// them) gets the same result from a quadratic comparison.
    pub fn diff(&self, next: &BookView) -> BookView {
        BookView {
            bids: diff_side(&self.bids, &next.bids, |a, b| a > b),
            asks: diff_side(&self.asks, &next.asks, |a, b| a < b),
        }
    }

    /// Applies a delta (a client's copy does this), then keeps the top `depth` per side.
    pub fn apply(&mut self, delta: &BookView, depth: usize) {
        apply_side(&mut self.bids, &delta.bids, |a, b| b.total_cmp(&a), depth);
        apply_side(&mut self.asks, &delta.asks, |a, b| a.total_cmp(&b), depth);
    }

    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.bids.is_empty() && self.asks.is_empty()
    }

    /// CRC-32 (IEEE, as zlib's) of the top [`CHECKSUM_LEVELS`] levels: for i in 0..10, the i-th
    /// bid then the i-th ask, each present one as `price:size`, all joined by `:`. Numbers are
    /// written as their shortest round-trip decimal in plain notation (`187.25`, `100`,
    /// `0.0005`), which is JavaScript's `String(x)` for values from 1e-6 to 1e21.
    ///
    /// The text is fed to the CRC as it is written ([`write_f64`] writes exactly what `{}`
    /// would), without a `String` or `fmt` in between.
    pub fn checksum(&self) -> u32 {
        let mut sink = CrcSink::new();
        let mut first = true;
        for i in 0..CHECKSUM_LEVELS {
            for &(price, size) in [self.bids.get(i), self.asks.get(i)].into_iter().flatten() {
                if !first {
                    sink.put(b":");
                }
                first = false;
                write_f64(&mut sink, price);
                sink.put(b":");
                write_f64(&mut sink, size);
            }
        }
        sink.finish()
    }

    /// Best bid and best ask, when both sides have a level.
    pub fn touch(&self) -> Option<(Level, Level)> {
        Some((*self.bids.first()?, *self.asks.first()?))
    }

    /// Mid, spread and imbalance at the touch (all `None` while a side is empty).
    pub fn top_of_book(&self) -> TopOfBook {
        match self.touch() {
            Some(((bid, bid_size), (ask, ask_size))) => TopOfBook {
                mid: Some((bid + ask) / 2.0),
                spread: Some(ask - bid),
                imbalance: Some((bid_size - ask_size) / (bid_size + ask_size)),
            },
            None => TopOfBook::default(),
        }
    }
}

/// The book's derived view: what `GET /api/v1/book` and the `indicators` event show of it.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, utoipa::ToSchema)]
pub struct TopOfBook {
    /// (best bid + best ask) / 2.
    pub mid: Option<f64>,
    /// best ask − best bid.
    pub spread: Option<f64>,
    /// (bid size − ask size) / (bid size + ask size) at the touch, in [−1, 1].
    pub imbalance: Option<f64>,
}

/// Slicing by 16: the same CRC as the one-table default, several times faster per byte.
static CRC32: crc::Crc<u32, crc::Table<16>> =
    crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISO_HDLC);

/// Where [`write_f64`] writes its bytes.
trait Sink {
    fn put(&mut self, bytes: &[u8]);

    /// Up to 32 bytes that `write` puts at the start of the array it is given, returning how
    /// many; the array may be the sink's own buffer.
    #[inline]
    fn put_with(&mut self, write: impl FnOnce(&mut [u8; 32]) -> usize) {
        let mut bytes = [0; 32];
        let len = write(&mut bytes);
        self.put(&bytes[..len]);
    }

    fn zeros(&mut self, mut n: usize) {
        const ZEROS: [u8; 64] = [b'0'; 64];
        while n > 0 {
            let k = n.min(ZEROS.len());
            self.put(&ZEROS[..k]);
            n -= k;
        }
    }
}

/// A CRC-32 digest fed through a stack buffer: one `update` per ~256 bytes, and numbers
/// written straight into it (not byte by byte into an array that is then copied, which stalls
/// the copy's wide loads on the narrow stores).
struct CrcSink {
    digest: crc::Digest<'static, u32, crc::Table<16>>,
    buf: [u8; 256],
    len: usize,
}

impl CrcSink {
    fn new() -> Self {
        CrcSink {
            digest: CRC32.digest(),
            buf: [0; 256],
            len: 0,
        }
    }

    #[inline]
    fn flush(&mut self) {
        self.digest.update(&self.buf[..self.len]);
        self.len = 0;
    }

    fn finish(mut self) -> u32 {
        self.flush();
        self.digest.finalize()
    }
}

impl Sink for CrcSink {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        if bytes.len() > self.buf.len() - self.len {
            self.flush();
            if bytes.len() > self.buf.len() {
                self.digest.update(bytes);
                return;
            }
        }
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    #[inline]
    fn put_with(&mut self, write: impl FnOnce(&mut [u8; 32]) -> usize) {
        if self.len > self.buf.len() - 32 {
            self.flush();
        }
        let space: &mut [u8; 32] = (&mut self.buf[self.len..self.len + 32])
            .try_into()
            .expect("32 bytes");
        let len = write(space);
        debug_assert!(len <= 32);
        self.len += len;
    }
}

/// 10^j for the short-decimal path of [`write_f64`]; all exact in f64.
const POW10: [f64; 10] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];

/// Writes `x` exactly as `format!("{}", x)` does: the shortest decimal that reads back as `x`
/// (of those, the nearest), in plain notation: no exponent, no trailing fractional zeros.
///
/// - The common case, a short decimal (a price on a tick grid, a size), without ryu: if some
///   `d / 10^j` with `d < 10^15` and `j < 10` reads back as `x` (the f64 division rounds as
///   parsing does), it is the only decimal of at most 15 significant digits that does (two
///   such decimals are never the same double, as 10^15 < 2^52), so it is the shortest and what
///   `{}` prints. `d` is a guess (x * 10^j rounded); a wrong guess only costs a slower path.
/// - Otherwise ryu's shortest digits, rewritten from its notation (`1e16`, `1.5e-7`) to the
///   plain one. Ryu and `{}` find the same shortest digits except when `x` lies exactly halfway
///   between the two nearest: ryu then rounds to even, `{}` up (std's Dragon4 does). Both
///   candidates reading back as `x` puts them at most an ulp apart, which takes at least 16
///   digits for a normal `x` (x / ulp >= 2^52); a subnormal's exact decimal has hundreds of
///   digits, so it is never halfway between two short ones. A 16- or 17-digit result therefore
///   goes to `{}` itself, as do NaN and the infinities.
fn write_f64(out: &mut impl Sink, x: f64) {
    if x.is_finite() {
        if x.is_sign_positive() {
            for (j, &p) in POW10.iter().enumerate() {
                let m = x * p;
                if m >= 1e15 {
                    break;
                }
                // Rounded half up; `as` truncates (no libm call, unlike `f64::round`), and i64
                // converts in one instruction each way (u64 does not, before AVX-512).
                let d = (m + 0.5) as i64;
                if d as f64 / p == x && d < 1_000_000_000_000_000 {
                    write_decimal(out, d as u64, j);
                    return;
                }
            }
        }
        let mut buf = ryu::Buffer::new();
        let s = buf.format_finite(x).as_bytes();
        if significant_digits(s) < 16 {
            write_plain(out, s);
            return;
        }
    }
    use fmt::Write;
    let _ = write!(FmtSink(out), "{x}");
}

/// `fmt` into a [`Sink`].
struct FmtSink<'a, S>(&'a mut S);

impl<S: Sink> fmt::Write for FmtSink<'_, S> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.put(s.as_bytes());
        Ok(())
    }
}

/// The significant digits of ryu's output, at least (`1200.0` counts 5).
fn significant_digits(s: &[u8]) -> usize {
    let mantissa = s.split(|&b| b == b'e').next().unwrap_or(s);
    mantissa
        .iter()
        .filter(|b| b.is_ascii_digit())
        .skip_while(|&&b| b == b'0')
        .count()
}

/// Writes `d / 10^j` (`d < 10^15`, `j < 10`) in plain notation without trailing fractional zeros.
#[inline]
fn write_decimal(out: &mut impl Sink, mut d: u64, mut j: usize) {
    while j > 0 && d.is_multiple_of(10) {
        d /= 10;
        j -= 1;
    }
    // At least one digit before the point ("0.0005").
    let digits = (d.checked_ilog10().unwrap_or(0) as usize + 1).max(j + 1);
    let len = digits + usize::from(j > 0);
    out.put_with(|buf| {
        let mut pos = len;
        for k in 0..digits {
            if k == j && j > 0 {
                pos -= 1;
                buf[pos] = b'.';
            }
            pos -= 1;
            buf[pos] = b'0' + (d % 10) as u8;
            d /= 10;
        }
        debug_assert_eq!(pos, 0);
        len
    });
}

/// Rewrites ryu's notation of a finite f64 to `{}`'s: `100.0` → `100`, `1e16` →
/// `10000000000000000`, `1.5e-7` → `0.00000015`, `-0.0` → `-0`.
fn write_plain(out: &mut impl Sink, s: &[u8]) {
    let s = match s.split_first() {
        Some((b'-', rest)) => {
            out.put(b"-");
            rest
        }
        _ => s,
    };
    let Some(e) = s.iter().position(|&b| b == b'e') else {
        out.put(s.strip_suffix(b".0").unwrap_or(s));
        return;
    };
    // `d` or `d.ddd`, then the exponent of the first digit.
    let mut digits = [0u8; 24];
    let mut n = 0;
    for &b in s[..e].iter().filter(|b| b.is_ascii_digit()) {
        digits[n] = b;
        n += 1;
    }
    let (negative, exp) = match &s[e + 1..] {
        [b'-', rest @ ..] => (true, rest),
        rest => (false, rest),
    };
    let exp = exp
        .iter()
        .fold(0isize, |acc, &b| acc * 10 + isize::from(b - b'0'));
    // Digits before the decimal point.
    let int_digits = if negative { 1 - exp } else { 1 + exp };
    let digits = &digits[..n];
    if int_digits <= 0 {
        out.put(b"0.");
        out.zeros(int_digits.unsigned_abs());
        out.put(digits);
    } else if int_digits as usize >= n {
        out.put(digits);
        out.zeros(int_digits as usize - n);
    } else {
        let (int, frac) = digits.split_at(int_digits as usize);
        out.put(int);
        out.put(b".");
        out.put(frac);
    }
}

/// [`BookView::diff`] of one side; `before(a, b)`: price `a` comes before `b` on this side.
fn diff_side(old: &[Level], new: &[Level], before: impl Fn(f64, f64) -> bool) -> Vec<Level> {
    let sorted = |side: &[Level]| side.windows(2).all(|w| before(w[0].0, w[1].0));
    if !(sorted(old) && sorted(new)) {
        return diff_side_unordered(old, new);
    }
    // A merge of the two sides: each price is in `old`, `new` or both; the removals are kept
    // aside to follow the levels of `next`.
    let mut out = Vec::new();
    let mut removed = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < old.len() && j < new.len() {
        let (o, n) = (old[i], new[j]);
        if o.0 == n.0 {
            if o.1 != n.1 {
                out.push(n);
            }
            i += 1;
            j += 1;
        } else if before(n.0, o.0) {
            out.push(n);
            j += 1;
        } else {
            removed.push((o.0, 0.0));
            i += 1;
        }
    }
    out.extend_from_slice(&new[j..]);
    out.append(&mut removed);
    out.extend(old[i..].iter().map(|&(p, _)| (p, 0.0)));
    out
}

/// [`diff_side`] for sides in any order (and duplicate or NaN prices): each level of `new`
/// looked up in `old` and each of `old` in `new`.
fn diff_side_unordered(old: &[Level], new: &[Level]) -> Vec<Level> {
    let mut out: Vec<Level> = new.iter().filter(|l| !old.contains(l)).copied().collect();
    out.extend(
        old.iter()
            .filter(|(p, _)| !new.iter().any(|(q, _)| q == p))
            .map(|&(p, _)| (p, 0.0)),
    );
    out
}

fn apply_side(
    side: &mut Vec<Level>,
    delta: &[Level],
    order: impl Fn(f64, f64) -> std::cmp::Ordering,
    depth: usize,
) {
    for &(price, size) in delta {
        side.retain(|(p, _)| *p != price);
        if size != 0.0 {
            side.push((price, size));
        }
    }
    side.sort_by(|a, b| order(a.0, b.0));
    side.truncate(depth);
}

#[cfg(test)]
mod tests;
