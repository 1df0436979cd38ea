//! The host API of an endpoint: one `async` method per public function (Rust types converted
//! at the edge, run as one transaction, results deep-copied), the handle's own methods, and
//! `new` for an endpoint without a partner.

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};

use super::Gen;
use super::body::rt;
use super::names;
use crate::ir::{EndpointId, Function, Protocol, Ty};

impl Gen<'_> {
    pub(super) fn signature(&self, f: &Function) -> String {
        let params: Vec<String> =
            f.locals[..f.params].iter().map(|v| format!("{} {}", ty_name(self.p, &v.ty), v.name)).collect();
        let returns = if f.returns.is_empty() {
            String::new()
        } else {
            format!(
                " returns {}",
                f.returns.iter().map(|t| ty_name(self.p, t)).collect::<Vec<_>>().join(", ")
            )
        };
        let kind = if f.name == "onCreate" {
            String::new()
        } else if f.public {
            "Public Function ".into()
        } else {
            "Private Function ".into()
        };
        format!("{kind}{}({}){returns}", f.name, params.join(", "))
    }

    /// The parameters of a host-facing function: Rust names and types, the code that turns
    /// each into a `Value`, and the generic parameters the types use.
    pub(super) fn host_params(&self, f: &Function, prefix: &str, in_protocol_module: bool) -> HostParams {
        self.host_params_avoiding(f, prefix, in_protocol_module, &[])
    }

    /// Like [`Gen::host_params`], with names clear of `taken` too (the other endpoint's
    /// parameters of a constructor that takes both).
    pub(super) fn host_params_avoiding(
        &self,
        f: &Function,
        prefix: &str,
        in_protocol_module: bool,
        taken: &[String],
    ) -> HostParams {
        let rt = rt();
        // Names the generated bodies use are taken first, so a parameter never shadows one.
        const RESERVED: &[&str] = &[
            "args", "inner", "out", "options", "results", "a", "b", "args_a", "args_b", "la", "lb",
            "ready_a", "ready_b", "addr", "tcp", "listener", "pending", "program", "stream", "end",
        ];
        let mut all: Vec<String> =
            RESERVED.iter().map(|r| (*r).to_owned()).chain(taken.iter().cloned()).collect();
        let skip = all.len();
        all.extend(f.locals[..f.params].iter().map(|v| format!("{prefix}{}", names::snake(&v.name))));
        let names: Vec<String> = names::unique(all).split_off(skip);
        let host_ty = |t: &Ty| if in_protocol_module { self.field_ty(t) } else { self.host_ty(t) };
        let mut params = HostParams { names: names.clone(), ..HostParams::default() };
        for (v, n) in f.locals[..f.params].iter().zip(&names) {
            let id = names::ident(n);
            match &v.ty {
                Ty::Function(sig) => {
                    let ins: Vec<TokenStream> = sig.params.iter().map(&host_ty).collect();
                    let out = match sig.returns.len() {
                        0 => quote!(()),
                        1 => host_ty(&sig.returns[0]),
                        _ => {
                            let ts: Vec<TokenStream> = sig.returns.iter().map(&host_ty).collect();
                            quote!((#(#ts),*))
                        }
                    };
                    // The closure returns its results, or a `Result` of them whose error
                    // becomes an `ApplicationException` (`waldo::HostResult`).
                    // Unique among the protocol's types, this function's other generic
                    // parameters and the names taken (the other endpoint's, for a pair).
                    let base = format!("{}Out", names::camel(n));
                    let mut ret = base.clone();
                    let mut k = 1;
                    while self.handles.iter().chain(&self.structs).chain(&self.listeners).any(|t| *t == ret)
                        || params.generic_names.contains(&ret)
                        || taken.contains(&ret)
                    {
                        k += 1;
                        ret = format!("{base}{k}");
                    }
                    params.generic_names.push(ret.clone());
                    let ret = names::ident(&ret);
                    params.generics.push(quote!(#ret: ::waldo::HostResult<#out>));
                    params.decls.push(quote!(#id: impl Fn(#(#ins),*) -> #ret + Send + Sync + 'static));
                    let idx: Vec<usize> = (0..sig.params.len()).collect();
                    let call = quote!(#rt::HostResult::into_host(#id(#(#rt::FromValue::from_committed(&#rt::ops::nth(&args, #idx))?),*))?);
                    let results = match sig.returns.len() {
                        0 => quote!({ #call; Ok(Vec::new()) }),
                        1 => quote!(Ok(Vec::from([#rt::IntoValue::into_value(#call)]))),
                        k => {
                            let rs: Vec<Ident> = (0..k).map(|i| format_ident!("r{}", i)).collect();
                            quote!({
                                let (#(#rs),*) = #call;
                                Ok(Vec::from([#(#rt::IntoValue::into_value(#rs)),*]))
                            })
                        }
                    };
                    let args_name = if sig.params.is_empty() { quote!(_args) } else { quote!(args) };
                    params.values.push(quote!(#rt::Value::Function(#rt::HostFn::new(move |#args_name: Vec<#rt::Value>| #results))));
                }
                // An endpoint handle's `endpoint()`, `Some` of it, or `None` (unbound).
                Ty::Endpoint => {
                    params.decls.push(quote!(#id: impl Into<Option<::waldo::EndpointRef>>));
                    params.values.push(quote!(#rt::endpoint_value(#id)));
                }
                other => {
                    let t = host_ty(other);
                    params.decls.push(quote!(#id: #t));
                    params.values.push(quote!(#rt::value(#id)));
                }
            }
        }
        params
    }

    /// The host API of endpoint `e`: its typed handle (a `waldo::Handle` it dereferences to),
    /// its constructors and one method per public function, each a one-line forward to the
    /// runtime's shell; for a pair, its listener type.
    pub(super) fn api(&self, e: EndpointId) -> TokenStream {
        let rt = rt();
        let ep = &self.p.endpoints[e];
        let handle = &self.handles[e.index()];
        // Names the handle has already: its own, `Clone::clone`, and the `Handle` methods a
        // host uses most (a public function may shadow the others, which stay reachable
        // through `Deref`).
        let mut taken: Vec<String> = [
            "new",
            "connect",
            "listen",
            "without_partner",
            "with_options",
            "clone",
            "id",
            "options",
            "endpoint",
            "stop",
            "on_stop",
        ]
        .iter()
        .map(|t| (*t).to_owned())
        .collect();
        let mut methods = TokenStream::new();
        for (index, fid) in self.public_functions(e).into_iter().enumerate() {
            let f = &ep.functions[fid];
            let mut name = names::escaped(names::snake(&f.name));
            while taken.contains(&name) {
                name.push('_');
            }
            taken.push(name.clone());
            let method = names::ident(&name);
            let params = self.host_params(f, "", false);
            let (decls, values, generics) = (&params.decls, &params.values, params.generics());
            let (ret_ty, call) = match f.returns.as_slice() {
                [] => (quote!(()), quote!(call)),
                [t] => (self.host_ty(t), quote!(call_one)),
                ts => {
                    let tys: Vec<TokenStream> = ts.iter().map(|t| self.host_ty(t)).collect();
                    (quote!((#(#tys),*)), quote!(call))
                }
            };
            let doc = format!(" `{}`, as one transaction.", self.signature(f));
            // Up to 8 results (the runtime's `FromResults` tuples), the method hands over the
            // runtime's future itself: a plain `fn` costs rustc a fraction of what an
            // `async fn` does to check. More results are read one by one.
            if f.returns.len() > 8 {
                let reads = (0..f.returns.len()).map(|i| quote!(rt::result_at(&values, #i)?));
                methods.extend(quote! {
                    #[doc = #doc]
                    pub async fn #method #generics(&self, #(#decls),*) -> Result<#ret_ty> {
                        let values = self.handle.call_values(#index, Vec::from([#(#values),*])).await?;
                        Ok((#(#reads),*))
                    }
                });
            } else {
                methods.extend(quote! {
                    #[doc = #doc]
                    pub fn #method #generics(&self, #(#decls),*) -> impl Call<#ret_ty> + '_ {
                        self.handle.#call(#index, Vec::from([#(#values),*]))
                    }
                });
            }
        }
        let create = ep.on_create.as_ref().map(|f| self.host_params(f, "", false)).unwrap_or_default();
        let (decls, values, generics) = (&create.decls, &create.values, create.generics());
        let connect_generics = {
            let g = &create.generics;
            quote!(<'a, #(#g),*>)
        };
        let constructors = if self.pair() {
            let partner = &self.p.endpoints[e.partner()].name;
            let connect_doc = format!(
                " Connects to a `{partner}` listening at `addr`: the handshake, then both sides' `onCreate` (this side's with the arguments given); ready once both sides are. `.with_options(tcp)` before `.await` sets the connection's options."
            );
            let listen_doc = format!(
                " Listens at `addr` for `{partner}` endpoints; `.with_options(tcp)` before `.await` sets the options of every connection and the listener's limits."
            );
            let alone_doc = format!(
                " Creates a `{}` with no partner (its initializers, then `onCreate`): the sequences it starts raise a `NetworkException`. For testing one side alone.",
                ep.name
            );
            quote! {
                #[doc = #connect_doc]
                pub fn connect #connect_generics(addr: impl ::waldo::ToSocketAddrs + Send + 'a, #(#decls),*) -> ::waldo::Connect<'a, Self> {
                    ::waldo::Connect::new(addr, Vec::from([#(#values),*]))
                }

                #[doc = #listen_doc]
                pub fn listen<'a>(addr: impl ::waldo::ToSocketAddrs + Send + 'a) -> ::waldo::Listen<'a, Self> {
                    ::waldo::Listen::new(addr)
                }

                #[doc = #alone_doc]
                pub async fn without_partner #generics(#(#decls),*) -> Result<Self> {
                    #rt::create(Vec::from([#(#values),*])).await
                }
            }
        } else {
            quote! {
                /// Creates the endpoint: its initializers, then `onCreate`.
                pub async fn new #generics(#(#decls),*) -> Result<Self> {
                    #rt::create(Vec::from([#(#values),*])).await
                }
            }
        };
        let handle_doc = format!(
            " A running `{}` endpoint: a `waldo::Handle` (which it dereferences to) with the endpoint's public functions. Cheap to clone; clones share the endpoint.",
            ep.name
        );
        let listener = if self.pair() { self.listener(e) } else { quote!() };
        let listener_ty = if self.pair() {
            let l = &self.listeners[e.index()];
            quote!(#l)
        } else {
            quote!(::waldo::EndpointListener<Self>)
        };
        quote! {
            #[doc = #handle_doc]
            #[derive(Clone, Debug)]
            pub struct #handle {
                handle: ::waldo::Handle<#handle>,
            }

            #listener

            impl #handle {
                #constructors
                #methods
            }

            impl ::std::ops::Deref for #handle {
                type Target = ::waldo::Handle<#handle>;

                fn deref(&self) -> &::waldo::Handle<#handle> {
                    &self.handle
                }
            }

            impl ::waldo::Endpoint for #handle {
                type Listener = #listener_ty;
                const CODE: &'static #rt::Code = &CODE;

                fn from_handle(handle: ::waldo::Handle<#handle>) -> Self {
                    #handle { handle }
                }
            }
        }
    }
}

/// The parameters of a host-facing function (see [`Gen::host_params`]).
#[derive(Default)]
pub(super) struct HostParams {
    /// `name: Type` for each parameter.
    pub(super) decls: Vec<TokenStream>,
    /// The code that turns each parameter into a `Value`.
    pub(super) values: Vec<TokenStream>,
    /// `Out: HostResult<T>` for each host function parameter (its closure's return type).
    pub(super) generics: Vec<TokenStream>,
    /// The Rust names of the parameters.
    pub(super) names: Vec<String>,
    /// The names of the generic parameters.
    pub(super) generic_names: Vec<String>,
}

impl HostParams {
    /// `<A: X, B: Y>`, or nothing when there are no generic parameters.
    pub(super) fn generics(&self) -> TokenStream {
        let g = &self.generics;
        if g.is_empty() { quote!() } else { quote!(<#(#g),*>) }
    }
}

/// A Waldo type as the programmer wrote it (for doc comments).
fn ty_name(p: &Protocol, ty: &Ty) -> String {
    ty.name(&p.structs)
}
