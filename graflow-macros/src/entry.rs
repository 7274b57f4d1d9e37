//! `#[graflow::main]`: `graflow::init()` first, then the user's `main` (on a Tokio runtime when
//! it is `async`).

use proc_macro2::TokenStream;
use quote::quote;
use syn::ItemFn;

pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut func: ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(error) => {
            let error = error.to_compile_error();
            return quote!(#item #error);
        }
    };
    let mut errors = crate::Errors::default();
    let krate = parse_options(attr, &mut errors);
    let gf = crate::graflow_path(krate.as_ref());
    if func.sig.ident != "main" {
        errors.spanned(&func.sig.ident, "#[graflow::main] goes on `fn main`");
    }
    if !func.sig.inputs.is_empty() {
        errors.spanned(&func.sig.inputs, "`main` takes no parameters");
    }
    if let Some(error) = errors.finish() {
        let error = error.to_compile_error();
        return quote!(#func #error);
    }
    let body = &func.block;
    let output = match &func.sig.output {
        syn::ReturnType::Default => Some(quote!(())),
        // Neither can name a variable's type: such a `main` keeps its exit as it is.
        syn::ReturnType::Type(_, ty)
            if matches!(**ty, syn::Type::ImplTrait(_) | syn::Type::Never(_)) =>
        {
            None
        }
        syn::ReturnType::Type(_, ty) => Some(quote!(#ty)),
    };
    let check = quote! {
        #gf::__private::exit_if_waiting({
            #[allow(unused_imports)]
            use #gf::__private::{MainFailed as _, MainFailedOther as _};
            (&__graflow_result).__graflow_failed()
        });
    };
    // A run that waits for answers ends the program with its own exit code.
    let new_body = if let Some(output) = output {
        if func.sig.asyncness.take().is_some() {
            quote! {{
                #gf::init();
                let __graflow_result: #output = #gf::__private::tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()
                    .expect("graflow::main could not start the Tokio runtime")
                    .block_on(async move #body);
                #check
                __graflow_result
            }}
        } else {
            quote! {{
                #gf::init();
                let __graflow_result: #output = (move || -> #output #body)();
                #check
                __graflow_result
            }}
        }
    } else if func.sig.asyncness.take().is_some() {
        quote! {{
            #gf::init();
            #gf::__private::tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("graflow::main could not start the Tokio runtime")
                .block_on(async move #body)
        }}
    } else {
        quote! {{
            #gf::init();
            #body
        }}
    };
    func.block = match syn::parse2(new_body) {
        Ok(block) => Box::new(block),
        Err(error) => return error.to_compile_error(),
    };
    quote!(#func)
}

/// `crate = "path"`, the only option.
fn parse_options(attr: TokenStream, errors: &mut crate::Errors) -> Option<syn::Path> {
    if attr.is_empty() {
        return None;
    }
    let parser =
        syn::punctuated::Punctuated::<syn::MetaNameValue, syn::Token![,]>::parse_terminated;
    let options = match syn::parse::Parser::parse2(parser, attr) {
        Ok(options) => options,
        Err(error) => {
            errors.push(error);
            return None;
        }
    };
    let mut krate = None;
    for option in options {
        let value = match &option.value {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => s.parse::<syn::Path>().ok(),
            _ => None,
        };
        if !option.path.is_ident("crate") {
            errors.spanned(
                &option.path,
                "the only option of #[graflow::main] is `crate = \"path\"`",
            );
        } else if krate.is_some() {
            errors.spanned(&option.path, "`crate` is given twice");
        } else if value.is_none() {
            errors.spanned(&option.value, "`crate` takes the path of the graflow crate as a string, e.g. `crate = \"my_graflow\"`");
        } else {
            krate = value;
        }
    }
    krate
}
