//! The source tree keeps the shape `src/lib.rs` describes, so a newcomer can follow it:
//! - no import cycle between files in `src/` (a file never imports, directly or through
//!   others, a file that imports it back);
//! - the core (`player`, `cache`, `sources`, `resources`, `db`, `settings`, `config`) never
//!   imports the edges (`discord`, `voice`, `app`, `status`, the CLI commands);
//! - no file is over 700 lines apart from its unit tests.
//!
//! Imports are read from the text: every `crate::…` and `super::…` path and every path
//! through a child module (`mod name;` then `name::…`) is an edge to the file that defines
//! the deepest module on that path. Comments and `#[cfg(test)] mod tests` are not read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

/// Every `.rs` file under `src/`, by the module path it defines.
fn modules(src: &Path) -> BTreeMap<Module, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(src, &mut files);
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(src).unwrap().with_extension("");
            let mut m: Module = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(m.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                m.pop();
            }
            (m, p)
        })
        .collect()
}

/// The file's code without its unit tests and comments.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let cut = [
        "#[cfg(test)]\nmod tests",
        "#[cfg(all(test, unix))]\nmod tests",
    ]
    .iter()
    .filter_map(|m| text.find(m))
    .min()
    .unwrap_or(text.len());
    text[..cut]
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The identifiers of a `a::b::c` path starting at `s` (stops at `{`, `*` or anything else).
fn path_at(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        let n = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
        if n == 0 {
            break;
        }
        out.push(rest[..n].to_string());
        rest = &rest[n..];
        match rest.strip_prefix("::") {
            Some(r) => rest = r,
            None => break,
        }
    }
    out
}

/// The files `module`'s file imports.
fn imports(module: &Module, path: &Path, files: &BTreeMap<Module, PathBuf>) -> BTreeSet<Module> {
    let code = code(path);
    let children: BTreeSet<String> = code
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l
                .strip_prefix("pub ")
                .or_else(|| l.strip_prefix("pub(crate) "))
                .unwrap_or(l);
            l.strip_prefix("mod ")?
                .strip_suffix(';')
                .map(str::to_string)
        })
        .collect();
    let deepest = |full: &[String]| -> Option<Module> {
        (1..=full.len())
            .rev()
            .map(|k| full[..k].to_vec())
            .find(|m| files.contains_key(m))
    };
    let mut out = BTreeSet::new();
    let bytes: Vec<char> = code.chars().collect();
    let text: String = bytes.iter().collect();
    for (i, _) in text.match_indices("::") {
        // the identifier right before this `::`, if it starts a path
        let head_start = text[..i]
            .rfind(|c: char| !is_ident(c))
            .map(|j| j + 1)
            .unwrap_or(0);
        if head_start == i || text[..head_start].ends_with("::") {
            continue;
        }
        let head = &text[head_start..i];
        let rest = path_at(&text[i + 2..]);
        let full: Option<Module> = match head {
            "crate" => Some(rest),
            "super" => {
                let mut base = module[..module.len().saturating_sub(1)].to_vec();
                let mut rest = rest.as_slice();
                while rest.first().map(String::as_str) == Some("super") {
                    base.pop();
                    rest = &rest[1..];
                }
                base.extend(rest.iter().cloned());
                Some(base)
            }
            "self" => Some(module.iter().cloned().chain(rest).collect()),
            child if children.contains(child) => Some(
                module
                    .iter()
                    .cloned()
                    .chain(std::iter::once(child.to_string()))
                    .chain(rest)
                    .collect(),
            ),
            _ => None,
        };
        if let Some(target) = full.and_then(|f| deepest(&f)) {
            if &target != module {
                out.insert(target);
            }
        }
    }
    out
}

fn name(m: &Module) -> String {
    if m.is_empty() {
        "lib".into()
    } else {
        m.join("/")
    }
}

/// Strongly connected components of more than one file (Tarjan).
fn cycles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct T<'a> {
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<Module, usize>,
        low: BTreeMap<Module, usize>,
        stack: Vec<Module>,
        on: BTreeSet<Module>,
        next: usize,
        out: Vec<Vec<Module>>,
    }
    fn visit(t: &mut T, v: &Module) {
        t.index.insert(v.clone(), t.next);
        t.low.insert(v.clone(), t.next);
        t.next += 1;
        t.stack.push(v.clone());
        t.on.insert(v.clone());
        let next: Vec<Module> = t.edges.get(v).into_iter().flatten().cloned().collect();
        for w in next {
            if !t.index.contains_key(&w) {
                visit(t, &w);
                let l = t.low[v].min(t.low[&w]);
                t.low.insert(v.clone(), l);
            } else if t.on.contains(&w) {
                let l = t.low[v].min(t.index[&w]);
                t.low.insert(v.clone(), l);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = t.stack.pop().unwrap();
                t.on.remove(&w);
                let done = &w == v;
                comp.push(w);
                if done {
                    break;
                }
            }
            if comp.len() > 1 {
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn graph() -> BTreeMap<Module, BTreeSet<Module>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = modules(&src);
    files
        .iter()
        // unit-test files (`#[cfg(test)] mod tests;`) may reach anywhere
        .filter(|(m, _)| m.last().map(String::as_str) != Some("tests"))
        .map(|(m, p)| (m.clone(), imports(m, p, &files)))
        .collect()
}

#[test]
fn no_file_in_src_imports_a_file_that_imports_it_back() {
    let edges = graph();
    assert!(
        edges.len() > 50,
        "read only {} files: is the walk broken?",
        edges.len()
    );
    let found: Vec<String> = cycles(&edges)
        .iter()
        .map(|c| {
            let inside: Vec<String> = c
                .iter()
                .flat_map(|a| {
                    edges[a]
                        .iter()
                        .filter(|b| c.contains(b))
                        .map(move |b| format!("{} -> {}", name(a), name(b)))
                })
                .collect();
            inside.join(", ")
        })
        .collect();
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}

#[test]
fn the_core_never_imports_the_edges() {
    let core = [
        "player",
        "cache",
        "sources",
        "resources",
        "db",
        "settings",
        "config",
    ];
    let edges_of_app = ["discord", "voice", "app", "status", "doctor", "invite"];
    let mut wrong = Vec::new();
    for (from, to) in graph() {
        if !core.contains(&from.first().map(String::as_str).unwrap_or("")) {
            continue;
        }
        for t in to {
            if edges_of_app.contains(&t.first().map(String::as_str).unwrap_or("")) {
                wrong.push(format!("{} -> {}", name(&from), name(&t)));
            }
        }
    }
    assert!(wrong.is_empty(), "the core imports an edge: {wrong:#?}");
}

#[test]
fn no_file_in_src_is_over_700_lines_apart_from_its_tests() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let long: Vec<String> = modules(&src)
        .into_iter()
        .filter(|(m, _)| m.last().map(String::as_str) != Some("tests"))
        .filter_map(|(_, p)| {
            let text = std::fs::read_to_string(&p).unwrap();
            let cut = text.find("#[cfg(test)]\nmod tests").unwrap_or(text.len());
            let n = text[..cut].lines().count();
            (n > 700).then(|| format!("{} ({n} lines)", p.display()))
        })
        .collect();
    assert!(long.is_empty(), "files over 700 lines: {long:#?}");
}

/// The checks above would pass on a reader that finds nothing: make sure it finds the
/// edges it must.
#[test]
fn the_reader_sees_known_imports() {
    let edges = graph();
    let m = |s: &str| -> Module { s.split('/').map(str::to_string).collect() };
    assert!(edges[&m("player/guild")].contains(&m("player/handle")));
    assert!(
        edges[&m("voice/call")].contains(&m("voice/http")),
        "super::http"
    );
    assert!(edges[&m("cache/resolver")].contains(&m("sources")));
    // a made-up cycle is found
    let mut fake = edges.clone();
    fake.get_mut(&m("player/handle"))
        .unwrap()
        .insert(m("player/guild"));
    assert!(!cycles(&fake).is_empty());
}
