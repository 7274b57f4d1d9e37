//! How a task body reads its run: the run layer's side of [`BodyAccess`] (the definition layer's
//! view), on an attempt's [`ExecutionContext`]: its inputs, the channel as this attempt sees it
//! (its own writes first), upstream results.

use super::ExecutionContext;
use crate::definition::{AttemptError, BodyAccess};
use crate::graph::Source;
use crate::value::{Value, ValueError};

impl BodyAccess for ExecutionContext {
    fn task_id(&self) -> &str {
        ExecutionContext::task_id(self)
    }

    fn run_id(&self) -> &str {
        ExecutionContext::run_id(self)
    }

    fn attempt(&self) -> u32 {
        self.attempt
    }

    fn cycle(&self) -> u32 {
        self.cycle
    }

    fn max_cycles(&self) -> u32 {
        self.run.task(self.node).max_cycles()
    }

    fn channel_value(&self, key: &str) -> Option<Value> {
        let own = self
            .run
            .dynamic
            .channel_writes(self.node, self.stamp(), |writes| {
                writes
                    .iter()
                    .rev()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
            });
        match own {
            Some(write) => write,
            None => self.run.channel.value(key),
        }
    }

    fn channel_entries(&self) -> Vec<(String, Value)> {
        let entries = self.run.channel.entries();
        self.run
            .dynamic
            .channel_writes(self.node, self.stamp(), |writes| {
                crate::definition::overlay(entries, writes)
            })
    }

    fn channel_write(&self, key: String, value: Option<Value>) {
        self.record_channel_write(key, value);
    }

    fn result(&self, id: &str) -> Result<Value, ValueError> {
        if let Some(upstream) = &self.run.upstream {
            return match upstream.iter().find(|(up, _)| up == id) {
                Some((_, value)) => Ok(value.clone()),
                None => Err(ValueError::NoSuchResult {
                    task: id.to_owned(),
                    reason:
                        "out of process, a task sees only the results of its direct upstream tasks"
                            .to_owned(),
                }),
            };
        }
        let node = self.run.node_of(id)?;
        self.run.stored_result(node)
    }

    /// Upstream tasks without a result (a failure their group tolerated) are left out.
    fn upstream_ids(&self) -> Vec<&str> {
        let run = &self.run;
        match &run.upstream {
            Some(upstream) => upstream.iter().map(|(id, _)| id.as_str()).collect(),
            None => run
                .preds(self.node)
                .into_iter()
                .filter(|&p| run.result_value(p).is_some())
                .map(|p| run.task(p).id())
                .collect(),
        }
    }

    fn upstream(&self) -> Result<Vec<(&str, Value)>, ValueError> {
        let run = &self.run;
        match &run.upstream {
            Some(upstream) => Ok(upstream
                .iter()
                .map(|(id, value)| (id.as_str(), value.clone()))
                .collect()),
            None => Ok(run
                .preds(self.node)
                .into_iter()
                .filter_map(|p| Some((run.task(p).id(), run.result_value(p)?)))
                .collect()),
        }
    }

    fn ask(&self, request: crate::feedback::FeedbackRequest) -> crate::feedback::AnswerFuture {
        self.ask_for_task(&self.next_ask_key(), request)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    /// Its bound input, the result of the upstream task of that name, or the channel key.
    fn input(&self, index: usize) -> Result<(Value, &'static str), AttemptError> {
        let run = &self.run;
        let task = run.task(self.node);
        let param = &task.def.params[index];
        let missing = |hint: String| AttemptError::MissingInput {
            task: task.id().to_owned(),
            param: param.name.to_owned(),
            type_name: param.ty.name(),
            hint,
        };
        if let Some(value) = run.dynamic.override_of(self.node, param.name) {
            return Ok((value, param.name));
        }
        let value = match run.sources(self.node)[index] {
            Source::Bound(i) => task.inputs()[i as usize].1.clone(),
            Source::Result(producer) => run.result_value(producer).ok_or_else(|| {
                missing(format!(
                    "upstream task '{}' stored no result (a failure its group's policy tolerated?); read the results that exist with ctx.upstream()",
                    param.name
                ))
            })?,
            Source::Channel => run.channel.value(param.name).ok_or_else(|| {
                missing(format!(
                    "channel key '{}' is not set: no upstream task wrote it, and the run's initial channel does not have it",
                    param.name
                ))
            })?,
        };
        Ok((value, param.name))
    }
}
