//! Paths on the instance: which mount holds a path. One meaning, one
//! function, for validation, templates and smoke tests alike.

/// Whether absolute `path` is `dir` or lies below it (`/a/b` is under `/a`
/// and under `/`, `/ab` is not under `/a`).
///
/// ```
/// # use bootforge::compile::paths::is_under;
/// assert!(is_under("/home/u/rec/jobs", "/home/u/rec"));
/// assert!(is_under("/home/u/rec", "/home/u/rec/"));
/// assert!(!is_under("/home/u/recx", "/home/u/rec"));
/// assert!(is_under("/srv", "/"));
/// ```
pub fn is_under(path: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    let path = path.trim_end_matches('/');
    path == dir
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Of `mount_points`, the one holding `path` (the innermost when several do).
pub fn holder<'a>(path: &str, mount_points: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    mount_points
        .into_iter()
        .filter(|at| is_under(path, at))
        .max_by_key(|at| at.trim_end_matches('/').len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_innermost_mount_holds_a_path() {
        let mounts = ["/home/u/rec", "/home/u/rec/app", "/"];
        assert_eq!(
            holder("/home/u/rec/app/x.sh", mounts),
            Some("/home/u/rec/app")
        );
        assert_eq!(holder("/home/u/rec/jobs", mounts), Some("/home/u/rec"));
        assert_eq!(holder("/etc", mounts), Some("/"));
        assert_eq!(holder("/etc", ["/home"]), None);
        assert!(is_under("/", "/"));
    }
}
