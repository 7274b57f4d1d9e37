use graflow::prelude::*;

#[task]
fn identity<T: serde::Serialize>(value: T) -> T {
    value
}

fn main() {}
