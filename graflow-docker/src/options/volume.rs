//! A bind mount a task asks for: `/host:/container[:ro|rw]`, read from the `volumes` option.

/// A bind mount `/host:/container[:ro|rw]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Volume {
    /// Absolute path on the daemon's host.
    pub host: String,
    /// Absolute path in the container.
    pub container: String,
    /// Mounted read-only.
    pub read_only: bool,
}

impl Volume {
    /// Parses `/host:/container[:ro|rw]`.
    pub fn parse(spec: &str) -> Result<Volume, String> {
        let parts: Vec<&str> = spec.split(':').collect();
        let (host, container, read_only) = match parts.as_slice() {
            [host, container] => (*host, *container, false),
            [host, container, "ro"] => (*host, *container, true),
            [host, container, "rw"] => (*host, *container, false),
            _ => {
                return Err(format!(
                    "volume {spec:?} is not \"/host/path:/container/path\" optionally followed by \":ro\" or \":rw\""
                ));
            }
        };
        if !host.starts_with('/') || !container.starts_with('/') {
            return Err(format!("volume {spec:?}: both paths must be absolute"));
        }
        Ok(Volume {
            host: host.to_owned(),
            container: container.to_owned(),
            read_only,
        })
    }

    /// The `/host:/container:ro|rw` form, as `volumes` takes it (for messages; the container
    /// gets a bind mount of the Mounts API).
    pub fn bind(&self) -> String {
        format!(
            "{}:{}:{}",
            self.host,
            self.container,
            if self.read_only { "ro" } else { "rw" }
        )
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn volumes_read_back(host in "(/[a-z0-9._-]{0,8}){1,3}", container in "(/[a-z0-9._-]{0,8}){1,3}", read_only in any::<bool>()) {
            let volume = Volume::parse(&format!("{host}:{container}:{}", if read_only { "ro" } else { "rw" })).unwrap();
            prop_assert_eq!(&volume.host, &host);
            prop_assert_eq!(volume.read_only, read_only);
            prop_assert_eq!(Volume::parse(&volume.bind()), Ok(volume));
        }

        /// Any text is a volume or says why not.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,40}") {
            let _ = Volume::parse(&text);
        }
    }
}
