//! A run exported as an OpenTelemetry trace through `tracing-opentelemetry`: one `run` span,
//! and a span per attempt as its child, with the task, its handler and the attempt.
//!
//! The exporter here keeps the spans in memory and the example prints them as a tree; a real
//! program hands `with_batch_exporter` an OTLP exporter (`opentelemetry-otlp`) instead.

use std::time::Duration;

use graflow::prelude::*;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt;

#[task]
fn extract() -> Vec<u32> {
    vec![1, 2, 3]
}

#[task(retries = 1)]
fn transform(ctx: &TaskContext, extract: Vec<u32>) -> Result<u32, String> {
    if ctx.attempt() == 1 {
        return Err("first attempt fails".to_owned());
    }
    Ok(extract.iter().sum())
}

#[task(handler = "process")]
async fn load(transform: u32) -> u32 {
    tokio::time::sleep(Duration::from_millis(10)).await;
    transform * 10
}

fn attribute(span: &SpanData, key: &str) -> String {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
        .unwrap_or_default()
}

#[graflow::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("my-app")));
    tracing::subscriber::set_global_default(subscriber)?;

    let wf = workflow! { name: "etl"; extract >> transform >> load; };
    let report = WorkflowEngine::new().run(&wf, RunOptions::new())?;
    provider.force_flush()?;

    let spans = exporter.get_finished_spans()?;
    let run = spans
        .iter()
        .find(|s| s.name == "run")
        .ok_or("no run span")?;
    println!(
        "trace {} (run {}, workflow {})",
        run.span_context.trace_id(),
        attribute(run, "run_id"),
        attribute(run, "workflow")
    );
    let mut children: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.parent_span_id == run.span_context.span_id())
        .collect();
    children.sort_by_key(|s| s.start_time);
    for span in children {
        let took = span
            .end_time
            .duration_since(span.start_time)
            .unwrap_or_default();
        println!(
            "  └─ {:<10} handler={:<8} attempt={}  {took:?}",
            span.name,
            attribute(span, "handler"),
            attribute(span, "attempt")
        );
    }
    println!("load = {}", report.result::<u32>("load")?);
    Ok(())
}
