//! `#[task]`: keeps the function as it is and adds, next to it, a marker type of the same name
//! (in the type namespace, so `workflow!` and `my_fn::task()` can name it), the task's static
//! definition, and its link-time registration.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, Ident, ItemFn, Pat, PathArguments, ReturnType, Signature, Type};

use crate::Errors;
use crate::options::{Handler, Options};

/// `max_cycles` when `#[task]` does not say (as `graflow_core::DEFAULT_MAX_CYCLES`).
const DEFAULT_MAX_CYCLES: u32 = 100;

struct Input {
    name: Ident,
    ty: Type,
}

enum Arg {
    Input(usize),
    Context,
}

struct Shape {
    inputs: Vec<Input>,
    args: Vec<Arg>,
    output: Type,
    returns_result: bool,
}

pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(error) => {
            let error =
                syn::Error::new(error.span(), format!("#[task] goes on a function: {error}"));
            let compile_error = error.to_compile_error();
            return quote!(#item #compile_error);
        }
    };
    let mut errors = Errors::default();
    let options = Options::parse(attr, &mut errors);
    let shape = analyze(&func.sig, &mut errors);
    match errors.finish() {
        // Keep the user's function so that the rest of the crate (and the IDE) still sees it.
        Some(error) => {
            let compile_errors = error.to_compile_error();
            quote!(#func #compile_errors)
        }
        None => generate(&func, &options, &shape),
    }
}

fn analyze(sig: &Signature, errors: &mut Errors) -> Shape {
    if let Some(unsafety) = &sig.unsafety {
        errors.spanned(
            unsafety,
            "a task cannot be an `unsafe fn`: wrap the unsafe call in a safe function",
        );
    }
    if let Some(abi) = &sig.abi {
        errors.spanned(abi, "a task cannot have an `extern` ABI");
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.spanned(
            &sig.generics,
            "a task cannot be generic: the engine must know its input and output types to move it out of process; write a non-generic wrapper that calls the generic function",
        );
    }
    if let Some(variadic) = &sig.variadic {
        errors.spanned(variadic, "a task cannot be variadic");
    }
    let mut inputs = Vec::new();
    let mut args = Vec::new();
    for arg in &sig.inputs {
        match arg {
            FnArg::Receiver(receiver) => errors.spanned(
                receiver,
                "a task cannot take `self`: tasks are free functions; move the body into a free `fn` that takes what it needs as parameters",
            ),
            FnArg::Typed(pat_type) => {
                let name = match &*pat_type.pat {
                    Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => pat.ident.clone(),
                    other => {
                        errors.spanned(
                            other,
                            "task parameters must be plain names: the name is the upstream task id or channel key the value is resolved from",
                        );
                        continue;
                    }
                };
                if is_context(&pat_type.ty) {
                    args.push(Arg::Context);
                    continue;
                }
                match &*pat_type.ty {
                    Type::Reference(reference) => errors.spanned(
                        reference,
                        "task parameters are passed by value (they may come from another process): take an owned type such as `String` or `Vec<T>`; only `&TaskContext` is passed by reference",
                    ),
                    Type::ImplTrait(it) => errors.spanned(
                        it,
                        "a task parameter cannot be `impl Trait`: name a concrete type",
                    ),
                    ty => {
                        args.push(Arg::Input(inputs.len()));
                        inputs.push(Input { name, ty: ty.clone() });
                    }
                }
            }
        }
    }
    let (output, returns_result) = match &sig.output {
        ReturnType::Default => (syn::parse_quote!(()), false),
        ReturnType::Type(_, ty) => match &**ty {
            Type::ImplTrait(it) => {
                errors.spanned(it, "a task must return a concrete type, not `impl Trait`");
                (syn::parse_quote!(()), false)
            }
            ty => match result_ok_type(ty) {
                Some(ok) => (ok, true),
                None => ((*ty).clone(), false),
            },
        },
    };
    Shape {
        inputs,
        args,
        output,
        returns_result,
    }
}

/// `&TaskContext`, `&graflow::TaskContext`, ... (shared reference to a path ending in `TaskContext`).
fn is_context(ty: &Type) -> bool {
    match ty {
        Type::Reference(reference) if reference.mutability.is_none() => match &*reference.elem {
            Type::Path(path) => path
                .path
                .segments
                .last()
                .is_some_and(|s| s.ident == "TaskContext" && s.arguments.is_empty()),
            _ => false,
        },
        Type::Group(group) => is_context(&group.elem),
        _ => false,
    }
}

/// The `T` of `Result<T, E>` / `Result<T>` (any path whose last segment is `Result`).
fn result_ok_type(ty: &Type) -> Option<Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    args.args.iter().find_map(|arg| match arg {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    })
}

fn generate(func: &ItemFn, options: &Options, shape: &Shape) -> TokenStream {
    let vis = &func.vis;
    let name = &func.sig.ident;
    let name_str = name.to_string();
    let id = options
        .id
        .as_ref()
        .map(|s| s.value())
        .unwrap_or_else(|| name_str.clone());
    let is_async = func.sig.asyncness.is_some();
    let gf = crate::graflow_path(options.krate.as_ref());
    let p = quote!(#gf::__private);

    // Trait assertions spanned on each type, so an error lands on the offending parameter.
    let data_bounds = shape
        .inputs
        .iter()
        .map(|input| &input.ty)
        .chain(std::iter::once(&shape.output))
        .map(|ty| {
            // The paths carry the type's span too, so that an error lands on the type.
            let serde = crate::respan(quote!(#p::serde), ty.span());
            quote_spanned! {ty.span()=>
                #ty: #serde::Serialize
                    + #serde::de::DeserializeOwned
                    + ::core::marker::Send
                    + 'static,
            }
        });

    let ctx = format_ident!("__graflow_ctx");
    let bindings = shape.inputs.iter().enumerate().map(|(index, input)| {
        let Input { name, ty } = input;
        let read = quote_spanned!(ty.span()=> __graflow_ctx.__input::<#ty>(#index));
        quote!(let #name: #ty = #read?;)
    });
    let call_args = shape.args.iter().map(|arg| match arg {
        Arg::Input(index) => {
            let name = &shape.inputs[*index].name;
            quote!(#name)
        }
        Arg::Context => quote!(#ctx),
    });
    let call = if is_async {
        quote!(#name(#(#call_args),*).await)
    } else {
        quote!(#name(#(#call_args),*))
    };
    let into_result = shape.returns_result.then(|| {
        quote!(let __graflow_out = #p::TaskReturn::into_task_result(__graflow_out, #ctx.task_id())?;)
    });
    let output = &shape.output;
    let p_out = crate::respan(p.clone(), output.span());
    let wrap = quote_spanned! {output.span()=>
        (&#p_out::Wrap::<#output>::NEW).value_ctor()
    };
    let decode = quote_spanned!(output.span()=> #p_out::decode_from::<#output>(source, len));
    let body_steps = quote! {
        #(#bindings)*
        let __graflow_out = #call;
        #into_result
        #[allow(unused_imports)]
        use #p::{ViaClone as _, ViaSerde as _};
        ::core::result::Result::Ok(#wrap(__graflow_out))
    };
    let (body_fn, body_variant) = if is_async {
        (
            quote! {
                fn __graflow_body<'a>(#ctx: &'a #gf::TaskContext) -> #gf::BoxFuture<'a, ::core::result::Result<#gf::Value, #gf::AttemptError>> {
                    #p::Box::pin(async move { #body_steps })
                }
            },
            quote!(#p::Body::Async(__graflow_body)),
        )
    } else {
        (
            quote! {
                fn __graflow_body(#ctx: &#gf::TaskContext) -> ::core::result::Result<#gf::Value, #gf::AttemptError> {
                    #body_steps
                }
            },
            quote!(#p::Body::Sync(__graflow_body)),
        )
    };

    let handler = match &options.handler {
        None => quote!(#p::Cow::Borrowed("direct")),
        Some(Handler::Literal(lit)) => quote!(#p::Cow::Borrowed(#lit)),
        Some(Handler::Expr(expr)) => quote_spanned! {expr.span()=>
            #p::Cow::Owned(::core::convert::Into::<#p::String>::into(#expr))
        },
    };
    let config_sets = options
        .config()
        .into_iter()
        .map(|(key, value)| quote!(config.set(#key, #value);));
    let nanos = |n: Option<u64>, default: u64| {
        let n = n.unwrap_or(default);
        quote!(#p::Duration::from_nanos(#n))
    };
    let retries = options.retries.unwrap_or(0);
    let initial_delay = nanos(options.retry_delay, 1_000_000_000);
    let max_delay = nanos(options.retry_max_delay, 60_000_000_000);
    let factor = options.retry_backoff.unwrap_or(2.0);
    let jitter = options.retry_jitter.unwrap_or(false);
    let timeout = match options.timeout {
        Some(n) => quote!(::core::option::Option::Some(#p::Duration::from_nanos(#n))),
        None => quote!(::core::option::Option::None),
    };
    let blocking = options.blocking.unwrap_or(false);
    let max_cycles = options.max_cycles.unwrap_or(DEFAULT_MAX_CYCLES);
    let takes_context = shape.args.iter().any(|a| matches!(a, Arg::Context));
    let writes = &options.writes;
    let params = shape.inputs.iter().map(|Input { name, ty }| {
        let name = name.to_string();
        quote!(#p::Param { name: #name, ty: #gf::TypeInfo::of::<#ty>() })
    });
    let line = quote_spanned!(name.span()=> ::core::line!());

    quote! {
        #func

        #[doc(hidden)]
        #[allow(non_camel_case_types, dead_code)]
        #vis struct #name {}

        const _: () = {
            #[allow(dead_code, clippy::trivially_copy_pass_by_ref)]
            fn __graflow_assert_data()
            where
                #(#data_bounds)*
            {
            }

            #[allow(clippy::unnecessary_wraps, clippy::needless_question_mark)]
            #body_fn

            fn __graflow_decode(
                source: &mut dyn ::std::io::Read,
                len: u64,
            ) -> ::core::result::Result<#gf::Value, #p::String> {
                #[allow(unused_imports)]
                use #p::{ViaClone as _, ViaSerde as _};
                let value: #output = #decode?;
                ::core::result::Result::Ok(#wrap(value))
            }

            fn __graflow_handler() -> #p::Cow<'static, str> {
                #handler
            }

            #[allow(unused_mut)]
            fn __graflow_config() -> #p::HandlerConfig {
                let mut config = #p::HandlerConfig::new();
                #(#config_sets)*
                config
            }

            static __GRAFLOW_DEF: #p::TaskDef = #p::TaskDef::__new(#p::TaskParts {
                name: ::core::concat!(::core::module_path!(), "::", #name_str),
                id: #id,
                file: ::core::file!(),
                line: #line,
                handler: __graflow_handler,
                config: __graflow_config,
                retry: #p::RetryPolicy::retries(#retries)
                    .with_initial_delay(#initial_delay)
                    .with_factor(#factor)
                    .with_max_delay(#max_delay)
                    .with_jitter(#jitter),
                timeout: #timeout,
                blocking: #blocking,
                writes: &[#(#writes),*],
                params: &[#(#params),*],
                output: #gf::TypeInfo::of::<#output>(),
                decode: __graflow_decode,
                body: #body_variant,
                takes_context: #takes_context,
                max_cycles: #max_cycles,
            });

            impl #gf::TaskFn for #name {
                fn definition() -> &'static #p::TaskDef {
                    &__GRAFLOW_DEF
                }
            }

            impl #name {
                /// A new workflow node for this task (see `graflow::Task`).
                #[allow(dead_code)]
                pub fn task() -> #gf::Task {
                    <Self as #gf::TaskFn>::task()
                }

                /// What the program knows of this task (see `graflow::TaskInfo`).
                #[allow(dead_code)]
                pub fn info() -> #gf::TaskInfo {
                    <Self as #gf::TaskFn>::info()
                }
            }

            #p::inventory::submit! {
                #p::TaskRegistration(&__GRAFLOW_DEF)
            }
        };
    }
}
