use graflow::prelude::*;

#[task]
fn a() -> u32 {
    1
}

#[task]
fn b() -> u32 {
    2
}

fn main() {
    let _no_parens = workflow! { a | b; };
    let _called = workflow! { a() >> b; };
    let _empty = workflow! { name: "nothing"; };
    let _cycle = workflow! { a >> b; b >> a; };
}
