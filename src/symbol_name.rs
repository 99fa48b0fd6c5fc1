//! The one rule for a symbol's name (`[A-Z0-9._-]{1,32}`), used by every input that names one.
//! A leaf: `model` (and through it everything else) and `book` both use it.

/// Longest symbol the protocol allows (`[A-Z0-9._-]{1,32}`).
pub(crate) const MAX_SYMBOL_LEN: usize = 32;

/// True when `s` is a symbol the protocol allows.
pub(crate) fn is_valid_symbol(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SYMBOL_LEN
        && s.bytes().all(|b| {
            b.is_ascii_uppercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbol_rule_matches_protocol() {
        for ok in ["AAPL", "BTC-USD", "BRK.B", "X_1", &"A".repeat(32)] {
            assert!(is_valid_symbol(ok), "{ok}");
        }
        for bad in ["", "aapl", "A B", "A:B", "*", &"A".repeat(33), "ÄPFEL"] {
            assert!(!is_valid_symbol(bad), "{bad}");
        }
    }
}
