//! The report as JSON: per task timings, handler, attempts and error chain; groups; written
//! whole by `save_json`; hostile ids stay valid JSON.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use graflow::prelude::*;
use serde_json::Value as Json;

mod common;

use common::{DiskFull, SaveFailed};

graflow::enable_test_runner!();

#[task]
async fn load() -> Vec<u32> {
    tokio::time::sleep(Duration::from_millis(30)).await;
    vec![1, 2, 3]
}

static ATTEMPTS: AtomicU32 = AtomicU32::new(0);

#[task(retries = 1)]
fn train(ctx: &TaskContext, load: Vec<u32>) -> Result<u32, String> {
    ATTEMPTS.fetch_add(1, Ordering::SeqCst);
    if ctx.attempt() == 1 {
        return Err("first attempt fails".to_owned());
    }
    Ok(load.iter().sum())
}

#[task]
fn save(train: u32) -> Result<u32, SaveFailed> {
    let _ = train;
    Err(SaveFailed(DiskFull))
}

#[task]
fn mirror(train: u32) -> u32 {
    train
}

fn parse(text: &str) -> Json {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

fn task<'a>(json: &'a Json, id: &str) -> &'a Json {
    json["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("no task {id} in {json}"))
}

#[test]
fn the_json_report_has_each_tasks_timings_handler_attempts_and_error_chain() {
    let wf = workflow! { name: "json"; load >> train >> (save | mirror).name("out").policy(best_effort); };
    let report = WorkflowEngine::new().run(&wf, RunOptions::new()).unwrap();
    let json = parse(&report.to_json());
    assert_eq!(json["format"], 1);
    assert_eq!(json["workflow"], "json");
    assert_eq!(json["run_id"], report.run_id());
    assert_eq!(json["status"], "succeeded");
    assert_eq!(json["counts"]["succeeded"], 3);
    assert_eq!(json["counts"]["failed"], 1);
    let started = json["started_at"].as_str().unwrap();
    assert!(started.ends_with('Z') && started.contains('T'), "{started}");
    let unix_ms = json["started_at_unix_ms"].as_u64().unwrap();
    let expected = report
        .started_at()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert_eq!(unix_ms, expected);
    assert!(json["elapsed_ms"].as_f64().unwrap() >= 30.0);

    let load = task(&json, "load");
    assert_eq!(load["handler"], "direct");
    assert_eq!(load["function"], "report_json::load");
    assert_eq!(load["status"], "succeeded");
    assert_eq!(load["attempts"], 1);
    assert!(load["duration_ms"].as_f64().unwrap() >= 30.0);
    let start = report.task("load").unwrap().start.unwrap().as_secs_f64() * 1e3;
    assert!((load["start_ms"].as_f64().unwrap() - start).abs() < 1e-6);
    assert!(load["error"].is_null());
    assert_eq!(load["error_chain"], serde_json::json!([]));
    assert_eq!(load["result_type"], "alloc::vec::Vec<u32>");

    let train = task(&json, "train");
    assert_eq!(train["attempts"], 2);
    assert!(train["start_ms"].as_f64().unwrap() >= load["duration_ms"].as_f64().unwrap());

    let save = task(&json, "save");
    assert_eq!(save["status"], "failed");
    assert_eq!(save["tolerated"], true);
    let chain: Vec<&str> = save["error_chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(chain.len() >= 3, "{chain:?}");
    assert!(chain.contains(&"could not save the model"), "{chain:?}");
    assert_eq!(chain.last(), Some(&"disk full"));
    assert_eq!(save["error"], chain.join(": "));

    let group = &json["groups"].as_array().unwrap()[0];
    assert_eq!(group["name"], "out");
    assert_eq!(group["policy"], "best_effort");
    assert_eq!(group["verdict"], "passed");
    assert_eq!(group["failed"][0]["task"], "save");
}

#[test]
fn save_json_writes_the_whole_report_and_says_where_it_could_not() {
    let wf = workflow! { load >> train };
    let report = WorkflowEngine::new().run(&wf, RunOptions::new()).unwrap();
    let dir = std::env::temp_dir().join(format!("graflow-json-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("report.json");
    report.save_json(&path).unwrap();
    let json = parse(&std::fs::read_to_string(&path).unwrap());
    assert_eq!(json["run_id"], report.run_id());
    assert_eq!(json["tasks"].as_array().unwrap().len(), 2);
    // No temporary file is left beside it.
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(left.len(), 1);

    let error = report
        .save_json(dir.join("no-such-dir").join("report.json"))
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("no-such-dir"), "{message}");
    assert!(message.contains(report.run_id()), "{message}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failed_run_and_hostile_ids_still_make_valid_json() {
    let hostile = "q\"uote\\ \n}{ ]\u{0}";
    let mut wf = Workflow::builder("hostile \"name\"");
    let a = wf.add(load::task().with_id(hostile));
    let c = wf.add(save::task().with_input("train", 1u32));
    wf.chain(&[a, c]);
    let error = WorkflowEngine::new()
        .run(&wf.build(), RunOptions::new())
        .unwrap_err();
    let report = error.report().unwrap();
    let json = parse(&report.to_json());
    assert_eq!(json["status"], "failed");
    assert_eq!(json["workflow"], "hostile \"name\"");
    assert_eq!(task(&json, hostile)["status"], "succeeded");
    assert_eq!(task(&json, "save")["tolerated"], false);
    // `Serialize` gives the same document.
    let value = serde_json::to_value(report).unwrap();
    assert_eq!(value["tasks"][0]["id"], hostile);
    assert_eq!(
        value["tasks"][1]["error_chain"],
        json["tasks"][1]["error_chain"]
    );
    assert_eq!(
        value.as_object().unwrap().keys().collect::<Vec<_>>(),
        json.as_object().unwrap().keys().collect::<Vec<_>>()
    );
}
