use graflow::prelude::*;

#[task]
fn fetch() -> u32 {
    1
}

fn not_a_task(fetch: u32) -> u32 {
    fetch
}

struct NotATaskEither;

fn main() {
    let _a = workflow! { fetch >> not_a_task; };
    let _b = workflow! { fetch >> NotATaskEither; };
}
