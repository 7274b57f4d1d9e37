use graflow::prelude::*;

#[task]
fn fetch() -> Vec<u64> {
    (1..=10).collect()
}

#[task]
fn double(fetch: Vec<u64>) -> Vec<u64> {
    fetch.iter().map(|x| x * 2).collect()
}

#[task]
async fn total(double: Vec<u64>) -> u64 {
    double.iter().sum()
}

fn main() -> graflow::Result<()> {
    let wf = workflow! { name: "quickstart"; fetch >> double >> total; };
    let report = WorkflowEngine::new().run(&wf)?;
    println!("{report}");
    println!("total = {}", report.result::<u64>("total")?);
    Ok(())
}
