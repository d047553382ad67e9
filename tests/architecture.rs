//! The "nevers" of shared/DESIGN.md and ARCHITECTURE.md's "must not" column that a reading
//! of the source can judge, checked on every test run. Each rule has a name and its reason.
//!
//! How the source is read: every `src/**/*.rs` file gets its module path from where it
//! lies (`src/pod/lifecycle.rs` is `pod::lifecycle`, `src/pleg/mod.rs` is `pleg`), so a
//! rule written against a module path holds for `pleg.rs` and for `pleg/` alike. Comments,
//! string and char literals are dropped; items under `#[cfg(test)]` (inline, or files
//! declared by `#[cfg(test)] mod x;`) are not product code and are left out. What remains
//! is judged by the paths it names: the trees of `use` items, expanded, and every other
//! `a::b::c` path. `crate::` and `super::` are resolved to module paths; `self::` is
//! dropped.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------------
// Reading the source

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    /// `::`
    PathSep,
    Punct(char),
}

/// Tokens of `src`, without comments and literals (a literal becomes one `Punct('"')`).
fn tokens(src: &str) -> Vec<Tok> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == b'"' {
            i = skip_string(b, i + 1);
            out.push(Tok::Punct('"'));
        } else if (c == b'r' || c == b'b')
            && raw_string_start(b, i).is_some()
            && !prev_is_ident(b, i)
        {
            let (hashes, body) = raw_string_start(b, i).unwrap_or((0, i));
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            i = body;
            while i < b.len() && !b[i..].starts_with(&close) {
                i += 1;
            }
            i += close.len();
            out.push(Tok::Punct('"'));
        } else if c == b'b' && b.get(i + 1) == Some(&b'"') && !prev_is_ident(b, i) {
            i = skip_string(b, i + 2);
            out.push(Tok::Punct('"'));
        } else if c == b'\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if b.get(i + 1) == Some(&b'\\') {
                i += 2;
                while i < b.len() && b[i] != b'\'' {
                    i += 1;
                }
                i += 1;
            } else if b.get(i + 2) == Some(&b'\'') {
                i += 3;
            } else if let Some(len) = std::str::from_utf8(&b[i + 1..])
                .ok()
                .and_then(|s| s.chars().next())
                .map(char::len_utf8)
                .filter(|l| b.get(i + 1 + l) == Some(&b'\''))
            {
                i += len + 2;
            } else {
                i += 1;
                while i < b.len() && is_ident_byte(b[i]) {
                    i += 1;
                }
            }
        } else if is_ident_start(c) {
            let start = i;
            while i < b.len() && is_ident_byte(b[i]) {
                i += 1;
            }
            out.push(Tok::Ident(src[start..i].to_owned()));
        } else if c == b':' && b.get(i + 1) == Some(&b':') {
            out.push(Tok::PathSep);
            i += 2;
        } else if c.is_ascii_whitespace() || c.is_ascii_digit() {
            i += 1;
            while c.is_ascii_digit() && i < b.len() && is_ident_byte(b[i]) {
                i += 1;
            }
        } else {
            out.push(Tok::Punct(char::from(c)));
            i += 1;
        }
    }
    out
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

fn prev_is_ident(b: &[u8], i: usize) -> bool {
    i > 0 && is_ident_byte(b[i - 1])
}

/// `r"`, `r#"`, `br"`, `br#"`: (number of #, index of the body).
fn raw_string_start(b: &[u8], i: usize) -> Option<(usize, usize)> {
    let mut j = i;
    if b.get(j) == Some(&b'b') {
        j += 1;
    }
    if b.get(j) != Some(&b'r') {
        return None;
    }
    j += 1;
    let hashes = b[j..].iter().take_while(|c| **c == b'#').count();
    (b.get(j + hashes) == Some(&b'"')).then_some((hashes, j + hashes + 1))
}

fn skip_string(b: &[u8], mut i: usize) -> usize {
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// The tokens without `#[cfg(test)]` items; the names of `#[cfg(test)] mod x;` files.
fn strip_cfg_test(toks: &[Tok]) -> (Vec<Tok>, Vec<String>) {
    let mut out = Vec::new();
    let mut test_mods = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if let Some(after) = cfg_test_attribute(toks, i) {
            let mut j = after;
            // Further attributes on the same item.
            while toks.get(j) == Some(&Tok::Punct('#')) {
                j = skip_group(toks, j + 1);
            }
            // The item: to a `;` outside brackets, or to the end of its first `{}` block.
            let item_start = j;
            let mut depth = 0i32;
            while j < toks.len() {
                match &toks[j] {
                    Tok::Punct('(' | '[') => depth += 1,
                    Tok::Punct(')' | ']') => depth -= 1,
                    Tok::Punct(';') if depth == 0 => {
                        j += 1;
                        break;
                    }
                    Tok::Punct('{') if depth == 0 => {
                        j = skip_group(toks, j);
                        break;
                    }
                    _ => {}
                }
                j += 1;
            }
            let item = &toks[item_start..j.min(toks.len())];
            if let [.., Tok::Ident(m), Tok::Ident(name), Tok::Punct(';')] = item
                && m == "mod"
            {
                test_mods.push(name.clone());
            }
            i = j;
        } else {
            out.push(toks[i].clone());
            i += 1;
        }
    }
    (out, test_mods)
}

/// If `toks[i..]` is `#[cfg(test)]`, the index after it.
fn cfg_test_attribute(toks: &[Tok], i: usize) -> Option<usize> {
    let want = [
        Tok::Punct('#'),
        Tok::Punct('['),
        Tok::Ident("cfg".into()),
        Tok::Punct('('),
        Tok::Ident("test".into()),
        Tok::Punct(')'),
        Tok::Punct(']'),
    ];
    toks.get(i..i + want.len())
        .filter(|s| *s == want)
        .map(|_| i + want.len())
}

/// From an opening bracket at `i` (or the token before it), past its closing one.
fn skip_group(toks: &[Tok], i: usize) -> usize {
    let mut depth = 0i32;
    let mut j = i;
    while j < toks.len() {
        match toks[j] {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
        j += 1;
    }
    j
}

/// What a module names: `use` trees expanded (each with the name it binds), and other
/// `a::b` paths. Single identifiers outside `use` are not paths (locals, fields, keywords).
#[derive(Default)]
struct Named {
    uses: Vec<(Vec<String>, Option<String>)>,
    paths: Vec<Vec<String>>,
}

fn named(toks: &[Tok]) -> Named {
    let mut out = Named::default();
    let mut i = 0;
    while i < toks.len() {
        if toks[i] == Tok::Ident("use".into()) {
            i = use_tree(toks, i + 1, &[], &mut out.uses);
            continue;
        }
        if let Tok::Ident(first) = &toks[i] {
            let mut path = vec![first.clone()];
            let mut j = i + 1;
            while toks.get(j) == Some(&Tok::PathSep) {
                match toks.get(j + 1) {
                    Some(Tok::Ident(s)) => {
                        path.push(s.clone());
                        j += 2;
                    }
                    _ => break,
                }
            }
            if path.len() > 1 {
                out.paths.push(path);
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// Parses one use tree at `i` under `prefix`; returns the index after it. Each leaf is
/// pushed with the name it binds (`None` for a glob).
fn use_tree(
    toks: &[Tok],
    mut i: usize,
    prefix: &[String],
    out: &mut Vec<(Vec<String>, Option<String>)>,
) -> usize {
    let mut path = prefix.to_vec();
    let mut alias = None;
    let mut glob = false;
    if toks.get(i) == Some(&Tok::PathSep) {
        i += 1;
    }
    loop {
        match toks.get(i) {
            Some(Tok::Ident(s)) if s == "as" => {
                if let Some(Tok::Ident(a)) = toks.get(i + 1) {
                    alias = Some(a.clone());
                }
                i += 2;
            }
            Some(Tok::Ident(s)) => {
                path.push(s.clone());
                i += 1;
            }
            Some(Tok::PathSep) => i += 1,
            Some(Tok::Punct('*')) => {
                glob = true;
                i += 1;
            }
            Some(Tok::Punct('{')) => {
                i += 1;
                while !matches!(toks.get(i), None | Some(Tok::Punct('}'))) {
                    i = use_tree(toks, i, &path, out);
                    if toks.get(i) == Some(&Tok::Punct(',')) {
                        i += 1;
                    }
                }
                return i + 1;
            }
            _ => {
                if path.len() > prefix.len() || glob {
                    let binds = if glob {
                        None
                    } else {
                        alias.or_else(|| match path.last().map(String::as_str) {
                            Some("self") => path.iter().rev().nth(1).cloned(),
                            last => last.map(str::to_owned),
                        })
                    };
                    out.push((path, binds));
                }
                return i;
            }
        }
    }
}

/// One product source file of the crate.
struct Module {
    /// `pod::lifecycle`, as segments; the crate root is empty.
    path: Vec<String>,
    file: PathBuf,
    /// Paths it names, resolved: `crate::`, `self::`, `super::` and names brought in by its
    /// `use` items become `crate::<module path>::...`; other crates' paths stay as written.
    names: Vec<Vec<String>>,
}

impl Module {
    fn new(path: Vec<String>, file: PathBuf, n: &Named) -> Module {
        let mut m = Module {
            path,
            file,
            names: Vec::new(),
        };
        let uses: Vec<Vec<String>> = n.uses.iter().map(|(p, _)| m.relative(p)).collect();
        let bindings: BTreeMap<&str, &Vec<String>> = n
            .uses
            .iter()
            .zip(&uses)
            .filter_map(|((_, b), full)| Some((b.as_deref()?, full)))
            .collect();
        let mut names = uses.clone();
        for p in &n.paths {
            let r = m.relative(p);
            let r = match bindings.get(r[0].as_str()) {
                Some(full) if r[0] != "crate" => {
                    let mut f = full.to_vec();
                    if f.last().map(String::as_str) == Some("self") {
                        f.pop();
                    }
                    f.extend(r[1..].iter().cloned());
                    f
                }
                _ => r,
            };
            names.push(r);
        }
        m.names = names;
        m
    }

    fn name(&self) -> String {
        if self.path.is_empty() {
            "crate".into()
        } else {
            self.path.join("::")
        }
    }

    /// `crate::`, `self::` and `super::` (any number) resolved against this module.
    fn relative(&self, p: &[String]) -> Vec<String> {
        let mut base: Vec<String> = self.path.clone();
        let mut rest = p;
        match rest.first().map(String::as_str) {
            Some("crate") => {
                base.clear();
                rest = &rest[1..];
            }
            Some("super") => {
                while rest.first().map(String::as_str) == Some("super") {
                    base.pop();
                    rest = &rest[1..];
                }
            }
            Some("self") => rest = &rest[1..],
            _ => return p.to_vec(),
        }
        std::iter::once("crate".to_owned())
            .chain(base)
            .chain(rest.iter().cloned())
            .collect()
    }
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Every product module of `src/` (test-only files left out), read once per test binary.
fn modules() -> &'static [Module] {
    static MODULES: std::sync::OnceLock<Vec<Module>> = std::sync::OnceLock::new();
    MODULES.get_or_init(|| {
        let src = src_dir();
        let mut files = Vec::new();
        rs_files(&src, &mut files);
        let mut parsed = Vec::new();
        let mut test_files: BTreeSet<Vec<String>> = BTreeSet::new();
        for file in files {
            let rel = file.strip_prefix(&src).unwrap();
            let mut path: Vec<String> = rel
                .with_extension("")
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect();
            // src/lib.rs and src/main.rs are crate roots; a/mod.rs is module a.
            if path == ["lib"] || path == ["main"] || path.last().map(String::as_str) == Some("mod")
            {
                path.pop();
            }
            let text = std::fs::read_to_string(&file).unwrap();
            let (toks, test_mods) = strip_cfg_test(&tokens(&text));
            // `#[cfg(test)] mod x;` in module a::b declares a::b::x (a/b/x.rs).
            for m in test_mods {
                let mut t = path.clone();
                t.push(m);
                test_files.insert(t);
            }
            parsed.push((path, file, named(&toks)));
        }
        parsed
            .into_iter()
            .filter(|(path, ..)| !test_files.iter().any(|t| path.starts_with(t)))
            .map(|(path, file, n)| Module::new(path, file, &n))
            .collect()
    })
}

// ---------------------------------------------------------------------------------------
// Rules

/// A module path pattern: `pod::lifecycle` matches that module and its children.
fn under(m: &Module, prefix: &str) -> bool {
    let want: Vec<&str> = prefix.split("::").collect();
    m.path.len() >= want.len() && m.path.iter().zip(&want).all(|(a, b)| a == b)
}

fn starts(p: &[String], prefix: &str) -> bool {
    let want: Vec<&str> = prefix.split("::").collect();
    p.len() >= want.len() && p.iter().zip(&want).all(|(a, b)| a == b)
}

/// Paths that do I/O, or reach something that does: the file system, sockets, processes,
/// the CRI client, the syscall module, the local view files, confinement.
fn is_io(p: &[String]) -> bool {
    const IO: &[&str] = &[
        "std::fs",
        "std::net",
        "std::process",
        "std::os::unix::net",
        "std::os::unix::fs",
        "tokio::fs",
        "tokio::net",
        "tokio::process",
        "tonic",
        "hyper",
        "hyper_util",
        "notify",
        "kube",
        "crate::sys",
        "crate::view",
        "crate::confine",
    ];
    // Pure parts of I/O modules: the CRI's generated message types and its id newtypes
    // (`cri::ids`, a leaf) are plain data, and the mount helper's wire protocol is pure and
    // fuzzed (pod::manifest checks pod UIDs with it); the CRI client and the rest of
    // confine are not.
    let pure_part = starts(p, "crate::cri::api")
        || starts(p, "crate::cri::ids")
        || starts(p, "crate::confine::helper::proto");
    !pure_part && (IO.iter().any(|io| starts(p, io)) || starts(p, "crate::cri"))
}

struct Violation {
    module: String,
    file: PathBuf,
    path: String,
}

/// Every (module matching `who`, named path matching `bad`).
fn violations(who: impl Fn(&Module) -> bool, bad: impl Fn(&[String]) -> bool) -> Vec<Violation> {
    let mut seen = BTreeMap::new();
    for m in modules().iter().filter(|m| who(m)) {
        for p in m.names.iter().filter(|p| bad(p)) {
            seen.entry((m.name(), p.join("::")))
                .or_insert_with(|| m.file.clone());
        }
    }
    seen.into_iter()
        .map(|((module, path), file)| Violation { module, file, path })
        .collect()
}

fn judge(rule: &str, reason: &str, found: Vec<Violation>) {
    let list: Vec<String> = found
        .iter()
        .map(|v| format!("  {} ({}) names {}", v.module, v.file.display(), v.path))
        .collect();
    assert!(
        list.is_empty(),
        "rule broken: {rule}\nwhy: {reason}\n{}",
        list.join("\n")
    );
}

/// The pure modules of ARCHITECTURE.md: decisions without I/O, unit-tested without a
/// runtime, several of them fuzzed.
const PURE: &[&str] = &[
    "pod::lifecycle",
    "pod::manifest",
    "pod::cri_config",
    "pod::dns",
    "pod::status",
    "server::routes",
    "server::query",
    "node::status",
];

#[test]
fn the_pure_modules_import_no_io() {
    judge(
        "pod::lifecycle, pod::manifest, pod::cri_config, pod::dns, pod::status, \
         server::routes, server::query and node::status do no I/O",
        "the pure step decides the whole restart and termination policy and is tested \
         without a runtime (DESIGN.md decision 3); the parsers an attacker reaches are fuzzed \
         as pure functions",
        violations(|m| PURE.iter().any(|p| under(m, p)), is_io),
    );
}

#[test]
fn the_cri_client_knows_nothing_of_pods() {
    judge(
        "cri does not name pod, pleg, server or volume",
        "the CRI client is a transport (ARCHITECTURE.md: cri/ must not know about pods); \
         policy above it stays testable without it",
        violations(
            |m| under(m, "cri"),
            |p| {
                [
                    "crate::pod",
                    "crate::pleg",
                    "crate::server",
                    "crate::volume",
                ]
                .iter()
                .any(|x| starts(p, x))
            },
        ),
    );
}

#[test]
fn the_pleg_acts_on_no_pod() {
    judge(
        "pleg (pleg.rs or pleg/) does not name the pod worker, manager or lifecycle",
        "the PLEG observes and publishes; acting is the workers' job (ARCHITECTURE.md: pleg \
         must not act on pods), so data flows one way",
        violations(
            |m| under(m, "pleg"),
            |p| {
                [
                    "crate::pod::worker",
                    "crate::pod::manager",
                    "crate::pod::lifecycle",
                ]
                .iter()
                .any(|x| starts(p, x))
            },
        ),
    );
}

#[test]
fn the_local_view_opens_no_socket() {
    judge(
        "view does not name std::net, tokio::net, std::os::unix::net, hyper or tonic",
        "the local view is files on purpose (ARCHITECTURE.md: a socket would be one more \
         listener to secure and fuzz)",
        violations(
            |m| under(m, "view"),
            |p| {
                [
                    "std::net",
                    "tokio::net",
                    "std::os::unix::net",
                    "hyper",
                    "tonic",
                ]
                .iter()
                .any(|x| starts(p, x))
            },
        ),
    );
}

#[test]
fn confinement_is_applied_in_one_place() {
    judge(
        "confine::apply is named only by cli::run (and confine itself)",
        "one confinement point, before any listener binds (DESIGN.md decision 2); a second \
         call site could run code unconfined or apply a different plan",
        violations(
            |m| !under(m, "cli::run") && !under(m, "confine"),
            |p| starts(p, "crate::confine::apply") || starts(p, "ironlet::confine::apply"),
        ),
    );
}

#[test]
fn the_healthz_listener_serves_health_only() {
    judge(
        "server::healthz does not name the 10250 handlers (endpoints, logs, stream, api)",
        "healthz is plain HTTP on loopback without authentication; only health may be \
         behind it (ARCHITECTURE.md: healthz must not grow routes other than health)",
        violations(
            |m| under(m, "server::healthz"),
            |p| {
                [
                    "crate::server::endpoints",
                    "crate::server::logs",
                    "crate::server::stream",
                    "crate::server::api",
                ]
                .iter()
                .any(|x| starts(p, x))
            },
        ),
    );
}

// ---------------------------------------------------------------------------------------
// The reader itself: each rule above is only as good as these.

fn module_from(path: &str, text: &str) -> Module {
    let (toks, _) = strip_cfg_test(&tokens(text));
    Module::new(
        path.split("::").map(str::to_owned).collect(),
        PathBuf::from("test.rs"),
        &named(&toks),
    )
}

fn names(m: &Module) -> BTreeSet<String> {
    m.names.iter().map(|p| p.join("::")).collect()
}

#[test]
fn use_trees_are_expanded_and_resolved() {
    let m = module_from(
        "pod::lifecycle",
        "use std::{fs::{self, File}, collections::BTreeMap as M};\n\
         use super::observed::ObservedPod;\n\
         use crate::cri::{api, Cri};\n\
         use crate::confine;\n\
         use std::process as proc;\n\
         fn f() { let _ = tokio::fs::read(p); confine::apply(x); proc::Command::new(\"sh\"); }",
    );
    let n = names(&m);
    for want in [
        "std::fs::self",
        "std::fs::File",
        "std::collections::BTreeMap",
        "crate::pod::observed::ObservedPod",
        "crate::cri::api",
        "crate::cri::Cri",
        "tokio::fs::read",
        "crate::confine::apply",
        "std::process::Command::new",
    ] {
        assert!(n.contains(want), "{want} not in {n:?}");
    }
    assert!(m.names.iter().any(|p| is_io(p)));
    let path = |s: &str| s.split("::").map(str::to_owned).collect::<Vec<_>>();
    assert!(!is_io(&path("crate::cri::api::DnsConfig")));
    assert!(!is_io(&path("crate::cri::ids::ContainerId")));
    assert!(
        is_io(&path("crate::cri::ContainerId")),
        "the re-export is judged as cri"
    );
    assert!(!is_io(&path("crate::confine::helper::proto::is_pod_uid")));
    assert!(is_io(&path("crate::confine::apply")));
    assert!(is_io(&path("crate::cri::Cri")));
}

#[test]
fn comments_literals_and_test_code_are_not_judged() {
    let m = module_from(
        "pod::status",
        "// use std::fs;\n/* std::net::TcpStream /* nested */ */\n\
         const S: &str = \"std::process::Command\";\n\
         const R: &str = r#\"tokio::fs::read \"quoted\" \"#;\n\
         const C: char = '\"'; fn g<'a>(x: &'a str) {}\n\
         #[cfg(test)]\nmod tests { use std::fs; }\n\
         #[cfg(test)]\nmod more;\n\
         use k8s_openapi::api::core::v1::Pod;",
    );
    let n = names(&m);
    assert_eq!(
        n,
        BTreeSet::from(["k8s_openapi::api::core::v1::Pod".to_owned()]),
        "{n:?}"
    );
    let (_, test_mods) = strip_cfg_test(&tokens("#[cfg(test)]\n#[path = \"x.rs\"]\nmod more;"));
    assert_eq!(test_mods, vec!["more".to_owned()]);
}

#[test]
fn super_in_a_mod_rs_is_one_level_up() {
    // src/pod/security/mod.rs is `pod::security`; its `super` is `pod`.
    let m = module_from("pod::security", "use super::manifest::X;");
    assert!(
        names(&m).contains("crate::pod::manifest::X"),
        "{:?}",
        names(&m)
    );
    // src/pod/security/context.rs is `pod::security::context`; its `super` is `pod::security`.
    let m = module_from("pod::security::context", "use super::pss::Y;");
    assert!(
        names(&m).contains("crate::pod::security::pss::Y"),
        "{:?}",
        names(&m)
    );
}

#[test]
fn every_rule_sees_its_modules() {
    // A rule over a module that no longer exists would pass without judging anything.
    for p in PURE.iter().chain(&[
        "cri",
        "pleg",
        "view",
        "cli::run",
        "confine",
        "server::healthz",
    ]) {
        assert!(
            modules().iter().any(|m| under(m, p)),
            "no module {p} in src/: update the rule"
        );
    }
    // cli::run really calls confine::apply, so the rule about it can fail.
    assert!(
        modules()
            .iter()
            .filter(|m| under(m, "cli::run"))
            .any(|m| m.names.iter().any(|p| starts(p, "crate::confine::apply"))),
        "cli::run no longer names confine::apply"
    );
    // Test-only files are left out, product files are in.
    assert!(
        !modules()
            .iter()
            .any(|m| m.name() == "resources::cgroup::tests")
    );
    assert!(modules().iter().any(|m| m.name() == "pod::lifecycle"));
}
