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
                other => {
                    let t = host_ty(other);
                    params.decls.push(quote!(#id: #t));
                    params.values.push(quote!(#rt::IntoValue::into_value(#id)));
                }
            }
        }
        params
    }

    pub(super) fn api(&self, e: EndpointId) -> TokenStream {
        let rt = rt();
        let ep = &self.p.endpoints[e];
        let handle = &self.handles[e.index()];
        let mut methods = TokenStream::new();
        let mut taken: Vec<String> = vec![
            "id".into(),
            "with_options".into(),
            "options".into(),
            "endpoint".into(),
            "new".into(),
            "from_inner".into(),
            "stop".into(),
            "on_stop".into(),
            "connect".into(),
            "connect_with".into(),
            "connect_args".into(),
            "listen".into(),
            "listen_with".into(),
        ];
        for (fid, f) in ep.functions.iter().enumerate().filter(|(_, f)| f.public) {
            let mut name = names::snake(&f.name);
            while taken.contains(&name) {
                name.push('_');
            }
            taken.push(name.clone());
            let method = names::ident(&name);
            let ident = &self.functions[e.index()][fid];
            let params = self.host_params(f, "", false);
            let (decls, values, generics) = (&params.decls, &params.values, params.generics());
            let what = format!("{}.{}", ep.name, f.name);
            let (ret_ty, convert) = self.results(&f.returns);
            let doc = format!(" `{}`, as one transaction.", self.signature(f));
            methods.extend(quote! {
                #[doc = #doc]
                pub async fn #method #generics(&self, #(#decls),*) -> Result<#ret_ty, ::waldo::Error> {
                    let args: Vec<#rt::Value> = Vec::from([#(#values),*]);
                    let inner = &self.inner;
                    let out = #rt::transact(#what, &inner.core, &self.options, |tx| {
                        let args: Vec<#rt::Value> = args.iter().map(#rt::Value::detached_copy).collect();
                        async move {
                            let results = inner.#ident(&tx, args).await?;
                            #rt::ops::copy_all(&tx, results).await
                        }
                    })
                    .await?;
                    #convert
                }
            });
        }
        let constructor = if self.pair() { quote!() } else { self.constructor(e) };
        let tcp = if self.pair() { self.tcp_constructors(e) } else { quote!() };
        let listener = if self.pair() { self.listener(e) } else { quote!() };
        let stop_link = if self.pair() { quote!(self.inner.link.get()) } else { quote!(None) };
        let ep_name = &ep.name;
        quote! {
            impl #handle {
                #constructor

                /// A handle on `inner`.
                pub(super) fn from_inner(inner: ::std::sync::Arc<Inner>, options: ::waldo::CallOptions) -> Self {
                    #handle { inner, options }
                }

                #tcp

                /// Stops the endpoint gracefully: no new calls, running ones finish, the
                /// partner (if any) is told and stops too, then the stop listeners run.
                /// Later calls return `waldo::Error::Stopped`.
                pub async fn stop(&self) {
                    #rt::stop(&self.inner.core, #stop_link).await;
                }

                /// Adds a listener that runs once when the endpoint stops (by its own
                /// `stop` or its partner's); at once if it already has.
                pub fn on_stop(&self, listener: impl FnOnce() + Send + 'static) {
                    self.inner.core.on_stop(listener);
                }

                /// The endpoint's unique id (`id()` in Waldo).
                pub fn id(&self) -> &str {
                    self.inner.core.id()
                }

                /// This handle with other per-call options (deadline, attempt limit).
                pub fn with_options(&self, options: ::waldo::CallOptions) -> Self {
                    #handle { inner: self.inner.clone(), options }
                }

                /// The per-call options of this handle.
                pub fn options(&self) -> &::waldo::CallOptions {
                    &self.options
                }

                /// This endpoint as an `Endpoint` value, to pass to Waldo code.
                pub fn endpoint(&self) -> #rt::EndpointRef {
                    #rt::EndpointRef(self.inner.clone())
                }

                #methods
            }

            impl ::std::fmt::Debug for #handle {
                fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                    f.debug_struct(#ep_name).field("id", &self.id()).finish()
                }
            }

            #listener
        }
    }

    /// The Rust result type of a function returning `returns`, and the code that converts
    /// the results `out` into it.
    fn results(&self, returns: &[Ty]) -> (TokenStream, TokenStream) {
        let rt = rt();
        match returns {
            [] => (
                quote!(()),
                quote!({
                    let _ = out;
                    Ok(())
                }),
            ),
            [t] => {
                let ty = self.host_ty(t);
                (
                    ty.clone(),
                    quote!(<#ty as #rt::FromValue>::from_committed(&#rt::ops::nth(&out, 0)).map_err(::waldo::Error::from)),
                )
            }
            ts => {
                let tys: Vec<TokenStream> = ts.iter().map(|t| self.host_ty(t)).collect();
                let idx: Vec<usize> = (0..ts.len()).collect();
                (
                    quote!((#(#tys),*)),
                    quote!(Ok((#(<#tys as #rt::FromValue>::from_committed(&#rt::ops::nth(&out, #idx))?),*))),
                )
            }
        }
    }

    /// `new(onCreate args)` for an endpoint without a partner.
    fn constructor(&self, e: EndpointId) -> TokenStream {
        let rt = rt();
        let ep = &self.p.endpoints[e];
        let handle = &self.handles[e.index()];
        let params = ep.on_create.as_ref().map(|f| self.host_params(f, "", false)).unwrap_or_default();
        let (decls, values, generics) = (&params.decls, &params.values, params.generics());
        quote! {
            /// Creates the endpoint: its initializers, then `onCreate`.
            pub async fn new #generics(#(#decls),*) -> Result<Self, ::waldo::Error> {
                let args: Vec<#rt::Value> = Vec::from([#(#values),*]);
                let inner = Inner::new_arc();
                let options = ::waldo::CallOptions::default();
                inner.start(&options).await?;
                inner.ready(&options, args).await?;
                Ok(#handle { inner, options })
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
