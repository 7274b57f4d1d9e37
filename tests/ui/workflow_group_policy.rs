use graflow::prelude::*;

#[task]
fn a() -> u32 {
    1
}

#[task]
fn b() -> u32 {
    2
}

#[task]
fn c() -> u32 {
    3
}

fn main() {
    let _too_many = workflow! { (a | b).policy(at_least(3)); };
    let _zero = workflow! { (a | b).policy(at_least(0)); };
    let _not_a_member = workflow! { (a | b) >> c; (a | b).policy(critical(c)); };
    let _single = workflow! { (a).policy(best_effort); };
    let _unknown = workflow! { (a | b).retries(3); };
    let _twice = workflow! { (a | b).policy(strict).policy(best_effort); };
    let _not_a_policy = workflow! { (a | b).policy(42u32); };
}

#[task(max_cycles = 0)]
fn never() -> u32 {
    0
}
