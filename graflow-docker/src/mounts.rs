//! What a container sees of this machine: this program's executable, mounted read-only as the
//! runner, and the task's volumes, all as bind mounts of the Mounts API. With it Docker refuses
//! a host path that does not exist instead of creating it (as the legacy `binds` do, as root);
//! on a local daemon the handler checks the host paths itself at validation, before anything
//! runs, so the error names the task and the volume.

use std::path::PathBuf;

use bollard::models::{Mount, MountType};
use graflow_core::backend::runner_command;

use crate::options::Volume;
use crate::paths::RUNNER_PATH;

/// A bind mount of `host` at `container`.
fn bind(host: &str, container: &str, read_only: bool) -> Mount {
    Mount {
        typ: Some(MountType::BIND),
        source: Some(host.to_owned()),
        target: Some(container.to_owned()),
        read_only: Some(read_only),
        ..Default::default()
    }
}

/// This program's executable and the arguments that make it a runner; the error says why it
/// cannot be mounted.
pub(crate) fn runner() -> Result<(String, Vec<String>), String> {
    let (exe, args) = runner_command().map_err(|e| {
        format!("cannot find this program's executable to mount as the runner: {e}")
    })?;
    let is_file = std::fs::metadata(&exe).is_ok_and(|m| m.is_file());
    if !is_file {
        return Err(format!(
            "this program's executable {} is not a regular file (deleted or replaced since it started?), so it cannot be mounted into the container as {RUNNER_PATH}; run the program again from its file",
            exe.display()
        ));
    }
    let exe = exe.into_os_string().into_string().map_err(|exe| {
        format!(
            "this program's executable path {} is not UTF-8, which Docker needs to mount it; run it from a UTF-8 path",
            PathBuf::from(exe).display()
        )
    })?;
    Ok((exe, args))
}

/// The runner binary (read-only at [`RUNNER_PATH`]) and the volumes.
pub(crate) fn all(exe: &str, volumes: &[Volume]) -> Vec<Mount> {
    std::iter::once(bind(exe, RUNNER_PATH, true))
        .chain(
            volumes
                .iter()
                .map(|v| bind(&v.host, &v.container, v.read_only)),
        )
        .collect()
}

/// One problem per volume whose host path does not exist here (meaningful when the daemon is
/// local). A path this process may not look at is left to the daemon, which may.
pub(crate) fn missing_host_paths(volumes: &[Volume]) -> Vec<String> {
    volumes
        .iter()
        .filter_map(|v| match std::fs::metadata(&v.host) {
            Ok(_) => None,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => None,
            Err(e) => Some(format!(
                "volume {:?}: the host path {} does not exist ({e}); create it first (the docker handler does not create host paths)",
                v.bind(),
                v.host
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runner_is_read_only_and_volumes_keep_their_mode() {
        let volumes = [
            Volume::parse("/data:/data:ro").unwrap(),
            Volume::parse("/tmp:/scratch").unwrap(),
        ];
        let mounts = all("/usr/bin/app", &volumes);
        assert_eq!(mounts.len(), 3);
        assert_eq!(mounts[0].source.as_deref(), Some("/usr/bin/app"));
        assert_eq!(mounts[0].target.as_deref(), Some(RUNNER_PATH));
        assert_eq!(mounts[0].read_only, Some(true));
        assert_eq!(mounts[1].read_only, Some(true));
        assert_eq!(mounts[2].read_only, Some(false));
        assert!(mounts.iter().all(|m| m.typ == Some(MountType::BIND)));
    }

    #[test]
    fn a_missing_host_path_is_named_and_not_created() {
        let missing = std::env::temp_dir().join(format!("graflow-missing-{}", std::process::id()));
        let volumes = [
            Volume::parse(&format!("{}:/data", missing.display())).unwrap(),
            Volume::parse("/tmp:/scratch").unwrap(),
        ];
        let problems = missing_host_paths(&volumes);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains(&format!(
                "the host path {} does not exist",
                missing.display()
            )),
            "{problems:?}"
        );
        assert!(!missing.exists());
    }

    #[test]
    fn this_test_binary_can_be_the_runner() {
        let (exe, _) = runner().unwrap();
        assert!(std::path::Path::new(&exe).is_file());
    }
}
