//! Code generation: a checked [`Protocol`] partitioned into one Rust module per endpoint.
//!
//! The output is one file per protocol: a `pub mod <protocol>` holding the protocol's structs
//! (as host types), one `pub mod <endpoint>` per emitted endpoint, and constructors that need
//! both endpoints (the in-process pair). Each endpoint module holds only what runs there: its
//! globals and its replica of the peered data (variable slots: peered first, then globals),
//! its functions (those reachable from its public functions, `onCreate`, initializers and
//! blocks), and its blocks of every sequence (both directions for a symmetric protocol).
//!
//! The code refers to the runtime only through `waldo::__rt` (and the public `waldo`
//! types), is formatted with prettyplease, and is deterministic: the same protocol gives the
//! same bytes.
//!
//! This module holds the entry point, the generator (`Gen`, with every Rust name chosen once)
//! and the protocol module around the rest, which `impl Gen` blocks in the child modules emit:
//! `host_types` (Rust types of Waldo types, host structs), `partition` (what each endpoint
//! runs), `endpoint` (an endpoint's module: slots, lifecycle, functions, blocks, dispatch),
//! `host_api` (the typed handle: its constructors and public functions, one-line forwards to
//! the runtime's shell), `pair` (what only a pair has: the handshake's tables, the listener,
//! the in-process and loopback pairs), `body` (lowering bodies), `names` (Rust names for
//! Waldo names) and `lints` (the lints the generated code allows, and why).

mod body;
mod endpoint;
mod host_api;
mod host_types;
mod lints;
pub mod listing;
pub mod names;
mod pair;
mod partition;
mod shards;

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};

use crate::ir::{EndpointId, Protocol, SequenceId, StructId};

/// What to generate.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Emit only these endpoints (by their Waldo names); all when `None`.
    pub endpoints: Option<Vec<String>>,
    /// The file the protocol came from, for the header.
    pub source_name: String,
    /// The path of the runtime crate in the code (`::waldo` when `None`): `::my_waldo` for a
    /// dependency renamed in `Cargo.toml`, or a path to a re-export (`crate::deps::waldo`).
    pub runtime_path: Option<String>,
}

/// Why code could not be generated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GenError {
    /// `--endpoint NAME` names no endpoint of the protocol.
    UnknownEndpoint {
        /// The name asked for.
        name: String,
        /// The protocol's endpoints.
        known: Vec<String>,
    },
    /// The runtime path given is not a Rust path.
    RuntimePath(String),
    /// The generated tokens did not parse as Rust (a bug in the generator).
    Internal(String),
}

impl std::fmt::Display for GenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GenError::UnknownEndpoint { name, known } => {
                write!(f, "the protocol has no endpoint `{name}` (its endpoints: {})", known.join(", "))
            }
            GenError::RuntimePath(path) => {
                write!(
                    f,
                    "the runtime path `{path}` is not a path to a crate (write it like `::my_waldo` or `crate::deps::waldo`)"
                )
            }
            GenError::Internal(e) => write!(f, "internal error in the code generator: {e}"),
        }
    }
}

impl std::error::Error for GenError {}

/// The module name of a protocol, and the name of its file (`Bank` → `bank`, `Waldo` →
/// `waldo_protocol`, `Crate` → `crate_`).
pub fn module_name(protocol: &Protocol) -> String {
    let module = names::escaped(names::snake(&protocol.name));
    // A module named like a crate that the code or its host names would hide that crate
    // where the protocol is included.
    if ["waldo", "std", "core", "alloc", "tokio"].contains(&module.as_str()) {
        format!("{module}_protocol")
    } else {
        module
    }
}

/// Generates the Rust module of `protocol`.
pub fn generate(protocol: &Protocol, options: &Options) -> Result<String, GenError> {
    let emit: Vec<EndpointId> = match &options.endpoints {
        None => (0..protocol.endpoints.len()).map(EndpointId).collect(),
        Some(names) => {
            let mut out = Vec::new();
            for name in names {
                match protocol.endpoints.iter().position(|e| &e.name == name) {
                    Some(i) if !out.contains(&EndpointId(i)) => out.push(EndpointId(i)),
                    Some(_) => {}
                    None => {
                        return Err(GenError::UnknownEndpoint {
                            name: name.clone(),
                            known: protocol.endpoints.iter().map(|e| e.name.clone()).collect(),
                        });
                    }
                }
            }
            out.sort_unstable();
            out
        }
    };
    let runtime = match &options.runtime_path {
        // `::my_waldo::` is `::my_waldo`; a path relative to the including module (`self`,
        // `super`) would mean something else in the endpoint modules inside it.
        Some(path) => {
            let trimmed = path.trim().trim_end_matches("::");
            syn::parse_str::<syn::Path>(trimmed)
                .ok()
                .filter(|p| p.segments.first().is_some_and(|s| s.ident != "self" && s.ident != "super"))
                .ok_or_else(|| GenError::RuntimePath(path.clone()))?;
            Some(trimmed)
        }
        None => None,
    };
    let printed = shards::generate(protocol, &emit, runtime, &options.source_name, None)?;
    let source = if options.source_name.is_empty() {
        "a Waldo protocol".to_owned()
    } else {
        format!("`{}`", options.source_name)
    };
    Ok(format!(
        "// @generated by waldoc from {source}. Do not edit: change the protocol and rebuild.\n\n{}",
        printed
    ))
}

struct Gen<'p> {
    p: &'p Protocol,
    /// Rust names, chosen once so that they never collide: endpoint handles and structs
    /// (one namespace), endpoint modules, and per endpoint its functions and blocks.
    handles: Vec<Ident>,
    /// The listener type of each endpoint of a pair.
    listeners: Vec<Ident>,
    structs: Vec<Ident>,
    modules: Vec<Ident>,
    functions: Vec<Vec<Ident>>,
    blocks: Vec<Vec<((SequenceId, usize), Ident)>>,
    /// The protocol's file name, as runtime errors name it (empty when unknown).
    file: String,
}

impl<'p> Gen<'p> {
    fn new(p: &'p Protocol) -> Self {
        let mut types: Vec<String> = p.endpoints.iter().map(|e| names::type_name(&e.name)).collect();
        types.extend(p.structs.iter().map(|s| names::type_name(&s.name)));
        types.extend(p.endpoints.iter().map(|e| format!("{}Listener", names::type_name(&e.name))));
        let types = names::unique_types(types);
        let n = p.endpoints.len();
        let handles = types[..n].iter().map(|t| names::ident(t)).collect();
        let structs = types[n..n + p.structs.len()].iter().map(|t| names::ident(t)).collect();
        let listeners = types[n + p.structs.len()..].iter().map(|t| names::ident(t)).collect();
        let protocol_module = module_name(p);
        let modules = names::unique(
            p.endpoints
                .iter()
                .map(|e| {
                    let m = names::snake(&e.name);
                    if names::escaped(m.clone()) == protocol_module
                        || ["rt", "waldo", "std", "core"].contains(&m.as_str())
                    {
                        format!("{m}_endpoint")
                    } else {
                        m
                    }
                })
                .collect(),
        )
        .iter()
        .map(|m| names::ident(m))
        .collect();
        let functions = p
            .endpoints
            .iter()
            .map(|e| {
                names::unique(
                    e.functions
                        .iter()
                        .map(|f| format!("f_{}", names::snake(&f.name).trim_start_matches('_')))
                        .collect(),
                )
                .iter()
                .map(|n| format_ident!("{}", n))
                .collect()
            })
            .collect();
        let blocks = (0..n)
            .map(|e| {
                let mut keys: Vec<(SequenceId, usize)> = Vec::new();
                let e = EndpointId(e);
                for (s, b, _) in p.blocks_on(e) {
                    if !keys.contains(&(s, b)) {
                        keys.push((s, b));
                    }
                }
                let names = names::unique(
                    keys.iter()
                        .map(|&(s, b)| {
                            let seq = &p.sequences[s];
                            format!(
                                "b_{}_{}",
                                names::snake(&seq.name).trim_start_matches('_'),
                                names::snake(&seq.blocks[b].name).trim_start_matches('_')
                            )
                        })
                        .collect(),
                );
                keys.into_iter().zip(names).map(|(k, n)| (k, format_ident!("{}", n))).collect()
            })
            .collect();
        Gen { p, handles, listeners, structs, modules, functions, blocks, file: String::new() }
    }
}

impl Gen<'_> {
    /// This generator, for a protocol read from file `file`.
    fn with_file(mut self, file: &str) -> Self {
        self.file = file.to_owned();
        self
    }

    fn pair(&self) -> bool {
        self.p.endpoints.len() == 2
    }

    fn protocol(&self, emit: &[EndpointId]) -> TokenStream {
        let name = names::ident(&module_name(self.p));
        let doc = format!(" Protocol `{}`, generated by waldoc.", self.p.name);
        let structs: TokenStream = (0..self.p.structs.len()).map(|s| self.host_struct(StructId(s))).collect();
        let endpoints: TokenStream = emit.iter().map(|&e| self.endpoint_module(e)).collect();
        let uses: TokenStream = emit
            .iter()
            .map(|&e| {
                let m = &self.modules[e.index()];
                let h = &self.handles[e.index()];
                if self.pair() {
                    let l = &self.listeners[e.index()];
                    quote!(pub use #m::{#h, #l};)
                } else {
                    quote!(pub use #m::#h;)
                }
            })
            .collect();
        let fingerprint = self.p.fingerprint();
        // The runtime refuses to build code made for an incompatible version of it.
        let version = env!("CARGO_PKG_VERSION");
        let fp_doc =
            " The protocol's fingerprint: both sides of a connection must have the same.".to_string();
        let spec = if self.pair() { self.pair_spec() } else { quote!() };
        let pair = if self.pair() && emit.len() == 2 { self.pairs() } else { quote!() };
        let own = quote!(#structs #spec #pair);
        let use_rt = if mentions(&own, "rt") {
            quote!(
                use ::waldo::__rt as rt;
            )
        } else {
            quote!()
        };
        quote! {
            #[doc = #doc]
            pub mod #name {
                #use_rt

                #[doc = #fp_doc]
                pub const FINGERPRINT: u64 = #fingerprint;
                const _: () = ::waldo::__rt::check_version(#version);
                #structs
                #spec
                #endpoints
                #uses
                #pair
            }
        }
    }
}

/// `tokens` with the runtime's crate path `::waldo::` (the code names the runtime only so)
/// written as `path::` instead. No other path of the generated code has a `waldo` segment
/// after `::`, and string literals are single tokens, which this leaves alone.
fn runtime_at(tokens: TokenStream, path: &syn::Path) -> TokenStream {
    use proc_macro2::{Group, TokenTree};
    let absolute = path.leading_colon.is_some();
    let segments = {
        let segments = &path.segments;
        quote!(#segments)
    };
    let mut out: Vec<TokenTree> = Vec::new();
    let mut iter = tokens.into_iter().peekable();
    while let Some(t) = iter.next() {
        match t {
            TokenTree::Group(g) => {
                let mut inner = Group::new(g.delimiter(), runtime_at(g.stream(), path));
                inner.set_span(g.span());
                out.push(TokenTree::Group(inner));
            }
            TokenTree::Ident(i)
                if i == "waldo"
                    && matches!(out.as_slice(), [.., TokenTree::Punct(a), TokenTree::Punct(b)]
                        if a.as_char() == ':' && b.as_char() == ':')
                    && matches!(iter.peek(), Some(TokenTree::Punct(p)) if p.as_char() == ':') =>
            {
                if !absolute {
                    out.truncate(out.len() - 2);
                }
                out.extend(segments.clone());
            }
            other => out.push(other),
        }
    }
    out.into_iter().collect()
}

/// Whether `tokens` mentions the identifier `name`.
fn mentions(tokens: &TokenStream, name: &str) -> bool {
    tokens.clone().into_iter().any(|t| match t {
        proc_macro2::TokenTree::Ident(i) => i == name,
        proc_macro2::TokenTree::Group(g) => mentions(&g.stream(), name),
        _ => false,
    })
}
