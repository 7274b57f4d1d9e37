use graflow::prelude::*;

#[task]
fn numbers() -> Vec<u64> {
    (1..=10).collect()
}

#[task(retries = 2, timeout = "5s")]
async fn total(numbers: Vec<u64>) -> u64 {
    numbers.iter().sum()
}

#[task]
fn largest(numbers: Vec<u64>) -> Option<u64> {
    numbers.iter().copied().max()
}

#[graflow::main]
fn main() -> graflow::Result<()> {
    let wf = workflow! { name: "quickstart"; numbers >> (total | largest); };
    let report = WorkflowEngine::new().run(&wf, RunOptions::new())?;
    println!("{report}total = {}", report.result::<u64>("total")?);
    Ok(())
}
