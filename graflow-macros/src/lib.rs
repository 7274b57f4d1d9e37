//! Procedural macros of graflow. They parse, check and emit calls into `graflow-core`, reached
//! through the hidden `::graflow::__private` module (so users depend on `graflow` alone).
//!
//! Use them through the `graflow` crate: `#[graflow::task]` and `graflow::workflow!`.

// Every public item is documented; `pub` means reachable from outside the crate.
#![warn(unreachable_pub, missing_docs)]

mod entry;
mod options;
mod task;
mod workflow;

use proc_macro::TokenStream;

/// Turns a function into a workflow task.
///
/// The function stays as it is (callable as a plain function); the macro registers it at link
/// time and adds a marker type of the same name, so that `workflow!` and `my_fn::task()` can
/// name it. Options: `id`, `handler` (a literal or any expression), `retries`, `retry_delay`,
/// `retry_backoff`, `retry_max_delay`, `retry_jitter`, `timeout`, `writes`, `blocking`; any
/// other `key = value` is handler configuration.
///
/// ```
/// use graflow::prelude::*;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Clone, Serialize, Deserialize)]
/// struct Order {
///     id: u32,
///     cents: u64,
/// }
///
/// #[task(retries = 2, retry_delay = "10ms", timeout = "5s", queue = "billing")]
/// fn orders(min_cents: u64) -> Vec<Order> {
///     vec![Order { id: 1, cents: 250 }, Order { id: 2, cents: 50 }]
///         .into_iter()
///         .filter(|o| o.cents >= min_cents)
///         .collect()
/// }
///
/// #[task(id = "revenue")]
/// async fn sum_revenue(orders: Vec<Order>, ctx: &TaskContext) -> Result<u64, String> {
///     ctx.channel().set("order_count", orders.len());
///     Ok(orders.iter().map(|o| o.cents).sum())
/// }
///
/// // Still a plain function:
/// assert_eq!(orders(100).len(), 1);
///
/// // Handler configuration is kept for the task's handler:
/// assert_eq!(orders::task().handler_config().get_str("queue"), Some("billing"));
///
/// let wf = workflow! { orders >> sum_revenue; };
/// let report = WorkflowEngine::new()
///     .run(&wf, RunOptions::new().param("min_cents", 100u64))
///     .unwrap();
/// assert_eq!(report.result::<u64>("revenue").unwrap(), 250);
/// assert_eq!(report.channel().get::<usize>("order_count").unwrap(), 1);
/// ```
///
/// A type that cannot cross a process boundary is a compile error on that type:
///
/// ```compile_fail
/// use graflow::prelude::*;
///
/// struct Connection;
///
/// #[task]
/// fn query(conn: Connection) -> u32 {
///     0
/// }
/// ```
#[proc_macro_attribute]
pub fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    task::expand(attr.into(), item.into()).into()
}

/// Builds a `graflow::Workflow` from `>>` sequences and `( a | b )` parallel groups.
///
/// `name: "...";` is optional; each further statement adds nodes and edges, so several
/// statements make any DAG. A group followed by a group connects every member of the first to
/// every member of the second.
///
/// ```
/// use graflow::prelude::*;
///
/// #[task] fn fetch() -> u32 { 1 }
/// #[task] fn clean(fetch: u32) -> u32 { fetch + 1 }
/// #[task] fn train(clean: u32) -> u32 { clean * 10 }
/// #[task] fn evaluate(clean: u32) -> u32 { clean * 100 }
/// #[task] fn report(train: u32, evaluate: u32) -> u32 { train + evaluate }
/// #[task] fn audit(fetch: u32) -> bool { fetch > 0 }
///
/// let wf = workflow! {
///     name: "etl";
///     fetch >> clean >> (train | evaluate) >> report;
///     fetch >> audit;
/// };
/// assert_eq!(wf.len(), 6);
/// let report = WorkflowEngine::new().run(&wf, RunOptions::new()).unwrap();
/// assert_eq!(report.result::<u32>("report").unwrap(), 220);
/// assert!(report.result::<bool>("audit").unwrap());
/// ```
///
/// A cycle is a compile error naming its path:
///
/// ```compile_fail
/// use graflow::prelude::*;
///
/// #[task] fn a() -> u32 { 1 }
/// #[task] fn b() -> u32 { 2 }
///
/// let wf = workflow! { a >> b >> a; };
/// ```
#[proc_macro]
pub fn workflow(input: TokenStream) -> TokenStream {
    workflow::expand(input.into()).into()
}

/// Wraps `main` so that it starts with `graflow::init()`: a process started by the "process"
/// or "docker" handler then runs its one task and exits instead of running `main`. On an
/// `async fn main` it also starts a multi-threaded Tokio runtime.
///
/// ```
/// #[graflow::main]
/// async fn main() -> graflow::Result<()> {
///     Ok(())
/// }
/// ```
#[proc_macro_attribute]
pub fn main(attr: TokenStream, item: TokenStream) -> TokenStream {
    entry::expand(attr.into(), item.into()).into()
}

/// Collects errors so that all of them are reported together, as serde_derive does.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

/// The path generated code reaches graflow through: `crate = "..."` when given (a renamed
/// dependency, or `graflow_core` itself), else `::graflow`.
pub(crate) fn graflow_path(krate: Option<&syn::Path>) -> proc_macro2::TokenStream {
    match krate {
        Some(path) => quote::quote!(#path),
        None => quote::quote!(::graflow),
    }
}

/// `tokens` with every token's span set to `span`, so that an error about them lands there.
pub(crate) fn respan(
    tokens: proc_macro2::TokenStream,
    span: proc_macro2::Span,
) -> proc_macro2::TokenStream {
    tokens
        .into_iter()
        .map(|mut tree| {
            if let proc_macro2::TokenTree::Group(group) = &tree {
                let mut inner =
                    proc_macro2::Group::new(group.delimiter(), respan(group.stream(), span));
                inner.set_span(span);
                tree = proc_macro2::TokenTree::Group(inner);
            } else {
                tree.set_span(span);
            }
            tree
        })
        .collect()
}

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn spanned(
        &mut self,
        tokens: impl quote::ToTokens,
        message: impl std::fmt::Display,
    ) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    pub(crate) fn finish(self) -> Option<syn::Error> {
        self.0
    }
}
