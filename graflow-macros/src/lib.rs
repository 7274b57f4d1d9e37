//! Procedural macros of graflow. They parse, check and emit calls into `graflow-core`, reached
//! through the hidden `::graflow::__private` module (so users depend on `graflow` alone).
//!
//! Use them through the `graflow` crate: `#[graflow::task]` and `graflow::workflow!`.

mod options;
mod task;
mod workflow;

use proc_macro::TokenStream;

/// Turns a function into a workflow task. See the `graflow` crate documentation.
#[proc_macro_attribute]
pub fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    task::expand(attr.into(), item.into()).into()
}

/// Builds a `graflow::Workflow` from `>>` sequences and `( a | b )` parallel groups.
/// See the `graflow` crate documentation.
#[proc_macro]
pub fn workflow(input: TokenStream) -> TokenStream {
    workflow::expand(input.into()).into()
}

/// Collects errors so that all of them are reported together, as serde_derive does.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub fn spanned(&mut self, tokens: impl quote::ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    pub fn finish(self) -> Option<syn::Error> {
        self.0
    }
}
