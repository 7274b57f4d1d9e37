//! Images: make sure a task's image is on the daemon, according to its pull policy.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use bollard::query_parameters::CreateImageOptions;
use futures_util::StreamExt;

use crate::daemon::Daemon;
use crate::options::Pull;

/// Images known to be present, so `pull = "missing"` inspects each image once per handler.
#[derive(Default)]
pub(crate) struct KnownImages(Mutex<HashSet<String>>);

impl KnownImages {
    fn contains(&self, image: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(image)
    }

    fn insert(&self, image: &str) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(image.to_owned());
    }
}

/// Ensures `image` is on the daemon; the error says what is wrong and what to do.
pub(crate) async fn ensure(
    docker: &Daemon,
    image: &str,
    pull: Pull,
    known: &KnownImages,
) -> Result<(), String> {
    if pull != Pull::Always && known.contains(image) {
        return Ok(());
    }
    let inspection = docker
        .call(
            || format!("inspecting image {image}"),
            docker.inspect_image(image),
        )
        .await?;
    let present = match inspection {
        Ok(_) => true,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => false,
        Err(e) => return Err(format!("could not inspect image {image}: {e}")),
    };
    if present && pull != Pull::Always {
        known.insert(image);
        return Ok(());
    }
    if pull == Pull::Never {
        return Err(format!(
            "image {image} is not on the Docker daemon and the task says pull = \"never\"; build, load or import it first"
        ));
    }
    tracing::info!(target: "graflow::docker", %image, "pulling image");
    let options = CreateImageOptions {
        from_image: Some(image.to_owned()),
        ..Default::default()
    };
    let mut progress = docker.create_image(Some(options), None, None);
    while let Some(step) = progress.next().await {
        if let Err(e) = step {
            return Err(if present {
                format!("image {image} could not be pulled again (pull = \"always\"): {e}")
            } else {
                format!(
                    "image {image} is not on the Docker daemon and could not be pulled: {e}; build, load or import it, or check the name"
                )
            });
        }
    }
    known.insert(image);
    Ok(())
}
