//! The module graph has no cycle (ARCHITECTURE.md, "Module dependencies"): read from the
//! source, so the claim stays true. Every file under `src/` is a module (`a/b.rs` and
//! `a/b/mod.rs` are `a::b`); every `crate::` and `super::` path in it (in a `use` or inline) is
//! an arrow to the deepest module that path names. Arrows are compared where they part: an
//! arrow from `a::x::..` to `a::y::..` is the arrow `x -> y` among the children of `a` (the
//! top-level modules are the children of the crate). A module using its parent's items, or its
//! own children's, is no arrow between siblings. Each parent's children must form no cycle.
//! Test code (`#[cfg(test)]` items, and the modules they declare) is left out: tests may
//! reach across.
//!
//! Known blind spot: an item re-exported by a parent (`use super::Hub` for `super::hub::Hub`)
//! is an arrow to the parent, so a sibling cycle hidden behind re-exports is not seen.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`["rooms", "hub"]`) → the module paths its text names.
type Imports = BTreeMap<Vec<String>, BTreeSet<Vec<String>>>;

/// `src/a/b.rs` and `src/a/b/mod.rs` → `["a", "b"]`; `src/lib.rs` → `[]`; `None` for the
/// binary's root, which is not part of the library's graph.
fn module_of(src: &Path, file: &Path) -> Option<Vec<String>> {
    let rel = file.strip_prefix(src).ok()?;
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop()?;
    match last.as_str() {
        "lib.rs" if parts.is_empty() => {}
        "main.rs" if parts.is_empty() => return None,
        "mod.rs" => {}
        name => parts.push(name.strip_suffix(".rs")?.to_owned()),
    }
    Some(parts)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("src/ is readable")
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of `text` without comments and string literals, whose words name no module.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut prev = ' ';
    while let Some(c) = chars.next() {
        let after_word = prev.is_alphanumeric() || prev == '_';
        prev = c;
        match c {
            // A raw string, `r"..."` or `r#"..."#`: it ends at `"` and as many `#`.
            'r' if !after_word && matches!(chars.peek(), Some('#' | '"')) => {
                let mut hashes = 0;
                while chars.peek() == Some(&'#') {
                    chars.next();
                    hashes += 1;
                }
                if chars.next() != Some('"') {
                    out.push('r');
                    continue;
                }
                let mut closing = None;
                for c in chars.by_ref() {
                    match (c, closing) {
                        ('"', _) => closing = Some(0),
                        ('#', Some(n)) => closing = Some(n + 1),
                        _ => closing = None,
                    }
                    if closing == Some(hashes) {
                        break;
                    }
                }
                out.push_str("\"\"");
            }
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
            }
            '"' => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    match c {
                        '\\' if !escaped => escaped = true,
                        '"' if !escaped => break,
                        _ => escaped = false,
                    }
                }
                out.push_str("\"\"");
            }
            // A char literal (`'"'`) would open a string above; lifetimes pass through.
            '\'' => {
                let rest: String = chars.clone().take(3).collect();
                let mut lit = rest.chars();
                match (lit.next(), lit.next(), lit.next()) {
                    (Some('\\'), _, _) => {
                        for c in chars.by_ref() {
                            if c == '\'' {
                                break;
                            }
                        }
                    }
                    (Some(_), Some('\''), _) => {
                        chars.next();
                        chars.next();
                    }
                    _ => out.push(c),
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// `code` without its `#[cfg(test)]` items, and the names of the test-only modules it declares
/// in files of their own (`#[cfg(test)] mod tests;`).
fn without_tests(code: &str) -> (String, Vec<String>) {
    const GATE: &str = "#[cfg(test)]";
    let (mut out, mut test_mods) = (String::with_capacity(code.len()), Vec::new());
    let mut rest = code;
    while let Some(at) = rest.find(GATE) {
        out.push_str(&rest[..at]);
        let item = &rest[at + GATE.len()..];
        // The item ends at a `;` outside braces, or at the brace that closes its body.
        let mut depth = 0usize;
        let mut end = item.len();
        for (i, c) in item.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        let words: Vec<&str> = item[..end]
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|w| !w.is_empty())
            .collect();
        if let [.., "mod", name] = words.as_slice() {
            test_mods.push((*name).to_owned());
        }
        rest = &item[end..];
    }
    out.push_str(rest);
    (out, test_mods)
}

/// Expands a `use` tree (`crate::{a::B, c::{d, e}}`, without `use` and `;`) into its paths.
fn expand_use(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = tree.find('{') else {
        return vec![tree];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.len().saturating_sub(1)];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| {
            expand_use(p)
                .into_iter()
                .map(move |q| format!("{prefix}{q}"))
        })
        .collect()
}

/// Every path in `code` that starts at `crate::` or `super::`: the trees of its `use`
/// statements, expanded, and the inline ones.
fn paths_in(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let before = rest[..at].chars().last();
        let after = &rest[at + 4..];
        rest = after;
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let Some(end) = after.find(';') else { break };
        let tree = after[..end].trim();
        if tree.starts_with("crate::") || tree.starts_with("super::") || tree.starts_with('{') {
            paths.extend(expand_use(tree));
        }
    }
    // Inline paths (`crate::store::retention::run(..)`), and the use trees again: harmless.
    let bytes = code.as_bytes();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            // `super::super::x` is one path, not also `super::x`.
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || b"_:".contains(&bytes[at - 1])) {
                continue;
            }
            let end = code[at..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |e| at + e);
            paths.push(code[at..end].trim_end_matches(':').to_owned());
        }
    }
    paths
}

/// The deepest module of `modules` that `path` (written in module `from`) names.
fn resolve(path: &str, from: &[String], modules: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    let mut segments = path.split("::").filter(|s| !s.is_empty()).peekable();
    let mut at: Vec<String> = match segments.next()? {
        "crate" => Vec::new(),
        "super" => {
            // `super` of `a/b.rs` and of `a/b/mod.rs` (both module `a::b`) is `a`; inline
            // modules are test code, left out before paths are read.
            let mut m = from.to_vec();
            m.pop();
            while segments.peek() == Some(&"super") {
                segments.next();
                m.pop();
            }
            m
        }
        _ => return None,
    };
    for s in segments {
        let mut next = at.clone();
        next.push(s.to_owned());
        if !modules.contains(&next) {
            break;
        }
        at = next;
    }
    Some(at)
}

fn imports(src: &Path) -> Imports {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let located: Vec<(Vec<String>, PathBuf)> = files
        .into_iter()
        .filter_map(|f| Some((module_of(src, &f)?, f)))
        .collect();
    let modules: BTreeSet<Vec<String>> = located.iter().map(|(m, _)| m.clone()).collect();
    let mut graph = Imports::new();
    let mut test_only: BTreeSet<Vec<String>> = BTreeSet::new();
    for (module, file) in &located {
        let text = std::fs::read_to_string(file).expect("a readable source file");
        let (code, test_mods) = without_tests(&code_only(&text));
        test_only.extend(test_mods.into_iter().map(|name| {
            let mut m = module.clone();
            m.push(name);
            m
        }));
        let targets = graph.entry(module.clone()).or_default();
        for path in paths_in(&code) {
            if let Some(to) = resolve(&path, module, &modules) {
                targets.insert(to);
            }
        }
    }
    // Test-only modules, and what they declare, may reach across: they are no part of the graph.
    graph.retain(|m, _| !test_only.iter().any(|t| m.starts_with(t)));
    graph
}

/// The arrows among each parent's children: parent → (child → children it points at).
fn sibling_arrows(graph: &Imports) -> BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> {
    let mut levels: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (from, targets) in graph {
        for to in targets {
            let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
            // An ancestor or a descendant: no arrow between siblings.
            if common == from.len() || common == to.len() {
                continue;
            }
            levels
                .entry(from[..common].to_vec())
                .or_default()
                .entry(from[common].clone())
                .or_default()
                .insert(to[common].clone());
        }
    }
    levels
}

/// A cycle among `arrows`, as the names along it (first repeated last), if there is one.
fn find_cycle(arrows: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        arrows: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|n| n == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in arrows.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, arrows, done, path) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    arrows
        .keys()
        .find_map(|n| visit(n, arrows, &mut done, &mut Vec::new()))
}

/// Every cycle found, one per parent, written `parent: a -> b -> a`.
fn cycles(graph: &Imports) -> Vec<String> {
    sibling_arrows(graph)
        .iter()
        .filter_map(|(parent, arrows)| {
            let cycle = find_cycle(arrows)?;
            let parent = if parent.is_empty() {
                "crate".to_owned()
            } else {
                format!("crate::{}", parent.join("::"))
            };
            Some(format!("{parent}: {}", cycle.join(" -> ")))
        })
        .collect()
}

#[test]
fn the_module_graph_has_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = imports(&src);
    assert!(graph.len() > 100, "read {} modules", graph.len());
    // The graph is really read: arrows the code map names are there.
    let levels = sibling_arrows(&graph);
    let top = &levels[&Vec::new()];
    assert!(top["ws"].contains("rooms"), "{top:?}");
    assert!(top["store"].contains("money") && top["portfolio"].contains("money"));
    let found = cycles(&graph);
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}

/// Sources with the cycles this check must catch, as they once stood in the code.
#[test]
fn the_cycle_check_catches_the_old_cycles() {
    let modules = ["model", "book", "rooms", "rooms::hub", "rooms::room"];
    let modules: BTreeSet<Vec<String>> = modules
        .iter()
        .map(|m| m.split("::").map(str::to_owned).collect())
        .chain([Vec::new()])
        .collect();
    let sources = [
        // model <-> book: events imported the book's views, the book imported the symbol rule.
        ("model", "use crate::book::{PublishedView, TopOfBook};"),
        ("book", "use crate::model::{is_valid_symbol, Wire};"),
        // rooms/hub <-> rooms/room: ConnId and Subscriber lived in hub.rs.
        ("rooms::hub", "use super::room::Room;"),
        (
            "rooms::room",
            "use super::{hub::{ConnId, Subscriber}, Target};",
        ),
        // Comments, strings and test code name no module.
        (
            "rooms",
            "// use crate::model::x;\nlet s = r#\"crate::book\"#;\n\
             #[cfg(test)]\nmod tests { use crate::model::y; }",
        ),
    ];
    let mut graph = Imports::new();
    for (module, text) in sources {
        let from: Vec<String> = module.split("::").map(str::to_owned).collect();
        let targets = graph.entry(from.clone()).or_default();
        for path in paths_in(&without_tests(&code_only(text)).0) {
            targets.extend(resolve(&path, &from, &modules));
        }
    }
    assert_eq!(
        cycles(&graph),
        [
            "crate: book -> model -> book",
            "crate::rooms: hub -> room -> hub"
        ]
    );
    assert!(graph[&vec!["rooms".to_owned()]].is_empty());
}

#[test]
fn use_trees_expand() {
    assert_eq!(
        expand_use("crate::{a::B, c::{d, e::F}}"),
        ["crate::a::B", "crate::c::d", "crate::c::e::F"]
    );
    assert_eq!(expand_use("super::x"), ["super::x"]);
}
