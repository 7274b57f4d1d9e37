use graflow::prelude::*;

struct Pipeline;

impl Pipeline {
    #[task]
    fn step(&self) -> u32 {
        1
    }
}

fn main() {}
