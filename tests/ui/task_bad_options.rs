use graflow::prelude::*;

fn make_image() -> String {
    "python".to_owned()
}

#[task(retries = "three", timeout = "5 parsecs", image = make_image(), sandbox, retries = 2)]
fn configured() -> u32 {
    1
}

#[task(id = "", retry_backoff = 0.5, writes = [1, 2])]
fn more() -> u32 {
    1
}

fn main() {
    // The function is still emitted, so the rest of the crate compiles against it.
    let _ = configured() + more();
}
