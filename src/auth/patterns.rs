//! The `channels` claim: the channel patterns a token's holder may subscribe. A pattern is
//! `<kind>:<symbol>` where kind is a channel kind or `*` (every kind), and symbol is a symbol,
//! `*` (every symbol) or a prefix ending in `*` (`BTC-*`).

use crate::model::{Kind, is_valid_symbol};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    /// `None`: every kind.
    kind: Option<Kind>,
    symbol: SymbolPattern,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SymbolPattern {
    Exact(String),
    /// Every symbol starting with this (empty: every symbol).
    Prefix(String),
}

/// The channel patterns of one token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelPatterns(Vec<Pattern>);

impl ChannelPatterns {
    /// Parses the claim; the error names the pattern that is not one.
    pub fn parse(patterns: &[String]) -> Result<Self, String> {
        patterns
            .iter()
            .map(|p| parse_one(p))
            .collect::<Result<_, _>>()
            .map(ChannelPatterns)
    }

    /// May `kind:symbol` be subscribed? `symbol` is `None` for the kind's wildcard (`ticks:*`),
    /// which only a pattern covering every symbol of that kind allows.
    pub fn allows(&self, kind: Kind, symbol: Option<&str>) -> bool {
        self.0.iter().any(|p| {
            p.kind.is_none_or(|k| k == kind)
                && match (&p.symbol, symbol) {
                    (SymbolPattern::Prefix(pre), None) => pre.is_empty(),
                    (SymbolPattern::Exact(_), None) => false,
                    (SymbolPattern::Prefix(pre), Some(s)) => s.starts_with(pre.as_str()),
                    (SymbolPattern::Exact(e), Some(s)) => e == s,
                }
        })
    }
}

fn parse_one(p: &str) -> Result<Pattern, String> {
    let bad = || format!("channel pattern {p:?} is not `<kind|*>:<SYMBOL|PREFIX*|*>`");
    let (kind, symbol) = p.split_once(':').ok_or_else(bad)?;
    let kind = match kind {
        "*" => None,
        k => Some(Kind::parse(k).ok_or_else(bad)?),
    };
    let symbol = match symbol.strip_suffix('*') {
        Some(prefix) if prefix.is_empty() || is_valid_symbol(prefix) => {
            SymbolPattern::Prefix(prefix.to_owned())
        }
        Some(_) => return Err(bad()),
        None if is_valid_symbol(symbol) => SymbolPattern::Exact(symbol.to_owned()),
        None => return Err(bad()),
    };
    Ok(Pattern { kind, symbol })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BarInterval;

    fn patterns(p: &[&str]) -> ChannelPatterns {
        ChannelPatterns::parse(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn prefixes_exact_symbols_and_wildcards() {
        let p = patterns(&["ticks:BTC-*", "bars.1m:AAPL", "indicators:*"]);
        assert!(p.allows(Kind::Ticks, Some("BTC-USD")));
        assert!(!p.allows(Kind::Ticks, Some("AAPL")));
        // A wildcard subscribe covers every symbol: a prefix pattern does not allow it.
        assert!(!p.allows(Kind::Ticks, None));
        assert!(p.allows(Kind::Bars(BarInterval::M1), Some("AAPL")));
        assert!(!p.allows(Kind::Bars(BarInterval::S1), Some("AAPL")));
        assert!(!p.allows(Kind::Bars(BarInterval::M1), Some("AAPLX")));
        assert!(p.allows(Kind::Indicators, None));
        assert!(p.allows(Kind::Indicators, Some("ANY")));
        let all = patterns(&["*:*"]);
        assert!(all.allows(Kind::Bars(BarInterval::S1), None));
        assert!(!patterns(&[]).allows(Kind::Ticks, Some("AAPL")));
    }

    #[test]
    fn malformed_patterns_are_named() {
        for bad in [
            "ticks",
            "nope:AAPL",
            "ticks:aapl",
            "ticks:A*B",
            "ticks:",
            ":*",
        ] {
            let err = ChannelPatterns::parse(&[bad.to_string()]).unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
    }
}
