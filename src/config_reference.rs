//! The configuration reference, docs/CONFIG.md, generated from `config/default.toml`: every key
//! with its type, default, meaning (the comment above it) and environment variable.
//!
//! `tickcast config-reference > docs/CONFIG.md` writes it; a unit test fails when the file is
//! stale or a key has no meaning, so the reference cannot drift from the defaults it describes.

use std::fmt::Write as _;

use crate::config::{DEFAULT_TOML, ENV_PREFIX};

/// The command that regenerates the reference (printed by the staleness test).
pub const REGENERATE: &str = "cargo run --quiet -- config-reference > docs/CONFIG.md";

/// One documented key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDoc {
    /// Dotted path: `ws.max_connections`.
    pub path: String,
    /// `integer`, `float`, `boolean`, `string`, `array`, `table`.
    pub kind: &'static str,
    /// The default as written in the file; `None` for a key that is unset by default (written
    /// there as a comment, `# key = example`).
    pub default: Option<String>,
    /// The comment above the key (or above its group: keys on consecutive lines share one).
    pub meaning: String,
}

impl KeyDoc {
    /// `TICKCAST_WS__MAX_CONNECTIONS`.
    pub fn env_var(&self) -> String {
        format!(
            "{ENV_PREFIX}{}",
            self.path.replace('.', "__").to_ascii_uppercase()
        )
    }
}

/// A key the defaults file could not describe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("config/default.toml line {line}: key `{path}` has no comment saying what it means")]
    NoMeaning { path: String, line: usize },
    #[error("config/default.toml line {line}: cannot read `{text}`")]
    Unreadable { line: usize, text: String },
}

/// Every key of `text` (a defaults file in the style of `config/default.toml`), in file order.
pub fn keys(text: &str) -> Result<Vec<KeyDoc>, ReferenceError> {
    let mut section = String::new();
    let mut comment: Vec<String> = Vec::new();
    // The meaning of the key on the line before, for a group of keys under one comment.
    let mut group: Option<String> = None;
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end();
        if line.is_empty() {
            comment.clear();
            group = None;
        } else if let Some(header) = line.strip_prefix('[') {
            section = header.trim_matches(|c| c == '[' || c == ']').to_owned();
            comment.clear();
            group = None;
        } else if let Some(c) = line.strip_prefix('#') {
            match commented_key(c) {
                Some((key, value)) => {
                    let doc = key_doc(&section, key, None, value, &mut comment, &group, i)?;
                    group = Some(doc.meaning.clone());
                    out.push(doc);
                }
                None => comment.push(c.strip_prefix(' ').unwrap_or(c).to_owned()),
            }
        } else {
            let Some((key, value)) = line.split_once('=') else {
                return Err(ReferenceError::Unreadable {
                    line: i + 1,
                    text: line.to_owned(),
                });
            };
            let (key, value) = (key.trim(), value.trim());
            let doc = key_doc(&section, key, Some(value), value, &mut comment, &group, i)?;
            group = Some(doc.meaning.clone());
            out.push(doc);
        }
    }
    Ok(out)
}

/// `# key = value` with a value TOML reads: a key that is unset by default, shown as an
/// example. Prose that happens to start with a word and `=` is not one.
fn commented_key(comment: &str) -> Option<(&str, &str)> {
    let body = comment.strip_prefix(' ')?;
    let (key, value) = body.split_once(" = ")?;
    let is_key = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    (is_key && value_kind(value).is_some()).then_some((key, value))
}

fn key_doc(
    section: &str,
    key: &str,
    default: Option<&str>,
    value: &str,
    comment: &mut Vec<String>,
    group: &Option<String>,
    index: usize,
) -> Result<KeyDoc, ReferenceError> {
    let path = if section.is_empty() {
        key.to_owned()
    } else {
        format!("{section}.{key}")
    };
    let meaning = if comment.is_empty() {
        group.clone().ok_or(ReferenceError::NoMeaning {
            path: path.clone(),
            line: index + 1,
        })?
    } else {
        comment.join(" ")
    };
    comment.clear();
    let kind = value_kind(value).ok_or_else(|| ReferenceError::Unreadable {
        line: index + 1,
        text: value.to_owned(),
    })?;
    Ok(KeyDoc {
        path,
        kind,
        default: default.map(str::to_owned),
        meaning,
    })
}

fn value_kind(value: &str) -> Option<&'static str> {
    let table = format!("v = {value}").parse::<toml::Table>().ok()?;
    Some(match table.get("v")? {
        toml::Value::String(_) => "string",
        toml::Value::Integer(_) => "integer",
        toml::Value::Float(_) => "float",
        toml::Value::Boolean(_) => "boolean",
        toml::Value::Array(_) => "array",
        toml::Value::Table(_) => "table",
        toml::Value::Datetime(_) => "datetime",
    })
}

/// docs/CONFIG.md for the embedded defaults.
pub fn render() -> Result<String, ReferenceError> {
    render_from(DEFAULT_TOML)
}

fn render_from(text: &str) -> Result<String, ReferenceError> {
    let keys = keys(text)?;
    let mut out = String::new();
    out.push_str(
        "# Configuration reference\n\n\
         <!-- Generated from config/default.toml by `tickcast config-reference`; do not edit. -->\n\
         <!-- Regenerate: ",
    );
    let _ = writeln!(out, "{REGENERATE} -->\n");
    out.push_str(
        "Every key tickcast reads, by section. Layers, later wins: the defaults below (compiled \
         in), the file given to `--config` (the Debian package's unit passes \
         `/etc/tickcast/tickcast.toml`), then environment variables: `TICKCAST_` and the key's \
         path in capitals with `__` between levels, and `DATABASE_URL` for `database.url`. An \
         environment value is read as TOML when it parses as TOML (`42`, `true`, `[\"A\",\"B\"]`); \
         a key whose default is a string always takes it as a string. An unknown key or a bad \
         value stops start-up with an error naming the key (exit code 64); `tickcast \
         check-config --config FILE` checks a file without starting. Durations are integers with \
         a `_ms`, `_us` or `_s` suffix.\n",
    );
    let mut section: Option<&str> = None;
    for k in &keys {
        let this = k.path.rsplit_once('.').map_or("", |(s, _)| s);
        if section != Some(this) {
            section = Some(this);
            let _ = write!(
                out,
                "\n## `[{this}]`\n\n| key | type | default | environment variable | meaning |\n\
                 | --- | --- | --- | --- | --- |\n"
            );
        }
        let default = match &k.default {
            Some(d) => format!("`{}`", cell(d)),
            None => "unset".to_owned(),
        };
        let mut env = format!("`{}`", k.env_var());
        if k.path == "database.url" {
            env.push_str(", `DATABASE_URL`");
        }
        let _ = writeln!(
            out,
            "| `{}` | {} | {default} | {env} | {} |",
            k.path,
            k.kind,
            cell(&k.meaning)
        );
    }
    Ok(out)
}

/// Text safe inside a Markdown table cell (`|` would end the cell, `<token>` read as HTML).
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('<', "&lt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFERENCE: &str = include_str!("../docs/CONFIG.md");

    #[test]
    fn docs_config_md_is_current() {
        let fresh = render().unwrap_or_else(|e| panic!("{e}"));
        assert!(
            fresh == REFERENCE,
            "docs/CONFIG.md is stale (config/default.toml changed); regenerate it with\n    {REGENERATE}"
        );
    }

    /// Every key the server reads has a row, those set in the file and those it only shows as
    /// examples (`# jwt_issuer = ...`).
    #[test]
    fn every_default_key_has_an_entry() {
        let documented: Vec<String> = keys(DEFAULT_TOML)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|k| k.path)
            .collect();
        let table: toml::Table = DEFAULT_TOML.parse().expect("defaults parse");
        let mut missing = Vec::new();
        walk(&table, "", &mut |path| {
            if !documented.iter().any(|d| d == path) {
                missing.push(path.to_owned());
            }
        });
        assert!(missing.is_empty(), "keys without an entry: {missing:?}");
        for key in [
            "auth.jwt_hs256_secret",
            "auth.jwt_public_key_file",
            "auth.jwt_issuer",
            "auth.jwt_audience",
        ] {
            assert!(documented.iter().any(|d| d == key), "{key}");
            assert!(REFERENCE.contains(&format!("| `{key}` |")), "{key}");
        }
    }

    fn walk(table: &toml::Table, prefix: &str, f: &mut impl FnMut(&str)) {
        for (k, v) in table {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(t) => walk(t, &path, f),
                _ => f(&path),
            }
        }
    }

    #[test]
    fn a_key_without_a_comment_is_an_error_naming_it() {
        let err = keys("[a]\n# one\nx = 1\n\ny = 2\n").unwrap_err();
        assert_eq!(
            err,
            ReferenceError::NoMeaning {
                path: "a.y".into(),
                line: 5
            }
        );
        assert!(err.to_string().contains("a.y"), "{err}");
    }

    #[test]
    fn keys_read_type_default_group_and_examples() {
        let text = "# header\n\n[s.t]\n# Two keys,\n# one comment.\nlo = 1\nhi = 2.5\n\
                    # Prose: empty = no limit.\nname = \"x|y\"\n# Unset.\n# secret = \"...\"\n";
        let keys = keys(text).unwrap();
        let got: Vec<_> = keys
            .iter()
            .map(|k| {
                (
                    k.path.as_str(),
                    k.kind,
                    k.default.as_deref(),
                    k.meaning.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("s.t.lo", "integer", Some("1"), "Two keys, one comment."),
                ("s.t.hi", "float", Some("2.5"), "Two keys, one comment."),
                (
                    "s.t.name",
                    "string",
                    Some("\"x|y\""),
                    "Prose: empty = no limit."
                ),
                ("s.t.secret", "string", None, "Unset."),
            ]
        );
        assert_eq!(keys[0].env_var(), "TICKCAST_S__T__LO");
        let md = render_from(text).unwrap();
        assert!(md.contains("| `s.t.name` | string | `\"x\\|y\"` |"), "{md}");
        assert!(
            render_from("[a]\n# Bearer <token>.\nk = 1\n")
                .unwrap()
                .contains("Bearer &lt;token>.")
        );
        assert!(md.contains("| `s.t.secret` | string | unset | `TICKCAST_S__T__SECRET` |"));
    }

    #[test]
    fn an_unreadable_line_is_an_error() {
        let err = keys("[a]\n# c\nnot a key\n").unwrap_err();
        assert!(
            matches!(err, ReferenceError::Unreadable { line: 3, .. }),
            "{err}"
        );
    }
}
