//! Regular expressions compiled once per process: snippet manifests and
//! checks use the same few patterns over and over.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use regex::Regex;

static CACHE: LazyLock<Mutex<HashMap<String, Regex>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// `pattern` compiled, from the cache when it was compiled before.
pub fn compiled(pattern: &str) -> Result<Regex, regex::Error> {
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(re) = cache.get(pattern) {
        return Ok(re.clone());
    }
    let re = Regex::new(pattern)?;
    cache.insert(pattern.to_string(), re.clone());
    Ok(re)
}

/// `pattern` matching whole strings only.
pub fn whole(pattern: &str) -> Result<Regex, regex::Error> {
    compiled(&format!("^(?:{pattern})$"))
}
