//! The manual: the README is the quick start and a map, `docs/` holds one
//! page per task, and every relative link between them (a file, and a
//! heading in it) leads somewhere.

use std::path::{Path, PathBuf};

use crate::root;

/// A heading's anchor as GitHub makes it: lowercase, spaces to hyphens,
/// every other character but letters, digits, `-` and `_` dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a Markdown text's headings (outside code blocks).
fn anchors(text: &str) -> Vec<String> {
    let mut code = false;
    let mut found = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            code = !code;
        } else if !code && line.starts_with('#') {
            found.push(anchor(line.trim_start_matches('#')));
        }
    }
    found
}

/// The relative link targets of a Markdown text (outside code blocks).
fn links(text: &str) -> Vec<String> {
    let mut code = false;
    let mut found = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            code = !code;
            continue;
        }
        if code {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let Some(end) = rest.find(')') else { break };
            let target = &rest[..end];
            if !target.contains("://") && !target.starts_with("mailto:") {
                found.push(target.to_string());
            }
            rest = &rest[end..];
        }
    }
    found
}

/// What is wrong with the relative links of `file`.
fn broken(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut problems = Vec::new();
    for target in links(&text) {
        let (path, fragment) = target.split_once('#').unwrap_or((&target, ""));
        let to = if path.is_empty() {
            file.to_path_buf()
        } else {
            file.parent().unwrap().join(path)
        };
        if !to.exists() {
            problems.push(format!("{}: {target}: no such file", file.display()));
            continue;
        }
        if !fragment.is_empty() {
            let there = std::fs::read_to_string(&to).unwrap_or_default();
            if !anchors(&there).iter().any(|a| a == fragment) {
                problems.push(format!(
                    "{}: {target}: no heading #{fragment} in {}",
                    file.display(),
                    to.display()
                ));
            }
        }
    }
    problems
}

fn pages() -> Vec<PathBuf> {
    let mut all = vec![root().join("README.md"), root().join("CHANGELOG.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    all.extend(docs);
    all
}

#[test]
fn every_relative_link_of_the_manual_leads_somewhere() {
    let problems: Vec<String> = pages().iter().flat_map(|p| broken(p)).collect();
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_link_check_sees_a_broken_link_and_a_missing_heading() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("b.md"), "# B page\n\n## Some Thing, here\n").unwrap();
    let a = dir.path().join("a.md");
    std::fs::write(
        &a,
        "# A\n[ok](b.md) [ok](b.md#some-thing-here) [ok](#a)\n```\n[not a link](nowhere.md)\n```\n[gone](c.md) [no heading](b.md#other) ![img](pic.png) [web](https://example.org/x)\n",
    )
    .unwrap();
    let problems = broken(&a);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(problems[0].contains("c.md: no such file"));
    assert!(problems[1].contains("no heading #other"));
    assert!(problems[2].contains("pic.png"));
}

#[test]
fn the_readme_is_a_quick_start_and_a_map() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 250,
        "README.md has {lines} lines: move what is not a quick start or a map into docs/"
    );
    for page in pages().iter().skip(2) {
        let name = page.strip_prefix(root()).unwrap().display().to_string();
        assert!(
            readme.contains(&format!("({name})")),
            "README.md's map does not link {name}"
        );
    }
}
