//! When a task's image is pulled: the `pull` option.

/// When to pull the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Pull {
    /// Pull only when the image is not present (the default).
    Missing,
    /// Pull before every task.
    Always,
    /// Never pull; a missing image is an error.
    Never,
}

impl Pull {
    /// Reads the `pull` option's text: `missing`, `always` or `never`.
    pub(super) fn from_option(text: &str) -> Result<Pull, String> {
        match text {
            "missing" => Ok(Pull::Missing),
            "always" => Ok(Pull::Always),
            "never" => Ok(Pull::Never),
            other => Err(format!(
                "`pull` is \"missing\", \"always\" or \"never\", not {other:?}"
            )),
        }
    }
}
