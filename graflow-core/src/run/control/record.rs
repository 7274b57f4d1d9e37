//! What one attempt asks of its run, recorded on its ExecutionContext: validated when asked (or when a runner's outcome brings it), kept until the attempt ends, in their wire form for runners.

use super::{
    Control, ControlError, EncodedValue, End, ExecutionContext, NodeOptions, Requests, Stamp, Task,
    Value, ValueError, definitions,
};

impl ExecutionContext {
    pub(super) fn asking(&self) -> String {
        self.task_id().to_owned()
    }

    pub(crate) fn stamp(&self) -> Stamp {
        (self.cycle(), self.attempt())
    }

    /// Adds `task` to the run: it runs after this task, and this task's successors wait for it
    /// too; with `goto`, it runs instead of them.
    pub fn next_task(&self, task: Task, goto: bool) -> Result<(), ControlError> {
        let added = self.run.prepare_added(self.node, task, goto)?;
        self.run.dynamic.record(self.node, self.stamp(), |r| {
            r.added_ids.insert(added.task.id().to_owned());
            r.added.push(added);
        });
        Ok(())
    }

    /// Runs task `id` next, instead of this task's successors.
    pub fn goto(&self, id: &str) -> Result<(), ControlError> {
        let known = self.run.index_of(id).is_some() || self.run.registry.is_none();
        if !known {
            return Err(ControlError::NoSuchTask {
                task: self.asking(),
                target: id.to_owned(),
            });
        }
        let mut conflict = None;
        self.run.dynamic.record(self.node, self.stamp(), |r| {
            if r.iterate.is_some() {
                conflict = Some("goto after next_iteration; ask for one of them");
            } else {
                r.goto = Some(id.to_owned());
            }
        });
        self.conflict(conflict)
    }

    /// Runs this task again once it finished, with `inputs` bound, before its successors.
    pub fn next_iteration(&self, inputs: Vec<(String, Value)>) -> Result<(), ControlError> {
        if self.cycle() >= self.task().max_cycles() {
            return Err(ControlError::CycleLimit {
                task: self.asking(),
                runs: self.cycle(),
            });
        }
        let params = self.task().def.params;
        if let Some((name, _)) = inputs
            .iter()
            .find(|(name, _)| !params.iter().any(|p| p.name == name))
        {
            return Err(ControlError::Conflict {
                task: self.asking(),
                message: format!(
                    "next_iteration binds `{name}`, which is not a parameter of the task (parameters: {})",
                    params.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
                ),
            });
        }
        if let Some((name, value, ty)) = inputs.iter().find_map(|(name, value)| {
            let param = params.iter().find(|p| p.name == name)?;
            (!value.matches(param.ty)).then_some((name, value, param.ty))
        }) {
            return Err(ControlError::Conflict {
                task: self.asking(),
                message: format!(
                    "next_iteration binds `{name}` to a `{}`, but the parameter is a `{}`",
                    value.type_name(),
                    ty.name()
                ),
            });
        }
        let mut conflict = None;
        self.run.dynamic.record(self.node, self.stamp(), |r| {
            if r.goto.is_some() || r.added.iter().any(|a| a.goto) {
                conflict = Some("next_iteration after a goto; ask for one of them");
            } else {
                let merged = r.iterate.get_or_insert_with(Vec::new);
                for (name, value) in inputs {
                    merged.retain(|(k, _)| *k != name);
                    merged.push((name, value));
                }
            }
        });
        self.conflict(conflict)
    }

    /// Ends the run once this task finished: as a success (`Terminate`) or a failure.
    pub(crate) fn end(&self, end: End) {
        self.run.dynamic.record(self.node, self.stamp(), |r| {
            // A cancel wins over a terminate.
            if !matches!(r.end, Some(End::Cancel(_))) {
                r.end = Some(end);
            }
        });
    }

    /// Asks for a checkpoint once this task completed.
    pub fn checkpoint(&self) -> Result<(), ControlError> {
        if !self.run.checkpoints && self.run.registry.is_some() {
            return Err(ControlError::NoCheckpoints {
                task: self.asking(),
            });
        }
        self.run
            .dynamic
            .record(self.node, self.stamp(), |r| r.checkpoint = true);
        Ok(())
    }

    pub(super) fn conflict(&self, message: Option<&str>) -> Result<(), ControlError> {
        match message {
            None => Ok(()),
            Some(message) => Err(ControlError::Conflict {
                task: self.asking(),
                message: message.to_owned(),
            }),
        }
    }

    /// The requests this attempt made, taken (a runner sends them back with its outcome).
    pub(crate) fn take_requests(&self) -> Option<Requests> {
        self.run.dynamic.take(self.node, self.stamp())
    }

    /// Records a channel write of this attempt (`None`: a deletion): the run's channel takes
    /// it when the attempt succeeds.
    pub(crate) fn record_channel_write(&self, key: String, value: Option<Value>) {
        self.run
            .dynamic
            .record(self.node, self.stamp(), |r| r.channel.push((key, value)));
    }

    /// This attempt's channel writes, last write per key, in the order of their last writes
    /// (what a runner sends with its outcome); taken.
    pub(crate) fn take_channel_writes(&self) -> Vec<(String, Option<Value>)> {
        let writes = self
            .run
            .dynamic
            .take_channel_writes(self.node, self.stamp());
        let mut last: Vec<(String, Option<Value>)> = Vec::with_capacity(writes.len());
        for (key, value) in writes {
            last.retain(|(k, _)| *k != key);
            last.push((key, value));
        }
        last
    }
}

/// The longest message a runner's terminate or cancel may carry.
pub(super) const MAX_MESSAGE: usize = 4096;

/// `message`, cut to [`MAX_MESSAGE`] bytes (on a character boundary) with a note.
pub(super) fn bounded(mut message: String) -> String {
    if graflow_protocol::text::truncate_in_place(&mut message, MAX_MESSAGE) > 0 {
        message.push_str(" [cut]");
    }
    message
}

/// The largest encoded options of one added task.
pub(super) const MAX_OPTIONS: usize = 64 << 10;

impl ExecutionContext {
    /// Applies requests that came back from a runner with its outcome, validated as if the
    /// task had made them here.
    pub(crate) fn apply_control(&self, control: Vec<Control>) -> Result<(), ControlError> {
        let unreadable = |message: String| ControlError::Unreadable {
            task: self.asking(),
            message,
        };
        let values = |inputs: Vec<(String, EncodedValue)>| -> Vec<(String, Value)> {
            inputs
                .into_iter()
                .map(|(name, encoded)| (name, Value::from_encoded(encoded)))
                .collect()
        };
        for request in control {
            match request {
                Control::AddTask {
                    function,
                    id,
                    handler,
                    goto,
                    inputs,
                    options,
                } => {
                    let def = definitions().find(|d| d.name == function).ok_or_else(|| {
                        unreadable(format!(
                            "it added a task of function `{}`, which this program does not have",
                            bounded(function.clone())
                        ))
                    })?;
                    let bytes = options;
                    if bytes.len() > MAX_OPTIONS {
                        return Err(unreadable(format!(
                            "the options of added task '{}' take {} bytes (at most {MAX_OPTIONS})",
                            bounded(id),
                            bytes.len()
                        )));
                    }
                    let (options, used): (NodeOptions, usize) = bincode::serde::decode_from_slice(
                        &bytes,
                        bincode::config::standard().with_limit::<MAX_OPTIONS>(),
                    )
                    .map_err(|e| {
                        unreadable(format!(
                            "the options of added task '{}': {e}",
                            bounded(id.clone())
                        ))
                    })?;
                    if used != bytes.len() {
                        return Err(unreadable(
                            "trailing bytes after an added task's options".to_owned(),
                        ));
                    }
                    let custom = handler != (def.handler)() || options.has_config();
                    let task = Task::restore(def, id, handler, values(inputs), options);
                    let asking = self.task();
                    let task = if !custom {
                        task.on_handler_of(asking)
                    } else if task.handler() == asking.handler()
                        && task.handler_config() == asking.handler_config()
                    {
                        task
                    } else {
                        return Err(ControlError::Untrusted {
                            task: self.asking(),
                            handler: asking.handler().to_owned(),
                            added: bounded(task.id().to_owned()),
                            // (Never the configuration itself: it may hold secrets.)
                            wanted: format!(
                                "handler '{}'{}",
                                bounded(task.handler().to_owned()),
                                if task.handler_config() == asking.handler_config() {
                                    ""
                                } else {
                                    " with a configuration of its own"
                                }
                            ),
                        });
                    };
                    self.next_task(task, goto)?;
                }
                Control::Goto { id } => self.goto(&id)?,
                Control::NextIteration { inputs } => self.next_iteration(values(inputs))?,
                Control::Terminate { message } => self.end(End::Terminate(bounded(message))),
                Control::Cancel { message } => self.end(End::Cancel(bounded(message))),
                Control::Checkpoint => self.checkpoint()?,
                _ => return Err(unreadable("a request of a newer protocol".to_owned())),
            }
        }
        Ok(())
    }

    /// This attempt's requests, taken, in wire form (a runner sends them back).
    pub(crate) fn control_to_wire(&self) -> Result<Vec<Control>, ValueError> {
        let Some(requests) = self.take_requests() else {
            return Ok(Vec::new());
        };
        let encode =
            |inputs: Vec<(String, Value)>| -> Result<Vec<(String, EncodedValue)>, ValueError> {
                inputs
                    .into_iter()
                    .map(|(name, value)| Ok((name, value.encode()?)))
                    .collect()
            };
        let mut wire = Vec::new();
        for added in requests.added {
            let task = added.task;
            let options =
                bincode::serde::encode_to_vec(task.node_options(), bincode::config::standard())
                    .map_err(|e| ValueError::Codec {
                        type_name: "graflow::NodeOptions".to_owned(),
                        message: e.to_string(),
                    })?;
            wire.push(Control::AddTask {
                function: task.name().to_owned(),
                id: task.id().to_owned(),
                handler: task.handler().to_owned(),
                goto: added.goto,
                inputs: encode(
                    task.bound_inputs()
                        .map(|(k, v)| (k.to_owned(), v.clone()))
                        .collect(),
                )?,
                options,
            });
        }
        if let Some(id) = requests.goto {
            wire.push(Control::Goto { id });
        }
        if let Some(inputs) = requests.iterate {
            wire.push(Control::NextIteration {
                inputs: encode(inputs)?,
            });
        }
        match requests.end {
            Some(End::Terminate(message)) => wire.push(Control::Terminate { message }),
            Some(End::Cancel(message)) => wire.push(Control::Cancel { message }),
            None => {}
        }
        if requests.checkpoint {
            wire.push(Control::Checkpoint);
        }
        Ok(wire)
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_MESSAGE, bounded};

    #[test]
    fn a_long_message_is_cut_on_a_character_boundary_with_a_note() {
        assert_eq!(bounded("short".to_owned()), "short");
        let exact = "x".repeat(MAX_MESSAGE);
        assert_eq!(bounded(exact.clone()), exact);
        // A 3-byte character straddles the limit: the cut falls before it.
        let long = format!("{}€€", "x".repeat(MAX_MESSAGE - 1));
        let cut = bounded(long);
        assert!(cut.ends_with(" [cut]"), "{}", &cut[cut.len() - 10..]);
        let kept = cut.trim_end_matches(" [cut]");
        assert_eq!(kept.len(), MAX_MESSAGE - 1);
        assert!(kept.chars().all(|c| c == 'x'));
    }
}
