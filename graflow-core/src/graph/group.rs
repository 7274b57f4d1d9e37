//! Parallel groups and their policies: which member failures a group tolerates.
//!
//! A group is a set of tasks (`(b | c)` in `workflow!`, [`WorkflowBuilder::group`](crate::WorkflowBuilder::group)).
//! Its policy decides whether the run goes on when members fail:
//! - [`GroupPolicy::Strict`] (the default): any member failure fails the run at once;
//! - [`GroupPolicy::BestEffort`]: member failures are tolerated; the group always passes;
//! - [`GroupPolicy::AtLeast`]: passes if at least `n` members succeed;
//! - [`GroupPolicy::Critical`]: passes if the named members succeed, whatever the others do;
//! - [`GroupPolicy::Custom`]: a [`CustomGroupPolicy`] of your own decides.
//!
//! A tolerated failure counts as done for the member's successors: they run and see no result
//! of the failed member ([`TaskContext::upstream`](crate::TaskContext::upstream) leaves it out).

use std::fmt;
use std::sync::Arc;

/// What a group's members did, as a policy sees it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GroupOutcome<'a> {
    /// The group's name.
    pub group: &'a str,
    /// How many members the group has.
    pub members: usize,
    /// Members that succeeded, in member order.
    pub succeeded: Vec<&'a str>,
    /// Members whose last attempt failed, with the error, in member order.
    pub failed: Vec<(&'a str, &'a str)>,
}

impl GroupOutcome<'_> {
    /// Members that have not finished yet (a policy asked early sees some).
    pub fn pending(&self) -> usize {
        self.members - self.succeeded.len() - self.failed.len()
    }
}

/// A policy of your own: decide from the members' outcomes whether the group passes.
///
/// ```
/// use graflow_core::{CustomGroupPolicy, GroupOutcome};
///
/// /// Passes when at most a quarter of the members failed.
/// struct QuarterMayFail;
///
/// impl CustomGroupPolicy for QuarterMayFail {
///     fn evaluate(&self, outcome: &GroupOutcome<'_>) -> Result<String, String> {
///         if outcome.failed.len() * 4 <= outcome.members {
///             Ok(format!("{} of {} members failed, at most a quarter may", outcome.failed.len(), outcome.members))
///         } else {
///             Err(format!("{} of {} members failed, more than a quarter", outcome.failed.len(), outcome.members))
///         }
///     }
/// }
/// ```
pub trait CustomGroupPolicy: Send + Sync + 'static {
    /// The verdict once every member finished: `Ok` with why the group passes, or `Err` with why
    /// it fails (which fails the run). A panic here fails the run with the panic's message.
    fn evaluate(&self, outcome: &GroupOutcome<'_>) -> Result<String, String>;

    /// The policy's name in reports (default: its type's name).
    fn name(&self) -> String {
        std::any::type_name::<Self>()
            .rsplit("::")
            .next()
            .unwrap_or("custom")
            .to_owned()
    }
}

/// How a parallel group treats the failures of its members.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum GroupPolicy {
    /// Every member must succeed: the first failure fails the run at once (the default).
    #[default]
    Strict,
    /// Failures are tolerated: the group passes whatever its members do.
    BestEffort,
    /// At least this many members must succeed; the run fails as soon as that is out of reach.
    AtLeast(usize),
    /// These members (by task id) must succeed; the others may fail. The run fails as soon as
    /// one of them fails.
    Critical(Vec<String>),
    /// Your own policy, asked once every member finished.
    Custom(Arc<dyn CustomGroupPolicy>),
}

impl GroupPolicy {
    /// [`GroupPolicy::Strict`].
    pub fn strict() -> Self {
        GroupPolicy::Strict
    }

    /// [`GroupPolicy::BestEffort`].
    pub fn best_effort() -> Self {
        GroupPolicy::BestEffort
    }

    /// [`GroupPolicy::AtLeast`].
    pub fn at_least(n: usize) -> Self {
        GroupPolicy::AtLeast(n)
    }

    /// [`GroupPolicy::Critical`].
    pub fn critical<I, S>(ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        GroupPolicy::Critical(ids.into_iter().map(Into::into).collect())
    }

    /// [`GroupPolicy::Custom`].
    pub fn custom(policy: impl CustomGroupPolicy) -> Self {
        GroupPolicy::Custom(Arc::new(policy))
    }

    /// Whether this is [`GroupPolicy::Strict`].
    pub fn is_strict(&self) -> bool {
        matches!(self, GroupPolicy::Strict)
    }

    /// The policy as reports print it: `strict`, `best_effort`, `at_least(2)`,
    /// `critical(a, b)`, or a custom policy's name.
    pub fn describe(&self) -> String {
        match self {
            GroupPolicy::Strict => "strict".to_owned(),
            GroupPolicy::BestEffort => "best_effort".to_owned(),
            GroupPolicy::AtLeast(n) => format!("at_least({n})"),
            GroupPolicy::Critical(ids) => format!("critical({})", ids.join(", ")),
            GroupPolicy::Custom(policy) => policy.name(),
        }
    }

    /// Whether the group has failed already, whatever its pending members do: `Some(why)`.
    pub(crate) fn doomed(&self, outcome: &GroupOutcome<'_>) -> Option<String> {
        match self {
            GroupPolicy::Strict => outcome.failed.first().map(|(id, _)| {
                format!("member '{id}' failed; a strict group needs every member to succeed")
            }),
            GroupPolicy::AtLeast(n) => {
                let possible = outcome.succeeded.len() + outcome.pending();
                (possible < *n).then(|| {
                    format!(
                        "{} of {} members failed, so fewer than the {n} required can succeed",
                        outcome.failed.len(),
                        outcome.members
                    )
                })
            }
            GroupPolicy::Critical(ids) => outcome
                .failed
                .iter()
                .find(|(id, _)| ids.iter().any(|c| c == id))
                .map(|(id, _)| format!("critical member '{id}' failed")),
            GroupPolicy::BestEffort | GroupPolicy::Custom(_) => None,
        }
    }

    /// The verdict once every member finished: `Ok(why it passed)` or `Err(why it failed)`.
    pub(crate) fn verdict(&self, outcome: &GroupOutcome<'_>) -> Result<String, String> {
        if let Some(why) = self.doomed(outcome) {
            return Err(why);
        }
        let failed = outcome.failed.len();
        let ok = outcome.succeeded.len();
        match self {
            GroupPolicy::Strict => Ok(format!("all {ok} members succeeded")),
            GroupPolicy::BestEffort if failed == 0 => Ok(format!("all {ok} members succeeded")),
            GroupPolicy::BestEffort => Ok(format!(
                "{failed} of {} members failed; best_effort tolerates any failure",
                outcome.members
            )),
            GroupPolicy::AtLeast(n) => Ok(format!(
                "{ok} of {} members succeeded, at least {n} required",
                outcome.members
            )),
            GroupPolicy::Critical(ids) => Ok(format!(
                "every critical member ({}) succeeded; {failed} other member(s) failed",
                ids.join(", ")
            )),
            GroupPolicy::Custom(policy) => {
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    policy.evaluate(outcome)
                })) {
                    Ok(verdict) => verdict,
                    Err(payload) => Err(format!(
                        "the policy panicked: {}",
                        crate::definition::panic_message(&*payload)
                    )),
                }
            }
        }
    }
}

impl fmt::Debug for GroupPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// A parallel group of a workflow: its name, members (node indices) and policy.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub name: String,
    pub members: Vec<u32>,
    pub policy: GroupPolicy,
}
