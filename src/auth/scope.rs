//! A user's stored scope: the `channels` and `limits` claims every token issued for its API key
//! carries (`tickcast user add NAME --channels ... --limits ...`, changed by `tickcast user set`),
//! so exchanging a key for a token never widens what the user may do.

use serde::{Deserialize, Serialize};

use super::{ChannelPatterns, TokenLimits};

/// What the tokens of one user may do; `None` parts restrict nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// Channel patterns (the `channels` claim); `None`: every channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
    /// The `limits` claim; `None`: the server's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<TokenLimits>,
}

impl Scope {
    /// The rules a token's claims are verified by, so no scope is stored that would make its
    /// tokens invalid; the error names the pattern or limit.
    pub fn check(&self) -> Result<(), String> {
        if let Some(channels) = &self.channels {
            ChannelPatterns::parse(channels)?;
        }
        match &self.limits {
            Some(limits) => limits.check(),
            None => Ok(()),
        }
    }
}

impl TokenLimits {
    /// `subscriptions=5,ops_per_second=10` (the `limits` claim's keys, comma-separated), checked
    /// as a token's claim is: an unknown key, a value that is not a whole number, or 0 is an
    /// error naming it.
    pub fn parse_pairs(text: &str) -> Result<TokenLimits, String> {
        let mut claim = serde_json::Map::new();
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("limit {pair:?} is not `name=number`"))?;
            let n: u64 = value
                .trim()
                .parse()
                .map_err(|_| format!("limit {key}: {value:?} is not a whole number"))?;
            claim.insert(key.trim().to_owned(), n.into());
        }
        let limits: TokenLimits =
            serde_json::from_value(claim.into()).map_err(|e| format!("limits {text:?}: {e}"))?;
        limits.check()?;
        Ok(limits)
    }

    /// A count of 0 makes a token invalid; `min_throttle_ms` may be 0 (no minimum, as without it). The error names
    /// the limit.
    pub(crate) fn check(&self) -> Result<(), String> {
        let counts = [
            ("subscriptions", self.subscriptions.map(|n| n as u64)),
            ("ops_per_second", self.ops_per_second.map(u64::from)),
            ("connections", self.connections.map(|n| n as u64)),
        ];
        match counts.iter().find(|(_, n)| *n == Some(0)) {
            Some((name, _)) => Err(format!("limits.{name} is 0, which admits nothing")),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_read_from_pairs_and_bad_ones_named() {
        assert_eq!(
            TokenLimits::parse_pairs("subscriptions=5, ops_per_second=10").unwrap(),
            TokenLimits {
                subscriptions: Some(5),
                ops_per_second: Some(10),
                ..TokenLimits::default()
            }
        );
        for (bad, named) in [
            ("bogus=1", "bogus"),
            ("subscriptions", "subscriptions"),
            ("subscriptions=many", "subscriptions"),
            ("connections=0", "limits.connections is 0"),
            ("subscriptions=0", "limits.subscriptions is 0"),
            ("ops_per_second=0", "limits.ops_per_second is 0"),
            ("ops_per_second=99999999999", "ops_per_second"),
        ] {
            let err = TokenLimits::parse_pairs(bad).unwrap_err();
            assert!(err.contains(named), "{bad}: {err}");
        }
    }

    #[test]
    fn a_scope_is_checked_as_its_tokens_would_be() {
        let ok = Scope {
            channels: Some(vec!["ticks:AAPL".into(), "bars.1m:BTC-*".into()]),
            limits: Some(TokenLimits {
                subscriptions: Some(1),
                ..TokenLimits::default()
            }),
        };
        assert_eq!(ok.check(), Ok(()));
        assert_eq!(Scope::default().check(), Ok(()));
        let bad = Scope {
            channels: Some(vec!["nope:X".into()]),
            limits: None,
        };
        assert!(bad.check().unwrap_err().contains("nope:X"));
        // Stored as JSON and read back unchanged; no parts, no keys.
        let text = serde_json::to_string(&ok).unwrap();
        assert_eq!(serde_json::from_str::<Scope>(&text).unwrap(), ok);
        assert_eq!(serde_json::to_string(&Scope::default()).unwrap(), "{}");
    }
}
