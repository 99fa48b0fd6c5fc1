//! `[pipeline.indicators]`: the periods each bar-close indicator is computed with, as lists
//! (`sma = [20, 50, 200]`), and the v1 single keys (`pipeline.sma_period = 20`), which still load.
//!
//! A v1 key is a one-element list of the layer that gives it: the file's `sma_period = 50` means
//! `indicators.sma = [50]` (over the defaults' list, like any key of a later layer), and so does
//! `TICKCAST_PIPELINE__SMA_PERIOD=50`. The rewrite happens per layer, before the layers merge,
//! so a layer that gives both is checked: they must agree (`sma_period = 20` with
//! `indicators.sma = [20]`), or the config is refused naming the v1 key.

use serde::Deserialize;

use crate::config_section::ConfigError;
use crate::model::IndicatorPeriods;

/// `[pipeline.indicators]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IndicatorsConfig {
    /// SMA windows, in 1 s closes (`sma_N` fields).
    pub sma: Vec<usize>,
    /// EMA periods, in 1 s closes (`ema_N` fields).
    pub ema: Vec<usize>,
    /// RSI periods, in price changes (`rsi_N` fields).
    pub rsi: Vec<usize>,
    /// Volatility windows, in prices (the first is `volatility`, any further `volatility_N`).
    pub volatility: Vec<usize>,
}

impl IndicatorsConfig {
    pub(crate) fn periods(&self) -> IndicatorPeriods {
        IndicatorPeriods {
            sma: self.sma.clone(),
            ema: self.ema.clone(),
            rsi: self.rsi.clone(),
            volatility: self.volatility.clone(),
        }
    }
}

impl Default for IndicatorsConfig {
    fn default() -> Self {
        let p = IndicatorPeriods::default();
        Self {
            sma: p.sma,
            ema: p.ema,
            rsi: p.rsi,
            volatility: p.volatility,
        }
    }
}

/// The v1 keys under `[pipeline]`, the list each one is, and that indicator's minimum.
const LEGACY: [(&str, &str, usize); 4] = [
    ("sma_period", "sma", super::indicators::sma::MIN_PERIOD),
    ("ema_period", "ema", super::indicators::ema::MIN_PERIOD),
    ("rsi_period", "rsi", super::indicators::rsi::MIN_PERIOD),
    (
        "volatility_period",
        "volatility",
        super::indicators::volatility::MIN_PERIOD,
    ),
];

/// A v1 key's period, checked as that key (so its error names the key the operator wrote).
fn legacy_period(
    key: &str,
    indicator: &'static str,
    min: usize,
    period: i64,
) -> Result<i64, ConfigError> {
    let checked = usize::try_from(period)
        .map_err(|_| format!("must be a positive integer, got {period}"))
        .and_then(|p| {
            super::indicators::check_period(indicator, p, min).map_err(|e| e.to_string())
        });
    checked
        .map(|()| period)
        .map_err(|m| ConfigError::key(key, m))
}

/// Rewrites a file layer's v1 keys (`pipeline.sma_period = 50`) into its lists
/// (`pipeline.indicators.sma = [50]`); refuses a layer that gives both, disagreeing.
pub(crate) fn upgrade_legacy_keys(layer: &mut toml::Table) -> Result<(), ConfigError> {
    let Some(toml::Value::Table(pipeline)) = layer.get_mut("pipeline") else {
        return Ok(());
    };
    for (old, new, min) in LEGACY {
        let Some(value) = pipeline.remove(old) else {
            continue;
        };
        let key = format!("pipeline.{old}");
        let toml::Value::Integer(period) = value else {
            return Err(ConfigError::key(&key, "must be an integer"));
        };
        let period = legacy_period(&key, new, min, period)?;
        let list = toml::Value::Array(vec![toml::Value::Integer(period)]);
        let indicators = pipeline
            .entry("indicators")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(indicators) = indicators else {
            return Err(ConfigError::key("pipeline.indicators", "must be a table"));
        };
        match indicators.get(new) {
            Some(given) if *given != list => {
                return Err(ConfigError::key(
                    &key,
                    format!(
                        "{period} disagrees with pipeline.indicators.{new} = {}; give one of \
                         them (the v1 key is the one-element list [{period}])",
                        show(given)
                    ),
                ));
            }
            _ => {
                indicators.insert(new.to_owned(), list);
            }
        }
    }
    Ok(())
}

/// A list as TOML writes it (`[20, 50]`), for messages.
fn show(value: &toml::Value) -> String {
    match value {
        toml::Value::Array(items) => {
            let items: Vec<String> = items.iter().map(show).collect();
            format!("[{}]", items.join(", "))
        }
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::String(s) => format!("{s:?}"),
        other => format!("{other:?}"),
    }
}

/// The environment's v1 variables (`TICKCAST_PIPELINE__SMA_PERIOD=50`) as their lists
/// (`TICKCAST_PIPELINE__INDICATORS__SMA=[50]`); refuses both given, disagreeing.
pub(crate) fn upgrade_legacy_env(
    vars: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let name_of = |key: &str| format!("TICKCAST_PIPELINE__{}", key.to_ascii_uppercase());
    let list_name = |key: &str| {
        format!(
            "TICKCAST_PIPELINE__INDICATORS__{}",
            key.to_ascii_uppercase()
        )
    };
    let mut out = Vec::with_capacity(vars.len());
    for (name, value) in &vars {
        let Some(&(old, new, min)) = LEGACY.iter().find(|(old, ..)| name_of(old) == *name) else {
            out.push((name.clone(), value.clone()));
            continue;
        };
        let key = format!("pipeline.{old}");
        let period: i64 = value
            .trim()
            .parse()
            .map_err(|_| ConfigError::key(&key, format!("must be an integer, got {value:?}")))?;
        let period = legacy_period(&key, new, min, period)?;
        let list = format!("[{period}]");
        let target = list_name(new);
        if let Some((_, given)) = vars.iter().find(|(n, _)| *n == target) {
            let same = format!("v = {given}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                == Some(toml::Value::Array(vec![toml::Value::Integer(period)]));
            if !same {
                return Err(ConfigError::key(
                    &key,
                    format!(
                        "{period} disagrees with {target}={given}; give one of them (the v1 \
                         key is the one-element list {list})"
                    ),
                ));
            }
            continue;
        }
        out.push((target, list));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(text: &str) -> toml::Table {
        text.parse().expect("toml")
    }

    fn key_of(e: ConfigError) -> String {
        match e {
            ConfigError::Key { key, .. } => key,
            other => panic!("expected a key error, got {other}"),
        }
    }

    #[test]
    fn a_v1_key_is_a_one_element_list() {
        let mut t = layer("[pipeline]\nsma_period = 50\nvolatility_period = 30\n");
        upgrade_legacy_keys(&mut t).expect("upgrades");
        assert_eq!(
            t,
            layer("[pipeline.indicators]\nsma = [50]\nvolatility = [30]\n")
        );
    }

    #[test]
    fn both_given_must_agree() {
        let mut t = layer("[pipeline]\nsma_period = 20\n[pipeline.indicators]\nsma = [20]\n");
        upgrade_legacy_keys(&mut t).expect("agreeing keys load");
        assert_eq!(t, layer("[pipeline.indicators]\nsma = [20]\n"));
        let mut t = layer("[pipeline]\nema_period = 20\n[pipeline.indicators]\nema = [20, 50]\n");
        let err = upgrade_legacy_keys(&mut t).expect_err("disagreeing");
        assert!(err.to_string().contains("disagrees"), "{err}");
        assert_eq!(key_of(err), "pipeline.ema_period");
        let mut t = layer("[pipeline]\nrsi_period = \"14\"\n");
        assert_eq!(
            key_of(upgrade_legacy_keys(&mut t).expect_err("a string")),
            "pipeline.rsi_period"
        );
    }

    #[test]
    fn environment_v1_variables_become_lists() {
        let vars = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert_eq!(
            upgrade_legacy_env(vars(&[
                ("TICKCAST_PIPELINE__RSI_PERIOD", "9"),
                ("TICKCAST_WS__MAX_SUBSCRIPTIONS", "7"),
            ]))
            .expect("upgrades"),
            vars(&[
                ("TICKCAST_PIPELINE__INDICATORS__RSI", "[9]"),
                ("TICKCAST_WS__MAX_SUBSCRIPTIONS", "7"),
            ])
        );
        let both = vars(&[
            ("TICKCAST_PIPELINE__SMA_PERIOD", "20"),
            ("TICKCAST_PIPELINE__INDICATORS__SMA", "[20]"),
        ]);
        assert_eq!(
            upgrade_legacy_env(both).expect("agree"),
            vars(&[("TICKCAST_PIPELINE__INDICATORS__SMA", "[20]")])
        );
        let clash = vars(&[
            ("TICKCAST_PIPELINE__SMA_PERIOD", "20"),
            ("TICKCAST_PIPELINE__INDICATORS__SMA", "[20,50]"),
        ]);
        assert_eq!(
            key_of(upgrade_legacy_env(clash).expect_err("disagree")),
            "pipeline.sma_period"
        );
        for (name, value) in [
            ("TICKCAST_PIPELINE__SMA_PERIOD", "x"),
            ("TICKCAST_PIPELINE__RSI_PERIOD", "0"),
            ("TICKCAST_PIPELINE__VOLATILITY_PERIOD", "2"),
            ("TICKCAST_PIPELINE__EMA_PERIOD", "-3"),
            ("TICKCAST_PIPELINE__SMA_PERIOD", "10001"),
        ] {
            let key = format!(
                "pipeline.{}",
                name["TICKCAST_PIPELINE__".len()..].to_lowercase()
            );
            assert_eq!(
                key_of(upgrade_legacy_env(vars(&[(name, value)])).expect_err(value)),
                key
            );
        }
    }
}
