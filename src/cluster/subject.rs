//! Channel ↔ NATS subject: `ticks:AAPL` is `<prefix>.ticks.AAPL`.
//!
//! A subject token cannot hold `.`, which symbols may (`BRK.B`) and kinds do (`bars.1s`): kinds
//! use `_` (`bars_1s`) and a symbol's dots become `~` (`BRK~B`), a character no symbol has, so
//! the mapping is one-to-one.

use crate::model::Kind;

pub(crate) fn kind_token(kind: Kind) -> &'static str {
    match kind {
        Kind::Ticks => "ticks",
        Kind::Bars(iv) => iv.subject_token(),
        Kind::Indicators => "indicators",
        Kind::Book => "book",
        Kind::Ticker => "ticker",
        Kind::Bbo => "bbo",
        Kind::Predictions => "predictions",
        // Never published: a user's portfolio stays on the node that made it.
        Kind::Portfolio => "portfolio",
    }
}

fn kind_of_token(token: &str) -> Option<Kind> {
    Kind::MARKET.into_iter().find(|k| kind_token(*k) == token)
}

/// The subject of one channel.
pub(crate) fn subject(prefix: &str, kind: Kind, symbol: &str) -> String {
    let mut s = String::with_capacity(prefix.len() + symbol.len() + 16);
    s.push_str(prefix);
    s.push('.');
    s.push_str(kind_token(kind));
    s.push('.');
    s.extend(symbol.chars().map(|c| if c == '.' { '~' } else { c }));
    s
}

/// Every subject of the stream.
pub(crate) fn all(prefix: &str) -> String {
    format!("{prefix}.>")
}

/// The subject of new leaders' fences (`takeover.rs`): no channel's, since no kind is one token.
pub(crate) fn fence(prefix: &str) -> String {
    format!("{prefix}.fence")
}

/// The channel of a subject under `prefix`, or `None` for anything else.
pub(crate) fn parse(prefix: &str, subject: &str) -> Option<(Kind, String)> {
    let rest = subject.strip_prefix(prefix)?.strip_prefix('.')?;
    let (kind, symbol) = rest.split_once('.')?;
    if symbol.is_empty() || symbol.contains('.') {
        return None;
    }
    Some((kind_of_token(kind)?, symbol.replace('~', ".")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_round_trip_and_foreign_ones_are_refused() {
        for kind in Kind::MARKET {
            for symbol in ["AAPL", "BTC-USD", "BRK.B", "A_1.2.3"] {
                let s = subject("tc.prod", kind, symbol);
                assert_eq!(s.matches('.').count(), 3, "{s}");
                assert_eq!(parse("tc.prod", &s), Some((kind, symbol.to_string())));
            }
        }
        assert_eq!(
            subject(
                "tickcast",
                Kind::Bars(crate::model::BarInterval::S1),
                "BRK.B"
            ),
            "tickcast.bars_1s.BRK~B"
        );
        for bad in [
            "other.ticks.AAPL",
            "tc.prod.ticks",
            "tc.prod.ticks.",
            "tc.prod.quotes.AAPL",
            "tc.prod.ticks.A.B",
            "tc.prodx.ticks.AAPL",
            &fence("tc.prod"),
        ] {
            assert_eq!(parse("tc.prod", bad), None, "{bad}");
        }
    }
}
