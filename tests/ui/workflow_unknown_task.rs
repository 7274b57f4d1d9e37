use graflow::prelude::*;

#[task]
fn fetch() -> u32 {
    1
}

fn main() {
    let _wf = workflow! { fetch >> nope; };
}
