//! `#[graflow::main]`: `graflow::init()` first, then the user's `main` (on a Tokio runtime when
//! it is `async`).

use proc_macro2::TokenStream;
use quote::quote;
use syn::ItemFn;

pub fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut func: ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(error) => {
            let error = error.to_compile_error();
            return quote!(#item #error);
        }
    };
    let mut errors = crate::Errors::default();
    if !attr.is_empty() {
        errors.spanned(&attr, "#[graflow::main] takes no options");
    }
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
    let new_body = if func.sig.asyncness.take().is_some() {
        quote! {{
            ::graflow::init();
            ::graflow::__private::tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("graflow::main could not start the Tokio runtime")
                .block_on(async move #body)
        }}
    } else {
        quote! {{
            ::graflow::init();
            #body
        }}
    };
    func.block = match syn::parse2(new_body) {
        Ok(block) => Box::new(block),
        Err(error) => return error.to_compile_error(),
    };
    quote!(#func)
}
