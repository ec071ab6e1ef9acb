//! The layout's two rules, read from the source itself: the stages keep
//! their order (each imports only the ground floor and the stages before
//! it), and no two sibling modules import each other, directly or around a
//! loop (a parent module and its own children do not count).
//!
//! Every `crate::`, `self::` and `super::` path is read, in `use` lines and
//! inline (macro arguments included), and resolved through the modules'
//! own `use` items (`lib.rs`'s re-exports among them) to the file that
//! defines what it names. Parsing is syn's, so a path split over lines or
//! inside a group reads the same as any other.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

use crate::root;

/// The ground floor (imports no stage), then the stages in order.
const GROUND: &[&str] = &["diagnostics", "clock", "progress"];
const STAGES: &[&str] = &["compile", "check", "aws", "smoke", "cli"];

type ModPath = Vec<String>;

/// One module: the file it lives in, its child modules and what its `use`
/// items bring into scope (name → absolute path; globs apart).
#[derive(Default, Debug)]
struct Module {
    file: PathBuf,
    children: BTreeSet<String>,
    uses: BTreeMap<String, ModPath>,
    globs: Vec<ModPath>,
}

/// A path as written, in the module it is written in.
struct Reference {
    module: ModPath,
    file: PathBuf,
    segments: Vec<String>,
    line: usize,
}

#[derive(Default)]
struct Crate {
    modules: BTreeMap<ModPath, Module>,
    references: Vec<Reference>,
}

impl Crate {
    fn load(src: &Path) -> Crate {
        let mut krate = Crate::default();
        krate.load_file(&src.join("lib.rs"), Vec::new());
        krate
    }

    fn load_file(&mut self, file: &Path, module: ModPath) {
        let text =
            fs::read_to_string(file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        let syntax =
            syn::parse_file(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", file.display()));
        self.load_items(file, &module, &syntax.items);
        let mut collector = Paths::default();
        collector.visit_file(&syntax);
        // The collector records every path with the inline module it sits
        // in, below this file's own module.
        for (inner, segments, line) in collector.found {
            let mut at = module.clone();
            at.extend(inner);
            self.references.push(Reference {
                module: at,
                file: file.to_path_buf(),
                segments,
                line,
            });
        }
    }

    fn load_items(&mut self, file: &Path, module: &ModPath, items: &[syn::Item]) {
        self.modules.entry(module.clone()).or_default().file = file.to_path_buf();
        for item in items {
            match item {
                syn::Item::Mod(m) => {
                    let name = m.ident.to_string();
                    let mut child = module.clone();
                    child.push(name.clone());
                    self.modules
                        .get_mut(module)
                        .expect("module registered above")
                        .children
                        .insert(name.clone());
                    match &m.content {
                        Some((_, inner)) => self.load_items(file, &child, inner),
                        None => {
                            let path = child_file(file, module.is_empty(), &name);
                            self.load_file(&path, child);
                        }
                    }
                }
                syn::Item::Use(u) => {
                    let mut flat = Vec::new();
                    flatten(&u.tree, Vec::new(), &mut flat);
                    for (path, alias) in flat {
                        let Some(absolute) = self.absolute(module, &path) else {
                            continue;
                        };
                        let entry = self.modules.get_mut(module).expect("registered");
                        match alias {
                            Some(name) => {
                                entry.uses.insert(name, absolute);
                            }
                            None => entry.globs.push(absolute),
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// The absolute form of a path written in `module`, or None when it
    /// leaves the crate (std, a dependency, a local name).
    fn absolute(&self, module: &ModPath, path: &[String]) -> Option<ModPath> {
        let (first, rest) = path.split_first()?;
        let mut base = match first.as_str() {
            "crate" => Vec::new(),
            "self" => module.clone(),
            "super" => parent(module),
            name if self
                .modules
                .get(module)
                .is_some_and(|m| m.children.contains(name)) =>
            {
                let mut child = module.clone();
                child.push(name.to_string());
                child
            }
            _ => return None,
        };
        let mut rest = rest;
        while let Some(("super", tail)) = rest.split_first().map(|(h, t)| (h.as_str(), t)) {
            base = parent(&base);
            rest = tail;
        }
        base.extend(rest.iter().cloned());
        Some(base)
    }

    /// The file that defines what an absolute path names.
    fn resolve(&self, path: &[String], depth: usize) -> Option<PathBuf> {
        if depth > 16 {
            return None;
        }
        let mut at: ModPath = Vec::new();
        for (i, segment) in path.iter().enumerate() {
            let module = self.modules.get(&at)?;
            if module.children.contains(segment) {
                at.push(segment.clone());
                continue;
            }
            if let Some(target) = module.uses.get(segment) {
                let mut next = target.clone();
                next.extend(path[i + 1..].iter().cloned());
                return self.resolve(&next, depth + 1);
            }
            for glob in &module.globs {
                let mut next = glob.clone();
                next.extend(path[i..].iter().cloned());
                if glob != &at
                    && let Some(file) = self.resolve(&next, depth + 1)
                    && file != module.file
                {
                    return Some(file);
                }
            }
            return Some(module.file.clone());
        }
        self.modules.get(&at).map(|m| m.file.clone())
    }

    /// Every arrow between files: (from, to, line of the path).
    fn arrows(&self) -> Vec<(PathBuf, PathBuf, usize)> {
        let mut arrows = Vec::new();
        for reference in &self.references {
            let Some(absolute) = self.absolute(&reference.module, &reference.segments) else {
                continue;
            };
            let Some(to) = self.resolve(&absolute, 0) else {
                continue;
            };
            if to != reference.file {
                arrows.push((reference.file.clone(), to, reference.line));
            }
        }
        arrows
    }

    /// The module path of the file (its first module, not an inline one).
    fn module_of(&self, file: &Path) -> ModPath {
        self.modules
            .iter()
            .filter(|(_, m)| m.file == file)
            .map(|(p, _)| p.clone())
            .min_by_key(Vec::len)
            .unwrap_or_default()
    }
}

fn parent(module: &ModPath) -> ModPath {
    module[..module.len().saturating_sub(1)].to_vec()
}

/// Where `mod name;` declared in `file` lives.
fn child_file(file: &Path, is_root: bool, name: &str) -> PathBuf {
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let dir = if is_root || stem == "mod" {
        file.parent().expect("a file has a folder").to_path_buf()
    } else {
        file.with_extension("")
    };
    let flat = dir.join(format!("{name}.rs"));
    if flat.exists() {
        flat
    } else {
        dir.join(name).join("mod.rs")
    }
}

/// A `use` tree as (path, Some(name it binds)) or (path, None) for a glob.
fn flatten(tree: &syn::UseTree, prefix: Vec<String>, out: &mut Vec<(Vec<String>, Option<String>)>) {
    match tree {
        syn::UseTree::Path(p) => {
            let mut next = prefix;
            next.push(p.ident.to_string());
            flatten(&p.tree, next, out);
        }
        syn::UseTree::Name(n) => {
            let name = n.ident.to_string();
            let mut path = prefix;
            if name == "self" {
                let bound = path.last().cloned();
                out.push((path, bound));
            } else {
                path.push(name.clone());
                out.push((path, Some(name)));
            }
        }
        syn::UseTree::Rename(r) => {
            let mut path = prefix;
            if r.ident != "self" {
                path.push(r.ident.to_string());
            }
            out.push((path, Some(r.rename.to_string())));
        }
        syn::UseTree::Glob(_) => out.push((prefix, None)),
        syn::UseTree::Group(g) => {
            for item in &g.items {
                flatten(item, prefix.clone(), out);
            }
        }
    }
}

/// Every path in a file, with the inline module it sits in and its line.
#[derive(Default)]
struct Paths {
    inline: ModPath,
    found: Vec<(ModPath, Vec<String>, usize)>,
}

impl Paths {
    fn push(&mut self, segments: Vec<String>, line: usize) {
        if segments.len() > 1 {
            self.found.push((self.inline.clone(), segments, line));
        }
    }

    /// Paths inside a macro's tokens: `crate`, `self` or `super` followed
    /// by `::` and names.
    fn tokens(&mut self, tokens: TokenStream) {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < trees.len() {
            match &trees[i] {
                TokenTree::Group(g) => self.tokens(g.stream()),
                TokenTree::Ident(id)
                    if matches!(id.to_string().as_str(), "crate" | "self" | "super") =>
                {
                    let line = id.span().start().line;
                    let mut segments = vec![id.to_string()];
                    let mut j = i + 1;
                    loop {
                        let colons = matches!((&trees.get(j), &trees.get(j + 1)),
                            (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
                                if a.as_char() == ':' && b.as_char() == ':');
                        match (colons, trees.get(j + 2)) {
                            (true, Some(TokenTree::Ident(next))) => {
                                segments.push(next.to_string());
                                j += 3;
                            }
                            _ => break,
                        }
                    }
                    self.push(segments, line);
                    i = j;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
    }
}

impl<'ast> Visit<'ast> for Paths {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        self.inline.push(m.ident.to_string());
        syn::visit::visit_item_mod(self, m);
        self.inline.pop();
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        let mut flat = Vec::new();
        flatten(&u.tree, Vec::new(), &mut flat);
        let line = syn::spanned::Spanned::span(u).start().line;
        for (path, _) in flat {
            // `use name::…` may start at a child module; absolute() decides.
            self.found.push((self.inline.clone(), path, line));
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        let line = path
            .segments
            .first()
            .map(|s| s.ident.span().start().line)
            .unwrap_or(0);
        self.push(segments, line);
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.tokens(mac.tokens.clone());
        syn::visit::visit_macro(self, mac);
    }
}

/// The crate's top-level module a file belongs to (`""` for `lib.rs`).
fn top(module: &ModPath) -> &str {
    module.first().map(String::as_str).unwrap_or("")
}

fn rank(top: &str) -> Option<usize> {
    if GROUND.contains(&top) {
        Some(0)
    } else {
        STAGES.iter().position(|s| *s == top).map(|i| i + 1)
    }
}

fn shown(file: &Path) -> String {
    file.strip_prefix(root())
        .unwrap_or(file)
        .display()
        .to_string()
}

/// `src/` of the crate.
fn src() -> PathBuf {
    root().join("src")
}

/// A fixture crate's folder (its `lib.rs` at the top).
fn fixture(name: &str) -> PathBuf {
    crate::fixtures().join("architecture").join(name)
}

/// Arrows against the stages' order, as lines to print.
fn against_the_stages(krate: &Crate) -> Vec<String> {
    let mut wrong = BTreeSet::new();
    for (from, to, line) in krate.arrows() {
        let (a, b) = (krate.module_of(&from), krate.module_of(&to));
        let (Some(ra), Some(rb)) = (rank(top(&a)), rank(top(&b))) else {
            continue;
        };
        let allowed = if ra == 0 {
            top(&a) == top(&b)
        } else {
            rb <= ra
        };
        if !allowed {
            wrong.insert(format!(
                "{}:{line} ({}) imports {} ({})",
                shown(&from),
                top(&a),
                shown(&to),
                top(&b)
            ));
        }
    }
    wrong.into_iter().collect()
}

/// Circles between siblings: at every module, its children (files or
/// folders, each with everything under it) import each other around a loop.
fn circles(krate: &Crate) -> Vec<String> {
    let arrows: Vec<(ModPath, ModPath)> = krate
        .arrows()
        .into_iter()
        .map(|(f, t, _)| (krate.module_of(&f), krate.module_of(&t)))
        .collect();
    let mut found = Vec::new();
    for (parent_path, module) in &krate.modules {
        if module.children.len() < 2 {
            continue;
        }
        // An edge between two children of this parent.
        let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (from, to) in &arrows {
            let n = parent_path.len();
            if from.len() <= n
                || to.len() <= n
                || from[..n] != parent_path[..]
                || to[..n] != parent_path[..]
            {
                continue;
            }
            if from[n] != to[n] {
                graph.entry(&from[n]).or_default().insert(&to[n]);
            }
        }
        for cycle in strongly_connected(&graph) {
            let prefix = if parent_path.is_empty() {
                "crate".to_string()
            } else {
                parent_path.join("::")
            };
            found.push(format!("in {prefix}: {}", cycle.join(" <-> ")));
        }
    }
    found
}

/// Tarjan's algorithm; only components of two or more nodes.
fn strongly_connected<'a>(graph: &BTreeMap<&'a str, BTreeSet<&'a str>>) -> Vec<Vec<&'a str>> {
    struct State<'a> {
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(v: &'a str, g: &BTreeMap<&'a str, BTreeSet<&'a str>>, s: &mut State<'a>) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for &w in g.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(w, g, s);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w);
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut state = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for &v in graph.keys() {
        if !state.index.contains_key(v) {
            visit(v, graph, &mut state);
        }
    }
    state.out
}

#[test]
fn the_stages_keep_their_order() {
    let krate = Crate::load(&src());
    let wrong = against_the_stages(&krate);
    assert!(
        wrong.is_empty(),
        "arrows against the stages (the ground floor {} imports no stage; then {}):\n{}",
        GROUND.join(", "),
        STAGES.join(" < "),
        wrong.join("\n")
    );
}

#[test]
fn no_two_siblings_import_each_other() {
    let krate = Crate::load(&src());
    let found = circles(&krate);
    assert!(
        found.is_empty(),
        "import circles between siblings:\n{}",
        found.join("\n")
    );
}

/// The reader sees the crate's real arrows, inline and through
/// re-exports, so that the two rules above are about something.
#[test]
fn the_crates_arrows_are_read() {
    let krate = Crate::load(&src());
    let arrows: BTreeSet<(String, String)> = krate
        .arrows()
        .into_iter()
        .map(|(f, t, _)| (shown(&f), shown(&t)))
        .collect();
    for (from, to) in [
        // `crate::compile::payload::mime(…)`, inline.
        ("src/compile/compiler.rs", "src/compile/payload.rs"),
        // `use crate::compile::listing;`, then `listing::profiles(…)`.
        ("src/cli/dispatch.rs", "src/compile/listing.rs"),
        // `use super::instances::…`, between siblings of smoke.
        ("src/smoke/local.rs", "src/smoke/instances.rs"),
        // `crate::Library::builtin()` in a test, through lib.rs.
        ("src/aws/plan.rs", "src/compile/library.rs"),
    ] {
        assert!(
            arrows.contains(&(from.to_string(), to.to_string())),
            "{from} -> {to} not seen among {} arrows",
            arrows.len()
        );
    }
    assert!(arrows.len() > 150, "only {} arrows", arrows.len());
}

#[test]
fn an_arrow_against_the_stages_is_found_however_it_is_written() {
    let krate = Crate::load(&fixture("against"));
    let wrong: Vec<String> = against_the_stages(&krate)
        .iter()
        .map(|line| line.replace(&shown(&fixture("against")), "against"))
        .collect();
    assert_eq!(
        wrong,
        [
            // Through lib.rs's `pub use check::rules::Rule`.
            "against/compile/b.rs:1 (compile) imports against/check/rules.rs (check)",
            // Inline, in format!'s arguments.
            "against/compile/a.rs:4 (compile) imports against/check/rules.rs (check)",
            // The ground floor reaching up.
            "against/diagnostics.rs:4 (diagnostics) imports against/compile/a.rs (compile)",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
}

#[test]
fn a_circle_between_siblings_is_found_and_a_parent_is_not_one() {
    let krate = Crate::load(&fixture("circle"));
    assert_eq!(circles(&krate), ["in compile: a <-> b <-> c"]);
}

/// How long a file may be outside its tests before its header must say
/// what single concept makes it long.
const LONG_FILE: usize = 600;

#[test]
fn a_long_file_says_why_it_is_long() {
    let mut unexplained = Vec::new();
    for (module, m) in &Crate::load(&src()).modules {
        if module.last().is_some_and(|n| n == "tests") {
            continue;
        }
        let text = fs::read_to_string(&m.file).expect("read above");
        let code = text.split("\n#[cfg(test)]\nmod tests").next().unwrap_or("");
        let lines = code.lines().count();
        let header: String = text
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .collect::<Vec<_>>()
            .join(" ");
        // The header states its length and why ("about 540 lines of code:
        // the launch is one state machine…").
        if lines > LONG_FILE && !header.contains(" lines") {
            unexplained.push(format!("{} ({lines} lines)", shown(&m.file)));
        }
    }
    unexplained.dedup();
    assert!(
        unexplained.is_empty(),
        "past {LONG_FILE} lines outside their tests, with no header saying why:\n{}",
        unexplained.join("\n")
    );
}
