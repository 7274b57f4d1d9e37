//! `#[graflow::main]` on mains of the usual result types, `?` and `return` inside: compiles and
//! runs as before.

#[derive(Debug)]
struct MyError;

#[graflow::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let n: u32 = "7".parse()?;
    if n == 7 {
        return Ok(());
    }
    Err("unreachable".into())
}

#[allow(dead_code)]
fn other() -> Result<(), MyError> {
    Ok(())
}
