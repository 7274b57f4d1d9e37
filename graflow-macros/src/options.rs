//! The options of `#[task(...)]`: engine options, checked here, and everything else, kept as
//! the task's handler configuration.

use proc_macro2::TokenStream;
use quote::quote;
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Lit, Meta, Token, UnOp};

use crate::Errors;

/// The option names the engine itself uses; any other `key = value` is handler configuration.
pub(crate) const ENGINE_OPTIONS: &[&str] = &[
    "id",
    "handler",
    "retries",
    "retry_delay",
    "retry_backoff",
    "retry_max_delay",
    "retry_jitter",
    "timeout",
    "writes",
    "blocking",
    "max_cycles",
    "crate",
];

pub(crate) enum Handler {
    Literal(syn::LitStr),
    Expr(Box<Expr>),
}

#[derive(Default)]
pub(crate) struct Options {
    pub id: Option<syn::LitStr>,
    pub handler: Option<Handler>,
    pub retries: Option<u32>,
    pub retry_delay: Option<u64>,
    pub retry_backoff: Option<f64>,
    pub retry_max_delay: Option<u64>,
    pub retry_jitter: Option<bool>,
    pub timeout: Option<u64>,
    pub writes: Vec<syn::LitStr>,
    pub blocking: Option<bool>,
    /// How many times the task may run in one run (iterations and gotos included).
    pub max_cycles: Option<u32>,
    /// `crate = "path"`: where generated code finds graflow (default `::graflow`).
    pub krate: Option<syn::Path>,
    /// Handler configuration: key and value, checked by `config_value` (which needs `krate`,
    /// known only once every option is read, to emit its tokens: see `Options::config`).
    config: Vec<(String, Expr)>,
}

impl Options {
    pub(crate) fn parse(attr: TokenStream, errors: &mut Errors) -> Options {
        let mut options = Options::default();
        if attr.is_empty() {
            return options;
        }
        let metas =
            match syn::parse::Parser::parse2(Punctuated::<Meta, Token![,]>::parse_terminated, attr)
            {
                Ok(metas) => metas,
                Err(error) => {
                    errors.push(error);
                    return options;
                }
            };
        let mut seen: Vec<String> = Vec::new();
        for meta in metas {
            let nv = match meta {
                Meta::NameValue(nv) => nv,
                other => {
                    errors.spanned(
                        &other,
                        "expected `key = value`, e.g. `retries = 3` or `image = \"python:3.11-slim\"`",
                    );
                    continue;
                }
            };
            let Some(key) = nv.path.get_ident().map(ToString::to_string) else {
                errors.spanned(
                    &nv.path,
                    "option names are single identifiers, e.g. `timeout`",
                );
                continue;
            };
            if seen.contains(&key) {
                errors.spanned(&nv.path, format!("option `{key}` is given twice"));
                continue;
            }
            seen.push(key.clone());
            options.set(&key, &nv.value, errors);
        }
        options
    }

    /// Handler configuration: each key with the tokens of its `ConfigValue`, reached through
    /// the `crate` path like the rest of the generated code.
    pub(crate) fn config(&self) -> Vec<(&str, TokenStream)> {
        let gf = crate::graflow_path(self.krate.as_ref());
        let cv = quote!(#gf::__private::ConfigValue);
        self.config
            .iter()
            .filter_map(|(key, value)| Some((key.as_str(), config_value(value, &cv)?)))
            .collect()
    }

    fn set(&mut self, key: &str, value: &Expr, errors: &mut Errors) {
        match key {
            "id" => match lit_str(value) {
                Some(s) if !s.value().trim().is_empty() => self.id = Some(s),
                _ => errors.spanned(value, "`id` takes a non-empty string literal, e.g. `id = \"fetch\"`"),
            },
            "handler" => {
                self.handler = Some(match lit_str(value) {
                    Some(s) if s.value().is_empty() => {
                        errors.spanned(value, "`handler` cannot be empty; the default is \"direct\"");
                        return;
                    }
                    Some(s) => Handler::Literal(s),
                    None => Handler::Expr(Box::new(value.clone())),
                })
            }
            "crate" => match lit_str(value).map(|s| s.parse::<syn::Path>()) {
                Some(Ok(path)) => self.krate = Some(path),
                _ => errors.spanned(
                    value,
                    "`crate` takes the path of the graflow crate as a string, e.g. `crate = \"my_graflow\"` for a renamed dependency",
                ),
            },
            "retries" => match lit_int::<u32>(value) {
                Some(n) => self.retries = Some(n),
                None => errors.spanned(value, "`retries` takes a whole number, e.g. `retries = 3`"),
            },
            "max_cycles" => match lit_int::<u32>(value) {
                Some(n) if n > 0 => self.max_cycles = Some(n),
                _ => errors.spanned(
                    value,
                    "`max_cycles` takes a whole number of at least 1: how many times the task may run in one run, e.g. `max_cycles = 20`",
                ),
            },
            "retry_backoff" => match lit_f64(value) {
                Some(f) if f.is_finite() && f >= 1.0 => self.retry_backoff = Some(f),
                _ => errors.spanned(value, "`retry_backoff` takes a number of at least 1, e.g. `retry_backoff = 2.0`"),
            },
            "retry_jitter" => match lit_bool(value) {
                Some(b) => self.retry_jitter = Some(b),
                None => errors.spanned(value, "`retry_jitter` takes `true` or `false`"),
            },
            "blocking" => match lit_bool(value) {
                Some(b) => self.blocking = Some(b),
                None => errors.spanned(value, "`blocking` takes `true` or `false`"),
            },
            "timeout" | "retry_delay" | "retry_max_delay" => {
                let parsed = lit_str(value).map(|s| parse_duration(&s.value()));
                let nanos = match parsed {
                    Some(Ok(nanos)) if key != "timeout" || nanos > 0 => nanos,
                    Some(Err(why)) => {
                        errors.spanned(value, format!("invalid duration for `{key}`: {why}"));
                        return;
                    }
                    _ => {
                        errors.spanned(
                            value,
                            format!("`{key}` takes a positive duration string, e.g. `{key} = \"30s\"` (units: ns, us, ms, s, m, h)"),
                        );
                        return;
                    }
                };
                match key {
                    "timeout" => self.timeout = Some(nanos),
                    "retry_delay" => self.retry_delay = Some(nanos),
                    _ => self.retry_max_delay = Some(nanos),
                }
            }
            "writes" => match str_list(value) {
                Some(keys) => self.writes = keys,
                None => errors.spanned(value, "`writes` takes an array of channel keys, e.g. `writes = [\"model_path\"]`"),
            },
            _ => match config_value(value, &TokenStream::new()) {
                Some(_) => self.config.push((key.to_owned(), value.clone())),
                None => errors.spanned(
                    value,
                    format!(
                        "handler configuration `{key}` must be a literal or an array of literals (`{key} = \"...\"`, `{key} = 3`, `{key} = [\"a\", \"b\"]`); engine options are: {}",
                        ENGINE_OPTIONS.join(", ")
                    ),
                ),
            },
        }
    }
}

fn lit(value: &Expr) -> Option<&Lit> {
    match value {
        Expr::Lit(ExprLit { lit, .. }) => Some(lit),
        Expr::Group(group) => lit(&group.expr),
        _ => None,
    }
}

fn lit_str(value: &Expr) -> Option<syn::LitStr> {
    match lit(value)? {
        Lit::Str(s) => Some(s.clone()),
        _ => None,
    }
}

fn lit_bool(value: &Expr) -> Option<bool> {
    match lit(value)? {
        Lit::Bool(b) => Some(b.value),
        _ => None,
    }
}

fn lit_int<N: std::str::FromStr>(value: &Expr) -> Option<N>
where
    N::Err: std::fmt::Display,
{
    match lit(value)? {
        Lit::Int(i) => i.base10_parse().ok(),
        _ => None,
    }
}

fn lit_f64(value: &Expr) -> Option<f64> {
    match lit(value)? {
        Lit::Int(i) => i.base10_parse().ok(),
        Lit::Float(f) => f.base10_parse().ok(),
        _ => None,
    }
}

fn str_list(value: &Expr) -> Option<Vec<syn::LitStr>> {
    match value {
        Expr::Array(array) => array.elems.iter().map(lit_str).collect(),
        other => lit_str(other).map(|s| vec![s]),
    }
}

/// The tokens of a `ConfigValue` (the path `cv`) for a literal, a negated number or an array of
/// those; `None` for any other expression.
fn config_value(value: &Expr, cv: &TokenStream) -> Option<TokenStream> {
    if let Expr::Array(array) = value {
        let items = array
            .elems
            .iter()
            .map(|item| config_value(item, cv))
            .collect::<Option<Vec<_>>>()?;
        return Some(quote!(#cv::List(::std::vec::Vec::from([#(#items),*]))));
    }
    if let Expr::Unary(unary) = value {
        if let UnOp::Neg(_) = unary.op {
            return match lit(&unary.expr)? {
                Lit::Int(i) => {
                    let n: i64 = format!("-{}", i.base10_digits()).parse().ok()?;
                    Some(quote!(#cv::Int(#n)))
                }
                Lit::Float(f) => {
                    let x: f64 = f.base10_parse::<f64>().ok()?;
                    let x = -x;
                    Some(quote!(#cv::Float(#x)))
                }
                _ => None,
            };
        }
        return None;
    }
    match lit(value)? {
        Lit::Str(s) => Some(quote!(#cv::Str(::std::string::String::from(#s)))),
        Lit::Int(i) => {
            let n: i64 = i.base10_parse().ok()?;
            Some(quote!(#cv::Int(#n)))
        }
        Lit::Float(f) => {
            let x: f64 = f.base10_parse().ok()?;
            Some(quote!(#cv::Float(#x)))
        }
        Lit::Bool(b) => Some(quote!(#cv::Bool(#b))),
        _ => None,
    }
}

/// Parses `"30s"`, `"1m30s"`, `"250ms"`, `"1.5h"` into nanoseconds.
pub(crate) fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".to_owned());
    }
    let mut total: f64 = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return Err(format!("expected a number at `{rest}` in `{text}`"));
        }
        let number: f64 = rest[..number_len]
            .parse()
            .map_err(|_| format!("`{}` is not a number", &rest[..number_len]))?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = rest[..unit_len].trim();
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" | "sec" | "secs" => 1e9,
            "m" | "min" | "mins" => 60e9,
            "h" | "hr" | "hrs" => 3600e9,
            "" => {
                return Err(format!(
                    "`{text}` needs a unit (ns, us, ms, s, m, h), e.g. \"30s\""
                ));
            }
            other => {
                return Err(format!(
                    "unknown unit `{other}` (use ns, us, ms, s, m or h)"
                ));
            }
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    if total > u64::MAX as f64 {
        return Err("duration too long".to_owned());
    }
    Ok(total.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(30_000_000_000));
        assert_eq!(parse_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_duration("250ms"), Ok(250_000_000));
        assert_eq!(parse_duration("1.5h"), Ok(5_400_000_000_000));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("3 parsecs").is_err());
    }
}
