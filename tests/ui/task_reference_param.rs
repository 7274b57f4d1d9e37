use graflow::prelude::*;

#[task]
fn greet(name: &str, (a, b): (u32, u32)) -> String {
    format!("{name} {a} {b}")
}

fn main() {}
