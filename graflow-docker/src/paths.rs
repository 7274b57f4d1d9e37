//! The container's filesystem as the handler lays it out: `/graflow` belongs to the handler and
//! this program is mounted in it as the runner; and how a container path an option names is
//! read. The lowest layer: the options check paths against it, the mounts and the container
//! put the runner there.

/// The container directory that belongs to the handler (the runner is mounted in it); no volume
/// may be mounted on it, under it, or on `/`.
pub(crate) const RESERVED_DIR: &str = "/graflow";

/// Where this binary is mounted in the container.
pub(crate) const RUNNER_PATH: &str = "/graflow/runner";

/// The components of the absolute container path `path` (empty and `.` ones dropped), or why it
/// is not one: relative, a `..`, a NUL byte. `what` names the path in the message.
pub(crate) fn components<'a>(what: &str, path: &'a str) -> Result<Vec<&'a str>, String> {
    if !path.starts_with('/') {
        return Err(format!("{what} must be an absolute path in the container"));
    }
    if path.contains('\0') {
        return Err(format!("{what} contains a NUL byte"));
    }
    let parts: Vec<&str> = path
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(format!("{what} must not contain `..`"));
    }
    Ok(parts)
}

/// Whether the container path with these components is the runner or under it.
pub(crate) fn is_runner(parts: &[&str]) -> bool {
    let runner: Vec<&str> = RUNNER_PATH.split('/').filter(|p| !p.is_empty()).collect();
    parts.starts_with(&runner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runner_is_in_the_reserved_directory() {
        let runner = components("the runner", RUNNER_PATH).unwrap();
        assert!(is_runner(&runner));
        assert_eq!(
            components("the directory", RESERVED_DIR).unwrap(),
            runner[..1]
        );
    }

    #[test]
    fn container_paths_are_absolute_without_dot_dot_or_nul() {
        assert_eq!(components("p", "//a/./b/").unwrap(), ["a", "b"]);
        assert_eq!(components("p", "/").unwrap(), Vec::<&str>::new());
        assert!(components("p", "a/b").is_err());
        assert!(components("p", "/a/../b").is_err());
        assert!(components("p", "/a\0").is_err());
        assert!(is_runner(&["graflow", "runner", "x"]));
        assert!(!is_runner(&["graflow"]));
    }
}
