use graflow::prelude::*;

struct Connection;

#[derive(serde::Serialize, serde::Deserialize)]
struct Rows(Vec<u32>);

#[task]
fn query(conn: Connection, limit: u32) -> Rows {
    let _ = (conn, limit);
    Rows(vec![])
}

#[task]
fn open() -> std::rc::Rc<u32> {
    std::rc::Rc::new(1)
}

fn main() {}
