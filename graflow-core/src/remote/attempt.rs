//! The run-state side of a remote attempt: the invocation built from what the run knows, and
//! the outcome applied back to it.

use graflow_protocol::{Control, EncodedValue, Failure, Invocation, Outcome, PROTOCOL_VERSION};

use crate::channel::Channel;
use crate::definition::{AttemptError, BodyAccess, BoxError, Chain, HandlerFailure};
use crate::graph::Task;
use crate::run::ExecutionContext;
use crate::run::control::refused;
use crate::value::{Value, ValueError};

use super::build_id;

/// The invocation of `task` for the attempt `ctx` stands for: its inputs resolved and encoded,
/// a snapshot of the run's channel, and the direct upstream results for a task that takes a
/// `&TaskContext`. Its `nonce`, fresh for this attempt, tells the attempt's outcome from any
/// other's: check the answer with it ([`apply_outcome_bytes`](super::apply_outcome_bytes)).
pub fn invocation(task: &Task, ctx: &ExecutionContext) -> Result<Invocation, AttemptError> {
    let nonce = attempt_nonce();
    let cannot_encode = |what: String| {
        move |e: ValueError| {
            AttemptError::handler_source(
                task.id(),
                task.handler(),
                format!("cannot send {what}"),
                e,
            )
            .with_kind(HandlerFailure::InvalidConfig)
        }
    };
    let mut inputs = Vec::with_capacity(task.def.params.len());
    for index in 0..task.def.params.len() {
        let (value, name) = BodyAccess::input(ctx, index)?;
        let encoded = value
            .encode()
            .map_err(cannot_encode(format!("parameter `{name}`")))?;
        inputs.push((name.to_owned(), encoded));
    }
    Ok(Invocation {
        protocol: PROTOCOL_VERSION,
        build_id: build_id().to_owned(),
        nonce,
        task: task.name().to_owned(),
        task_id: task.id().to_owned(),
        workflow: ctx.workflow_name().to_owned(),
        run_id: ctx.run_id().to_owned(),
        attempt: ctx.attempt(),
        cycle: ctx.cycle(),
        inputs,
        channel: encode_channel(ctx.channel())
            .map_err(cannot_encode("the run's channel".to_owned()))?,
        upstream: if task.def.takes_context {
            ctx.upstream_values()
                .into_iter()
                .map(|(id, value)| Ok((id, value.encode()?)))
                .collect::<Result<_, ValueError>>()
                .map_err(cannot_encode("the upstream results".to_owned()))?
        } else {
            Vec::new()
        },
    })
}

pub(crate) fn encode_channel(channel: &Channel) -> Result<Vec<(String, EncodedValue)>, ValueError> {
    channel
        .entries()
        .into_iter()
        .map(|(key, value)| Ok((key, value.encode()?)))
        .collect()
}

/// An error that crossed a process boundary: its message and the chain of its causes.
#[derive(Debug)]
pub struct RemoteError {
    message: String,
    source: Option<Box<RemoteError>>,
}

/// At most this many causes cross the boundary (a runner's chain is hostile input: a deep one
/// would make a deep, recursively dropped error), each at most [`MAX_MESSAGE`] bytes.
const MAX_CHAIN: usize = 64;
const MAX_MESSAGE: usize = 4096;

fn cut(message: &str) -> String {
    graflow_protocol::text::truncate_noted(message, MAX_MESSAGE).into_owned()
}

impl RemoteError {
    fn from_chain(chain: &[String]) -> Self {
        let mut kept: Vec<String> = chain.iter().take(MAX_CHAIN).map(|m| cut(m)).collect();
        if chain.len() > MAX_CHAIN {
            kept.push(format!(
                "[... {} more cause(s) cut]",
                chain.len() - MAX_CHAIN
            ));
        }
        let mut error: Option<RemoteError> = None;
        for message in kept.iter().rev() {
            error = Some(RemoteError {
                message: message.clone(),
                source: error.map(Box::new),
            });
        }
        error.unwrap_or(RemoteError {
            message: "an error without a message".to_owned(),
            source: None,
        })
    }
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RemoteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Applies an outcome (already checked for protocol, build and nonce, its result decoded) to
/// the run: merges the channel writes and returns the result, or turns the failure into the
/// error of this attempt. `handler` names the handler in errors.
pub(super) fn apply(
    outcome: Outcome<Value>,
    task: &Task,
    ctx: &ExecutionContext,
    handler: &str,
) -> Result<Value, AttemptError> {
    let id = task.id();
    match outcome.result {
        Ok(value) => {
            // Kept with the attempt's requests: the run's channel takes them only if nothing
            // below, nor the run's checks of what the attempt asked for, fails the attempt.
            for (key, write) in outcome.channel_writes {
                ctx.record_channel_write(key, write.map(Value::from_encoded));
            }
            ctx.apply_control(outcome.control)
                .map_err(|error| refused(task, error))?;
            Ok(value)
        }
        // A cancel stands whatever the attempt returned.
        Err(failure)
            if outcome
                .control
                .iter()
                .any(|c| matches!(c, Control::Cancel { .. })) =>
        {
            let _ = ctx.apply_control(
                outcome
                    .control
                    .into_iter()
                    .filter(|c| matches!(c, Control::Cancel { .. }))
                    .collect(),
            );
            apply(
                Outcome {
                    result: Err(failure),
                    control: Vec::new(),
                    channel_writes: Vec::new(),
                    ..outcome
                },
                task,
                ctx,
                handler,
            )
        }
        Err(Failure::Returned { chain }) => Err(AttemptError::Task {
            task: id.to_owned(),
            source: Box::new(RemoteError::from_chain(&chain)) as BoxError,
        }),
        Err(Failure::Panicked { message }) => Err(AttemptError::Panicked {
            task: id.to_owned(),
            message: cut(&message),
        }),
        Err(Failure::Other { message }) => Err(AttemptError::handler(id, handler, cut(&message))),
        Err(Failure::Rejected { reason }) if outcome.nonce == 0 => Err(AttemptError::handler(
            id,
            handler,
            format!(
                "the runner refused the task, saying (unverified: a runner that could not read the invocation does not know its nonce): {}",
                cut(&reason)
            ),
        )),
        Err(Failure::Rejected { reason }) => Err(AttemptError::handler(
            id,
            handler,
            format!("the runner refused the task: {}", cut(&reason)),
        )),
    }
}

/// The outcome of running a task in this process: what a runner sends back.
pub(crate) fn outcome_of(
    nonce: u64,
    result: Result<Value, AttemptError>,
    channel_writes: Vec<(String, Option<EncodedValue>)>,
    control: Vec<Control>,
    elapsed_ns: u64,
) -> Outcome {
    let result = match result {
        Ok(value) => value.encode().map_err(|e| Failure::Other {
            message: Chain(&e).to_string(),
        }),
        Err(AttemptError::Task { source, .. }) => {
            let mut chain = vec![cut(&source.to_string())];
            let mut next = source.source();
            while let Some(cause) = next {
                if chain.len() == MAX_CHAIN {
                    chain.push("[... more causes cut]".to_owned());
                    break;
                }
                chain.push(cut(&cause.to_string()));
                next = cause.source();
            }
            Err(Failure::Returned { chain })
        }
        Err(AttemptError::Panicked { message, .. }) => Err(Failure::Panicked { message }),
        Err(other) => Err(Failure::Other {
            message: Chain(&other).to_string(),
        }),
    };
    Outcome {
        protocol: PROTOCOL_VERSION,
        build_id: build_id().to_owned(),
        nonce,
        result,
        channel_writes,
        control,
        elapsed_ns,
    }
}

/// The outcome of an attempt that failed in the runner before or after the body ran (for a
/// reason of the runner's, not the task's).
pub(crate) fn runner_failure(
    nonce: u64,
    error: &(dyn std::error::Error + 'static),
    elapsed_ns: u64,
) -> Outcome {
    Outcome {
        protocol: PROTOCOL_VERSION,
        build_id: build_id().to_owned(),
        nonce,
        result: Err(Failure::Other {
            message: Chain(error).to_string(),
        }),
        channel_writes: Vec::new(),
        control: Vec::new(),
        elapsed_ns,
    }
}

/// A number that tells one attempt's outcome from any other's (never 0), for [`invocation`].
fn attempt_nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(now.as_nanos());
    }
    hasher.finish().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostile_chain_is_cut_to_a_bounded_error() {
        let chain: Vec<String> = (0..100_000).map(|i| format!("cause {i}")).collect();
        let error = RemoteError::from_chain(&chain);
        let mut depth = 0;
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(&error);
        let mut last = String::new();
        while let Some(e) = next {
            depth += 1;
            last = e.to_string();
            next = e.source();
        }
        assert_eq!(depth, MAX_CHAIN + 1);
        assert!(last.contains("99936 more cause(s) cut"), "{last}");
        let long = RemoteError::from_chain(&["x".repeat(1 << 20)]);
        assert!(long.to_string().len() < MAX_MESSAGE + 64);
    }
}
