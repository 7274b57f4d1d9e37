use graflow::prelude::*;

#[task(crate = 5)]
fn numbered() -> u8 {
    1
}

#[task(crate = "not a path!")]
fn spaced() -> u8 {
    1
}

#[graflow::main(crate = 3)]
fn main() {
    let _ = workflow! { crate: graflow; crate: graflow; numbered; };
}
