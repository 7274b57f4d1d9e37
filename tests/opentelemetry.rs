//! With `tracing-opentelemetry`, a run is one trace: a `run` span with a `task` span per
//! attempt as its child, carrying the task, its handler and the attempt, on every handler
//! (inline synchronous bodies, async bodies, retries, the process handler).

use std::time::Duration;

use graflow::prelude::*;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{KeyValue, Value as OtelValue};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt;

graflow::enable_test_runner!();

#[task]
fn extract() -> u32 {
    1
}

#[task(retries = 1)]
fn transform(ctx: &TaskContext, extract: u32) -> Result<u32, String> {
    if ctx.attempt() == 1 {
        return Err("try again".to_owned());
    }
    Ok(extract + 1)
}

#[task]
async fn enrich(extract: u32) -> u32 {
    tokio::time::sleep(Duration::from_millis(5)).await;
    extract + 2
}

#[task(handler = "process")]
fn load(transform: u32, enrich: u32) -> u32 {
    transform + enrich
}

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a OtelValue> {
    span.attributes
        .iter()
        .find(|kv: &&KeyValue| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

#[test]
fn a_run_is_exported_as_one_trace_with_a_child_span_per_attempt() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("graflow-test")));
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let wf = workflow! { name: "traced"; extract >> (transform | enrich) >> load; };
    let report = WorkflowEngine::new().run(&wf, RunOptions::new()).unwrap();
    assert_eq!(report.result::<u32>("load").unwrap(), 5);
    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();

    let runs: Vec<&SpanData> = spans.iter().filter(|s| s.name == "run").collect();
    assert_eq!(
        runs.len(),
        1,
        "{:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let run = runs[0];
    assert_eq!(
        attribute(run, "run_id").map(|v| v.as_str().into_owned()),
        Some(report.run_id().to_owned())
    );
    assert_eq!(
        attribute(run, "workflow").map(|v| v.as_str().into_owned()),
        Some("traced".to_owned())
    );

    let tasks: Vec<&SpanData> = spans
        .iter()
        .filter(|s| attribute(s, "task").is_some())
        .collect();
    let mut seen: Vec<(String, String, i64)> = tasks
        .iter()
        .map(|s| {
            assert_eq!(s.parent_span_id, run.span_context.span_id(), "{s:?}");
            assert_eq!(s.span_context.trace_id(), run.span_context.trace_id());
            assert!(s.start_time >= run.start_time && s.end_time <= run.end_time);
            let attempt = match attribute(s, "attempt") {
                Some(OtelValue::I64(n)) => *n,
                other => panic!("attempt is {other:?}"),
            };
            (
                attribute(s, "task").unwrap().as_str().into_owned(),
                attribute(s, "handler").unwrap().as_str().into_owned(),
                attempt,
            )
        })
        .collect();
    seen.sort();
    let expected = [
        ("enrich", "direct", 1),
        ("extract", "direct", 1),
        ("load", "process", 1),
        ("transform", "direct", 1),
        ("transform", "direct", 2),
    ];
    assert_eq!(
        seen,
        expected.map(|(t, h, a)| (t.to_owned(), h.to_owned(), a))
    );
    // Each attempt's span is named after its task.
    for s in &tasks {
        assert_eq!(s.name, attribute(s, "task").unwrap().as_str());
    }
}
