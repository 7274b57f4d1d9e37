//! `workflow! { name: "etl"; a >> (b | c) >> d; a >> e; }`: parsed into sequences and parallel
//! groups, lowered to nodes and edges, and emitted as calls to the runtime `WorkflowBuilder`.

use std::collections::{BTreeSet, HashMap};

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt as _;
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Expr, Path, Token, parenthesized};

enum Flow {
    Task(Path),
    Sequence(Vec<Flow>),
    Parallel(Vec<Flow>, Box<GroupOptions>),
}

/// `(a | b).name("...").policy(...)`: a parallel group's name and policy.
#[derive(Default)]
struct GroupOptions {
    /// The group as written, its default name.
    text: String,
    name: Option<Expr>,
    policy: Option<Policy>,
}

/// The forms `.policy(...)` takes.
enum Policy {
    Strict(Span),
    BestEffort(Span),
    AtLeast(Span, Expr),
    /// Member paths.
    Critical(Span, Vec<Path>),
    Custom(Span, Expr),
    /// Any expression of a type that is `Into<GroupPolicy>`.
    Expr(Expr),
}

fn parse_policy(input: ParseStream) -> syn::Result<Policy> {
    let fork = input.fork();
    if let Ok(ident) = fork.parse::<syn::Ident>() {
        let span = ident.span();
        let called = fork.peek(syn::token::Paren);
        let ends = fork.is_empty();
        match (ident.to_string().as_str(), called, ends) {
            ("strict", false, true) => {
                input.parse::<syn::Ident>()?;
                return Ok(Policy::Strict(span));
            }
            ("best_effort", false, true) => {
                input.parse::<syn::Ident>()?;
                return Ok(Policy::BestEffort(span));
            }
            ("at_least" | "critical" | "custom", true, _) => {
                input.parse::<syn::Ident>()?;
                let args;
                parenthesized!(args in input);
                let policy = match ident.to_string().as_str() {
                    "at_least" => Policy::AtLeast(span, args.parse()?),
                    "custom" => Policy::Custom(span, args.parse()?),
                    _ => {
                        let paths =
                            syn::punctuated::Punctuated::<Path, Token![,]>::parse_terminated_with(
                                &args,
                                Path::parse_mod_style,
                            )?;
                        if paths.is_empty() {
                            return Err(syn::Error::new(
                                span,
                                "critical(...) names the members that must succeed, e.g. `critical(load_users)`",
                            ));
                        }
                        Policy::Critical(span, paths.into_iter().collect())
                    }
                };
                if !args.is_empty() {
                    return Err(args.error("unexpected tokens in the policy"));
                }
                if !input.is_empty() {
                    return Err(input.error("expected `)` after the policy"));
                }
                return Ok(policy);
            }
            _ => {}
        }
    }
    Ok(Policy::Expr(input.parse()?))
}

struct Input {
    name: Option<Expr>,
    /// `crate: path;`: where generated code finds graflow (default `::graflow`).
    krate: Option<syn::Path>,
    statements: Vec<Flow>,
}

impl Parse for Input {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut name = None;
        let mut krate = None;
        while (input.peek(syn::Ident) || input.peek(Token![crate]))
            && input.peek2(Token![:])
            && !input.peek2(Token![::])
        {
            let key: syn::Ident = input.call(syn::Ident::parse_any)?;
            let duplicate = || syn::Error::new(key.span(), format!("`{key}` is given twice"));
            if key == "name" {
                if name.is_some() {
                    return Err(duplicate());
                }
                input.parse::<Token![:]>()?;
                name = Some(input.parse()?);
            } else if key == "crate" {
                if krate.is_some() {
                    return Err(duplicate());
                }
                input.parse::<Token![:]>()?;
                krate = Some(input.parse()?);
            } else {
                return Err(syn::Error::new(
                    key.span(),
                    "the settings are `name: \"...\";` and `crate: path;` (for a renamed graflow dependency)",
                ));
            }
            input.parse::<Token![;]>()?;
        }
        let mut statements = Vec::new();
        while !input.is_empty() {
            statements.push(parse_sequence(input)?);
            if input.is_empty() {
                break;
            }
            if input.peek(Token![|]) {
                return Err(input.error("a parallel group needs parentheses: `(a | b)`"));
            }
            input.parse::<Token![;]>()?;
        }
        Ok(Input {
            name,
            krate,
            statements,
        })
    }
}

fn parse_sequence(input: ParseStream) -> syn::Result<Flow> {
    let mut steps = vec![parse_term(input)?];
    while input.peek(Token![>>]) {
        input.parse::<Token![>>]>()?;
        steps.push(parse_term(input)?);
    }
    Ok(if steps.len() == 1 {
        steps.remove(0)
    } else {
        Flow::Sequence(steps)
    })
}

fn parse_term(input: ParseStream) -> syn::Result<Flow> {
    if input.peek(syn::token::Paren) {
        let inner;
        parenthesized!(inner in input);
        let mut branches = vec![parse_sequence(&inner)?];
        while inner.peek(Token![|]) {
            inner.parse::<Token![|]>()?;
            branches.push(parse_sequence(&inner)?);
        }
        if !inner.is_empty() {
            return Err(inner.error("expected `|`, `>>` or `)`"));
        }
        let mut options = GroupOptions {
            text: format!("({})", inner_text(&branches)),
            ..GroupOptions::default()
        };
        while input.peek(Token![.]) {
            input.parse::<Token![.]>()?;
            let key: syn::Ident = input.parse()?;
            let args;
            parenthesized!(args in input);
            let duplicate = || syn::Error::new(key.span(), format!("`.{key}(...)` is given twice"));
            if branches.len() == 1 {
                return Err(syn::Error::new(
                    key.span(),
                    format!("`.{key}(...)` applies to a parallel group: `(a | b).{key}(...)`"),
                ));
            }
            if key == "policy" {
                if options.policy.is_some() {
                    return Err(duplicate());
                }
                options.policy = Some(parse_policy(&args)?);
            } else if key == "name" {
                if options.name.is_some() {
                    return Err(duplicate());
                }
                options.name = Some(args.parse()?);
                if !args.is_empty() {
                    return Err(args.error("expected `)` after the name"));
                }
            } else {
                return Err(syn::Error::new(
                    key.span(),
                    "a parallel group takes `.policy(...)` (strict, best_effort, at_least(n), critical(task, ...), custom(policy) or a GroupPolicy) and `.name(\"...\")`",
                ));
            }
        }
        return Ok(if branches.len() == 1 {
            branches.remove(0)
        } else {
            Flow::Parallel(branches, Box::new(options))
        });
    }
    if !(input.peek(syn::Ident)
        || input.peek(Token![::])
        || input.peek(Token![crate])
        || input.peek(Token![self])
        || input.peek(Token![super]))
    {
        return Err(input.error("expected the name of a #[task] function or `(`"));
    }
    let path = Path::parse_mod_style(input)?;
    if input.peek(syn::token::Paren) {
        return Err(syn::Error::new(
            path.span(),
            "name the task without calling it: parameters are resolved by the engine",
        ));
    }
    Ok(Flow::Task(path))
}

/// The group as written: `a | b >> c`.
fn inner_text(branches: &[Flow]) -> String {
    fn text(flow: &Flow) -> String {
        match flow {
            Flow::Task(path) => key_of(path),
            Flow::Sequence(steps) => steps.iter().map(text).collect::<Vec<_>>().join(" >> "),
            Flow::Parallel(branches, _) => format!("({})", inner_text(branches)),
        }
    }
    branches.iter().map(text).collect::<Vec<_>>().join(" | ")
}

fn key_of(path: &Path) -> String {
    quote!(#path).to_string().replace(' ', "")
}

/// A group as lowered: its members (every task written in it) and options.
struct LoweredGroup<'a> {
    members: Vec<usize>,
    options: &'a GroupOptions,
}

#[derive(Default)]
struct Graph<'a> {
    nodes: Vec<Path>,
    by_key: HashMap<String, usize>,
    edges: BTreeSet<(usize, usize)>,
    groups: Vec<LoweredGroup<'a>>,
}

impl<'a> Graph<'a> {
    fn node(&mut self, path: &Path) -> usize {
        let key = key_of(path);
        if let Some(&index) = self.by_key.get(&key) {
            return index;
        }
        self.nodes.push(path.clone());
        self.by_key.insert(key, self.nodes.len() - 1);
        self.nodes.len() - 1
    }

    /// Every task written in `flow`.
    fn members(&self, flow: &Flow, out: &mut Vec<usize>) {
        match flow {
            Flow::Task(path) => {
                if let Some(&n) = self.by_key.get(&key_of(path))
                    && !out.contains(&n)
                {
                    out.push(n);
                }
            }
            Flow::Sequence(flows) | Flow::Parallel(flows, _) => {
                for flow in flows {
                    self.members(flow, out);
                }
            }
        }
    }

    /// Returns the (entries, exits) of `flow`.
    fn lower(&mut self, flow: &'a Flow) -> (Vec<usize>, Vec<usize>) {
        match flow {
            Flow::Task(path) => {
                let n = self.node(path);
                (vec![n], vec![n])
            }
            Flow::Sequence(steps) => {
                let mut entries = Vec::new();
                let mut exits: Vec<usize> = Vec::new();
                for (i, step) in steps.iter().enumerate() {
                    let (step_entries, step_exits) = self.lower(step);
                    if i == 0 {
                        entries = step_entries;
                    } else {
                        for &from in &exits {
                            for &to in &step_entries {
                                self.edges.insert((from, to));
                            }
                        }
                    }
                    exits = step_exits;
                }
                (entries, exits)
            }
            Flow::Parallel(branches, options) => {
                let mut entries = Vec::new();
                let mut exits = Vec::new();
                for branch in branches {
                    let (e, x) = self.lower(branch);
                    entries.extend(e);
                    exits.extend(x);
                }
                let mut members = Vec::new();
                self.members(flow, &mut members);
                self.groups.push(LoweredGroup { members, options });
                (entries, exits)
            }
        }
    }

    /// A cycle among the written paths, if any (ids may still collide at run time).
    fn cycle(&self) -> Option<Vec<usize>> {
        let n = self.nodes.len();
        let mut succ = vec![Vec::new(); n];
        for &(a, b) in &self.edges {
            succ[a].push(b);
        }
        // 0 = unvisited, 1 = on the stack, 2 = done
        let mut state = vec![0u8; n];
        let mut stack: Vec<usize> = Vec::new();
        fn visit(
            v: usize,
            succ: &[Vec<usize>],
            state: &mut [u8],
            stack: &mut Vec<usize>,
        ) -> Option<Vec<usize>> {
            state[v] = 1;
            stack.push(v);
            for &w in &succ[v] {
                if state[w] == 1 {
                    let at = stack.iter().position(|&x| x == w).unwrap_or(0);
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(w);
                    return Some(cycle);
                }
                if state[w] == 0
                    && let Some(cycle) = visit(w, succ, state, stack)
                {
                    return Some(cycle);
                }
            }
            stack.pop();
            state[v] = 2;
            None
        }
        (0..n).find_map(|v| {
            if state[v] == 0 {
                visit(v, &succ, &mut state, &mut stack)
            } else {
                None
            }
        })
    }
}

pub(crate) fn expand(input: TokenStream) -> TokenStream {
    let input: Input = match syn::parse2(input) {
        Ok(input) => input,
        Err(error) => return error.to_compile_error(),
    };
    if input.statements.is_empty() {
        return syn::Error::new(
            Span::call_site(),
            "workflow! needs at least one task, e.g. `workflow! { fetch >> report; }`",
        )
        .to_compile_error();
    }
    let mut graph = Graph::default();
    for statement in &input.statements {
        graph.lower(statement);
    }
    if let Some(cycle) = graph.cycle() {
        let names: Vec<String> = cycle
            .iter()
            .map(|&i| {
                let path = &graph.nodes[i];
                quote!(#path).to_string().replace(' ', "")
            })
            .collect();
        let first = &graph.nodes[cycle[0]];
        return syn::Error::new(
            first.span(),
            format!(
                "cycle in workflow!: {}; remove one of these edges",
                names.join(" >> ")
            ),
        )
        .to_compile_error();
    }

    let name = match &input.name {
        Some(expr) => quote!(#expr),
        None => quote!("workflow"),
    };
    let gf = crate::graflow_path(input.krate.as_ref());
    let builder = format_ident!("__graflow_builder");
    let vars: Vec<_> = (0..graph.nodes.len())
        .map(|i| format_ident!("__graflow_n{}", i))
        .collect();
    let adds = graph.nodes.iter().zip(&vars).map(|(path, var)| {
        // Spanned on the path: "not a graflow task" / "cannot find type" lands on the name.
        let task_fn = crate::respan(quote!(#gf::TaskFn), path.span());
        let task = quote_spanned!(path.span()=> <#path as #task_fn>::task());
        quote!(let #var = #builder.add(#task);)
    });
    let edges = graph.edges.iter().map(|&(a, b)| {
        let (a, b) = (&vars[a], &vars[b]);
        quote!(#builder.edge(#a, #b);)
    });
    let mut errors: Option<syn::Error> = None;
    let mut groups = Vec::new();
    for (g, group) in graph.groups.iter().enumerate() {
        // `(a | b)` written twice, once without options: one group.
        let plain = group.options.name.is_none() && group.options.policy.is_none();
        let same_members = |other: &LoweredGroup<'_>| {
            other.members.len() == group.members.len()
                && other.members.iter().all(|m| group.members.contains(m))
        };
        let repeated = graph.groups.iter().enumerate().any(|(o, other)| {
            o != g
                && same_members(other)
                && (other.options.name.is_some() || other.options.policy.is_some() || o < g)
        });
        if plain && repeated {
            continue;
        }
        match group_tokens(&gf, &builder, &graph, &vars, group) {
            Ok(tokens) => groups.push(tokens),
            Err(error) => match &mut errors {
                Some(all) => all.combine(error),
                None => errors = Some(error),
            },
        }
    }
    if let Some(errors) = errors {
        return errors.to_compile_error();
    }
    quote! {
        {
            let mut #builder = #gf::Workflow::builder(#name);
            #(#adds)*
            #(#edges)*
            #(#groups)*
            #builder.build()
        }
    }
}

/// `builder.group(name, &[members], policy);` for one group, or an error spanned on what is
/// wrong with its policy.
fn group_tokens(
    gf: &TokenStream,
    builder: &syn::Ident,
    graph: &Graph<'_>,
    vars: &[syn::Ident],
    group: &LoweredGroup<'_>,
) -> syn::Result<TokenStream> {
    let members: Vec<&syn::Ident> = group.members.iter().map(|&m| &vars[m]).collect();
    let count = members.len();
    let name = match &group.options.name {
        Some(expr) => quote!(#expr),
        None => {
            let text = &group.options.text;
            quote!(#text)
        }
    };
    let policy = match &group.options.policy {
        None => quote!(#gf::GroupPolicy::Strict),
        Some(Policy::Strict(span)) => quote_spanned!(*span=> #gf::GroupPolicy::Strict),
        Some(Policy::BestEffort(span)) => quote_spanned!(*span=> #gf::GroupPolicy::BestEffort),
        Some(Policy::AtLeast(span, n)) => {
            if let Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Int(lit),
                ..
            }) = n
                && let Ok(value) = lit.base10_parse::<usize>()
            {
                if value == 0 {
                    return Err(syn::Error::new(
                        lit.span(),
                        "at_least(0) always passes: use `best_effort`",
                    ));
                }
                if value > count {
                    return Err(syn::Error::new(
                        lit.span(),
                        format!(
                            "at_least({value}) can never pass: the group has {count} member(s)"
                        ),
                    ));
                }
            }
            quote_spanned!(*span=> #gf::GroupPolicy::AtLeast(#n))
        }
        Some(Policy::Critical(span, paths)) => {
            let mut ids = Vec::new();
            for path in paths {
                let key = key_of(path);
                match graph.by_key.get(&key) {
                    Some(n) if group.members.contains(n) => {
                        let var = &vars[*n];
                        ids.push(quote!(#builder.tasks()[#var.index()].id().to_owned()));
                    }
                    _ => {
                        return Err(syn::Error::new(
                            path.span(),
                            format!(
                                "`{key}` is not a member of this group; critical(...) names members of the group it is on"
                            ),
                        ));
                    }
                }
            }
            quote_spanned!(*span=> #gf::GroupPolicy::Critical(::std::vec![#(#ids),*]))
        }
        Some(Policy::Custom(span, expr)) => {
            quote_spanned!(*span=> #gf::GroupPolicy::custom(#expr))
        }
        Some(Policy::Expr(expr)) => {
            let into = crate::respan(quote!(#gf::GroupPolicy), expr.span());
            quote_spanned!(expr.span()=> <#into as ::core::convert::From<_>>::from(#expr))
        }
    };
    Ok(quote! {
        {
            let __graflow_policy = #policy;
            #builder.group(#name, &[#(#members),*], __graflow_policy);
        }
    })
}
