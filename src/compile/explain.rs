//! `explain`: what a compile chose, every value with its origin, and the
//! payload's size against EC2's limit.

use std::fmt;

use serde::Serialize;
use serde_json::Value as Json;

use crate::compile::payload::USER_DATA_LIMIT;
use crate::compile::{Compiled, ResolvedSnippet};

/// A profile's settings, snippets and payload, ready to show.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub profile: String,
    pub file: String,
    pub summary: String,
    /// The profile and the profiles it extends, the profile first.
    pub chain: Vec<String>,
    /// Every instance and job setting: dotted path, value, origin.
    pub settings: Vec<Setting>,
    pub snippets: Vec<ResolvedSnippet>,
    /// What keys the requirements' environment in the cache, when there is
    /// one.
    pub environment_cache: Option<EnvironmentCache>,
    pub payload: PayloadFacts,
}

/// The requirements' cache: where an entry lives and what its key hashes.
#[derive(Debug, Clone, Serialize)]
pub struct EnvironmentCache {
    /// `CACHE_DIR/KEY/`, with `env.sqfs`, `env.sha256` and `env.size`.
    pub entry: String,
    /// What the key (a SHA-256) is computed from on the instance, in order.
    pub key_inputs: Vec<String>,
}

impl EnvironmentCache {
    fn new(compiled: &Compiled) -> Option<EnvironmentCache> {
        let text = |name: &str| {
            compiled
                .param("requirements", name)
                .map(yaml_show)
                .unwrap_or_default()
        };
        let dir = compiled.param("requirements", "cache_dir")?.as_str()?;
        Some(EnvironmentCache {
            entry: format!("{dir}/KEY/"),
            key_inputs: vec![
                format!("the requirements file's bytes ({})", text("file")),
                format!("the installer's extra arguments ({})", text("extra_args")),
                format!(
                    "the environment's place ({}/venv)",
                    compiled.profile.profile.job.state_dir
                ),
                format!("`{} -VV` on the instance", text("python")),
                "`uname -m` on the instance".to_string(),
            ],
        })
    }
}

/// One setting and where it came from.
#[derive(Debug, Clone, Serialize)]
pub struct Setting {
    pub path: String,
    pub value: Json,
    pub origin: String,
}

/// The payload's parts and sizes.
#[derive(Debug, Clone, Serialize)]
pub struct PayloadFacts {
    pub format: &'static str,
    pub parts: Vec<PartSize>,
    /// Before compression.
    pub raw_bytes: usize,
    pub gzip: bool,
    /// What EC2 receives, before its base64.
    pub bytes: usize,
    pub base64_bytes: usize,
    pub limit: usize,
    pub sha256: String,
    pub files: Vec<FileSize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartSize {
    pub name: String,
    pub content_type: String,
    pub bytes: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileSize {
    pub path: String,
    pub snippets: Vec<String>,
    pub bytes: usize,
}

impl Explanation {
    /// Explains `compiled`.
    pub fn new(compiled: &Compiled) -> Explanation {
        let p = &compiled.profile;
        let mut settings = Vec::new();
        for (section, value) in [
            ("instance", serde_json::to_value(&p.profile.instance)),
            ("job", serde_json::to_value(&p.profile.job)),
            ("output", serde_json::to_value(&p.profile.output)),
        ] {
            flatten(section, value.unwrap_or(Json::Null), &mut |path, value| {
                settings.push(Setting {
                    origin: p.origin(&path).to_string(),
                    path,
                    value,
                });
            });
        }
        let mut parts = vec![PartSize {
            name: "cloud-config".to_string(),
            content_type: "text/cloud-config".to_string(),
            bytes: compiled.cloud_config.len(),
        }];
        parts.extend(compiled.parts.iter().map(|part| PartSize {
            name: part.filename.clone(),
            content_type: part.content_type.clone(),
            bytes: part.content.len(),
        }));
        let payload = &compiled.payload;
        Explanation {
            profile: p.name.clone(),
            file: p.file.clone(),
            summary: p.profile.summary.clone(),
            chain: p.chain.clone(),
            settings,
            snippets: compiled.snippets.clone(),
            environment_cache: EnvironmentCache::new(compiled),
            payload: PayloadFacts {
                format: if payload.mime {
                    "multipart MIME"
                } else {
                    "cloud-config"
                },
                parts,
                raw_bytes: payload.raw.len(),
                gzip: payload.gzip,
                bytes: payload.bytes.len(),
                base64_bytes: payload.base64().len(),
                limit: USER_DATA_LIMIT,
                sha256: payload.sha256(),
                files: compiled
                    .files
                    .iter()
                    .map(|f| FileSize {
                        path: f.path.clone(),
                        snippets: f.snippets.clone(),
                        bytes: f.content.len(),
                    })
                    .collect(),
            },
        }
    }
}

fn flatten(path: &str, value: Json, out: &mut dyn FnMut(String, Json)) {
    match value {
        Json::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                flatten(&format!("{path}.{k}"), v, out);
            }
        }
        v => out(path.to_string(), v),
    }
}

fn show(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn yaml_show(v: &serde_yaml_ng::Value) -> String {
    show(&serde_json::to_value(v).unwrap_or(Json::Null))
}

fn percent(part: usize, whole: usize) -> String {
    format!("{:.1}%", part as f64 * 100.0 / whole as f64)
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "profile {} ({})", self.profile, self.file)?;
        if !self.summary.is_empty() {
            writeln!(f, "  {}", self.summary)?;
        }
        if self.chain.len() > 1 {
            writeln!(f, "  extends: {}", self.chain[1..].join(" -> "))?;
        }
        let width = self
            .settings
            .iter()
            .map(|s| s.path.len())
            .max()
            .unwrap_or(0);
        writeln!(f, "\nsettings (value, then where it came from)")?;
        for s in &self.settings {
            writeln!(f, "  {:width$}  {}  [{}]", s.path, show(&s.value), s.origin)?;
        }
        writeln!(f, "\nsnippets, in order")?;
        for (i, snippet) in self.snippets.iter().enumerate() {
            writeln!(f, "  {}. {}: {}", i + 1, snippet.name, snippet.summary)?;
            let width = snippet
                .params
                .iter()
                .map(|p| p.name.len())
                .max()
                .unwrap_or(0);
            for p in &snippet.params {
                writeln!(
                    f,
                    "       {:width$}  {}  [{}]",
                    p.name,
                    yaml_show(&p.value),
                    p.origin
                )?;
            }
        }
        if let Some(cache) = &self.environment_cache {
            writeln!(
                f,
                "\nrequirements cache: {} (a squashfs image, its SHA-256 and size); KEY is the SHA-256 of",
                cache.entry
            )?;
            for input in &cache.key_inputs {
                writeln!(f, "  {input}")?;
            }
        }
        let p = &self.payload;
        writeln!(f, "\npayload: {}", p.format)?;
        for part in &p.parts {
            writeln!(
                f,
                "  part {} ({}): {} bytes",
                part.name, part.content_type, part.bytes
            )?;
        }
        for file in &p.files {
            writeln!(
                f,
                "    file {} ({}): {} bytes",
                file.path,
                file.snippets.join(" + "),
                file.bytes
            )?;
        }
        if p.gzip {
            writeln!(
                f,
                "  raw: {} bytes, the readable user-data (golden/), gzipped for EC2",
                p.raw_bytes
            )?;
            writeln!(
                f,
                "  gzip: {} bytes, {} of the {}-byte user-data limit: what EC2 receives",
                p.bytes,
                percent(p.bytes, p.limit),
                p.limit
            )?;
        } else {
            writeln!(
                f,
                "  raw: {} bytes, {} of the {}-byte user-data limit: what EC2 receives",
                p.raw_bytes,
                percent(p.raw_bytes, p.limit),
                p.limit
            )?;
            writeln!(f, "  gzip: no")?;
        }
        writeln!(f, "  base64 as sent to EC2: {} bytes", p.base64_bytes)?;
        write!(f, "  sha256: {}", p.sha256)
    }
}
