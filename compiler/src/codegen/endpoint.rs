//! One endpoint's module: its handle and `Inner` (the variable slots with their defaults and
//! `controls` marks), the lifecycle (`start`, `connect`, `ready`), its functions, `onCreate`,
//! peered initializers and blocks lowered to Rust, and the `DynEndpoint` and `Program`
//! dispatch to them by name and number.

use proc_macro2::{Ident, TokenStream};
use quote::quote;

use super::body::{BodyKind, Lower, default_value, kind_of, rt};
use super::{Gen, mentions};
use crate::ir::{EndpointId, Function, FunctionId, LocalId, Sequence};

impl Gen<'_> {
    pub(super) fn endpoint(&self, e: EndpointId) -> TokenStream {
        let rt = rt();
        let ep = &self.p.endpoints[e];
        let module = &self.modules[e.index()];
        let handle = &self.handles[e.index()];
        let ep_name = &ep.name;
        let peered = self.p.peered.len();
        let reachable = self.reachable(e);
        let uses_self = self.uses_self(e, &reachable);
        let starts_sequences = self.starts_sequences(e, &reachable);

        let mut defaults: Vec<TokenStream> =
            self.p.peered.iter().map(|v| default_value(self.p, &v.var.ty)).collect();
        defaults.extend(ep.globals.iter().map(|g| default_value(self.p, &g.ty)));

        let link_field = if self.pair() { quote!(link: ::std::sync::OnceLock<#rt::Link>,) } else { quote!() };
        let link_init = if self.pair() { quote!(link: ::std::sync::OnceLock::new(),) } else { quote!() };
        let me_field = if uses_self { quote!(me: ::std::sync::Weak<Inner>,) } else { quote!() };
        let create_body = if uses_self {
            quote!(::std::sync::Arc::new_cyclic(|me| Inner { core, #link_init me: me.clone() }))
        } else {
            quote!(::std::sync::Arc::new(Inner { core, #link_init }))
        };
        // Peered variables the other endpoint controls: the runtime refuses writes to them
        // through any reference (the checker refuses the direct ones).
        let controlled: Vec<TokenStream> = self
            .p
            .peered
            .iter()
            .enumerate()
            .filter_map(|(slot, v)| {
                let owner = v.owner.filter(|&o| o != e)?;
                let (name, owner) = (&v.var.name, &self.p.endpoints[owner].name);
                Some(quote!(core.set_controlled_by(#slot, #name, #owner);))
            })
            .collect();
        let set_peered =
            if peered > 0 { quote!(#(#controlled)* core.set_peered(#peered);) } else { quote!() };

        let functions: TokenStream = reachable
            .iter()
            .map(|&f| self.function(e, &ep.functions[f], self.functions[e.index()][f.index()].clone()))
            .collect();
        let on_create = self.on_create(e);
        let init_peered = if peered > 0 { self.init_peered(e) } else { quote!() };
        let blocks = if self.pair() { self.blocks(e) } else { quote!() };
        let helpers = {
            let mut h = TokenStream::new();
            if uses_self {
                h.extend(quote! {
                    /// `self`: this endpoint as an `Endpoint` value.
                    fn endpoint_value(&self) -> #rt::Value {
                        match self.me.upgrade() {
                            Some(me) => #rt::Value::Endpoint(#rt::EndpointRef(me)),
                            None => #rt::Value::Nothing,
                        }
                    }
                });
            }
            if starts_sequences {
                h.extend(quote! {
                    /// The connection to the partner.
                    fn link(&self) -> #rt::Flow<&#rt::Link> {
                        self.link.get().ok_or_else(|| {
                            #rt::Raise::Exception(#rt::Exception::network("this endpoint has no partner"))
                        })
                    }
                });
            }
            h
        };
        let lifecycle = self.lifecycle(e);
        let dyn_call = self.dyn_call(e, &reachable);
        let api = self.api(e);
        let doc = format!(" The `{}` endpoint of protocol `{}`.", ep.name, self.p.name);
        let handle_doc =
            format!(" A running `{}` endpoint. Cheap to clone; clones share the endpoint.", ep.name);
        quote! {
            #[doc = #doc]
            pub mod #module {
                use ::waldo::__rt as rt;

                #[doc = #handle_doc]
                #[derive(Clone)]
                pub struct #handle {
                    inner: ::std::sync::Arc<Inner>,
                    options: ::waldo::CallOptions,
                }

                /// The endpoint's data and code, as the runtime runs it.
                #[doc(hidden)]
                pub struct Inner {
                    core: ::std::sync::Arc<#rt::EndpointCore>,
                    #link_field
                    #me_field
                }

                impl Inner {
                    /// A new endpoint whose variables hold their types' defaults.
                    pub(super) fn new_arc() -> ::std::sync::Arc<Inner> {
                        let core = #rt::EndpointCore::new(#ep_name, Vec::from([#(#defaults),*]));
                        #set_peered
                        #create_body
                    }

                    /// The endpoint's variables, for the runtime.
                    pub(super) fn core_arc(&self) -> ::std::sync::Arc<#rt::EndpointCore> {
                        self.core.clone()
                    }

                    #lifecycle

                    #helpers
                    #init_peered
                    #on_create
                    #functions
                    #blocks
                }

                #dyn_call
                #api
            }
        }
    }

    /// `start` (peered initializers), `connect` (the partner's link) and `ready` (`onCreate`).
    fn lifecycle(&self, e: EndpointId) -> TokenStream {
        let rt = rt();
        let ep = &self.p.endpoints[e];
        let init_peered = if self.p.peered.is_empty() {
            quote!(let _ = options;)
        } else {
            let what = format!("{}.peered", ep.name);
            quote!(#rt::transact(#what, &self.core, options, |tx| async move { self.init_peered(&tx).await }).await?;)
        };
        let what = format!("{}.onCreate", ep.name);
        let connect = if self.pair() {
            quote! {
                /// Joins the endpoint to its partner's connection.
                pub(super) fn connect(&self, link: #rt::Link) {
                    let _ = self.link.set(link);
                }
            }
        } else {
            quote!()
        };
        quote! {
            /// Runs the peered variables' initializers on this replica.
            pub(super) async fn start(&self, options: &::waldo::CallOptions) -> Result<(), ::waldo::Error> {
                #init_peered
                Ok(())
            }

            #connect

            /// Runs the globals' initializers and `onCreate` with `args`, as one transaction.
            pub(super) async fn ready(&self, options: &::waldo::CallOptions, args: Vec<#rt::Value>) -> Result<(), ::waldo::Error> {
                #rt::transact(#what, &self.core, options, |tx| {
                    let args: Vec<#rt::Value> = args.iter().map(#rt::Value::detached_copy).collect();
                    async move { self.on_create(&tx, args).await }
                })
                .await?;
                Ok(())
            }
        }
    }

    /// A function's lowering: `fn f_name(&self, tx, args) -> CallFuture`.
    fn function(&self, e: EndpointId, f: &Function, name: Ident) -> TokenStream {
        let rt = rt();
        let (tx, args_param, code) = self.function_body(e, f, |_| TokenStream::new());
        let doc = format!(" `{}`", self.signature(f));
        quote! {
            #[doc = #doc]
            fn #name<'a>(&'a self, #tx: &'a #rt::Tx, #args_param: Vec<#rt::Value>) -> #rt::CallFuture<'a> {
                Box::pin(async move { #code })
            }
        }
    }

    /// The body of a function (or `onCreate`): its parameters taken from `args`, `before`
    /// (code to run first, lowered in the body's context), its hoisted locals and its
    /// statements. Returns the names to give `tx` and `args` (`_`-prefixed when unused).
    fn function_body(
        &self,
        e: EndpointId,
        f: &Function,
        before: impl FnOnce(&mut Lower<'_>) -> TokenStream,
    ) -> (TokenStream, TokenStream, TokenStream) {
        let rt = rt();
        let mut lower =
            Lower::new(self.p, &self.functions[e.index()], BodyKind::Function, &f.locals, &f.body, f.params);
        let params: TokenStream = (0..f.params)
            .map(|i| {
                let binding = lower.binding_for_param(LocalId(i));
                quote!(#binding = args.next().unwrap_or(#rt::Value::Nothing);)
            })
            .collect();
        let first = before(&mut lower);
        let hoisted = lower.hoisted();
        let body = lower.tail(&f.body, quote!(Ok(Vec::new())));
        let (args_param, args_iter) = if f.params > 0 {
            (quote!(args), quote!(let mut args = args.into_iter();))
        } else {
            (quote!(_args), quote!())
        };
        let code = quote!(#args_iter #params #first #hoisted #body);
        let tx = if mentions(&code, "tx") { quote!(tx) } else { quote!(_tx) };
        (tx, args_param, code)
    }

    /// `onCreate`: the globals' initializers in order, then the body.
    fn on_create(&self, e: EndpointId) -> TokenStream {
        let rt = rt();
        let ep = &self.p.endpoints[e];
        let peered = self.p.peered.len();
        let empty = Function {
            name: "onCreate".into(),
            public: false,
            params: 0,
            returns: Vec::new(),
            locals: Vec::new(),
            body: Vec::new(),
            loc: crate::ir::Loc(waldo_grammar::Span::new(0, 0)),
        };
        let f = ep.on_create.as_ref().unwrap_or(&empty);
        let (tx, args_param, code) = self.function_body(e, f, |lower| {
            let mut inits = TokenStream::new();
            for (i, g) in ep.globals.iter().enumerate() {
                if let Some(init) = &g.init {
                    let v = lower.expr(init);
                    let slot = peered + i;
                    inits.extend(quote!(tx.write(&self.core, #slot, #v).await?;));
                }
            }
            inits
        });
        quote! {
            /// The globals' initializers, then `onCreate`.
            fn on_create<'a>(&'a self, #tx: &'a #rt::Tx, #args_param: Vec<#rt::Value>) -> #rt::CallFuture<'a> {
                Box::pin(async move { #code })
            }
        }
    }

    /// The peered variables' initializers (run on each replica before it is connected).
    fn init_peered(&self, e: EndpointId) -> TokenStream {
        let rt = rt();
        let mut lower = Lower::new(self.p, &self.functions[e.index()], BodyKind::Function, &[], &[], 0);
        let mut code = TokenStream::new();
        for (i, v) in self.p.peered.iter().enumerate() {
            if let Some(init) = &v.var.init {
                let x = lower.expr(init);
                code.extend(quote!(tx.write_initial(&self.core, #i, #x).await?;));
            }
        }
        let tx = if mentions(&code, "tx") { quote!(tx) } else { quote!(_tx) };
        quote! {
            /// The peered variables' initializers.
            pub(super) fn init_peered<'a>(&'a self, #tx: &'a #rt::Tx) -> #rt::CallFuture<'a> {
                Box::pin(async move { #code Ok(Vec::new()) })
            }
        }
    }

    /// The blocks this endpoint runs, and the `Program` dispatch to them.
    fn blocks(&self, e: EndpointId) -> TokenStream {
        let mut fns = TokenStream::new();
        for ((s, b), name) in &self.blocks[e.index()] {
            fns.extend(self.block(e, &self.p.sequences[*s], *b, name));
        }
        fns
    }

    fn block(&self, e: EndpointId, seq: &Sequence, b: usize, name: &Ident) -> TokenStream {
        let rt = rt();
        let block = &seq.blocks[b];
        let mut lower =
            Lower::new(self.p, &self.functions[e.index()], BodyKind::Block, &block.locals, &block.body, 0);
        // The sequence's own declarations are initialized where it starts.
        let mut inits = TokenStream::new();
        if b == 0 {
            for (i, v) in seq.data.iter().enumerate().skip(seq.params + seq.returns) {
                if let Some(init) = &v.init {
                    let x = lower.expr(init);
                    inits.extend(quote!(data[#i] = #x;));
                }
            }
        }
        let hoisted = lower.hoisted();
        let body = lower.tail(&block.body, quote!(Ok(())));
        let tail = quote!();
        let code = quote!(#inits #hoisted #body #tail);
        let tx = if mentions(&code, "tx") { quote!(tx) } else { quote!(_tx) };
        let data = if mentions(&code, "data") { quote!(data) } else { quote!(_data) };
        let doc = format!(
            " Block `{}.{}` of sequence `{}`.",
            self.p.endpoints[block.endpoint].name, block.name, seq.name
        );
        quote! {
            #[doc = #doc]
            fn #name<'a>(&'a self, #tx: &'a #rt::Tx, #data: &'a mut [#rt::Value]) -> #rt::BlockFuture<'a> {
                Box::pin(async move { #code })
            }
        }
    }

    fn dyn_call(&self, e: EndpointId, reachable: &[FunctionId]) -> TokenStream {
        let rt = rt();
        let ep = &self.p.endpoints[e];
        let mut arms = TokenStream::new();
        for &f in reachable {
            let func = &ep.functions[f];
            if !func.public {
                continue;
            }
            let name = &func.name;
            let ident = &self.functions[e.index()][f.index()];
            let kinds: Vec<TokenStream> = func.locals[..func.params].iter().map(|v| kind_of(&v.ty)).collect();
            arms.extend(quote!(#name => {
                #rt::ops::check_args(#name, &args, &[#(#rt::ops::Kind::#kinds),*])?;
                self.#ident(tx, args).await
            }));
        }
        let program = if self.pair() {
            let mut parms = TokenStream::new();
            for ((s, b), name) in &self.blocks[e.index()] {
                let (s32, b32) = (s.index() as u32, *b as u32);
                parms.extend(quote!((#s32, #b32) => self.#name(tx, data),));
            }
            let ep_name = &ep.name;
            let message = format!("{ep_name} runs no block {{block}} of sequence {{seq}}");
            let none = quote!(Box::pin(async move { #rt::app_error(format!(#message)) }));
            let (params, body) = if parms.is_empty() {
                (quote!(_tx: &'a #rt::Tx, seq: u32, block: u32, _data: &'a mut Vec<#rt::Value>), none)
            } else {
                (
                    quote!(tx: &'a #rt::Tx, seq: u32, block: u32, data: &'a mut Vec<#rt::Value>),
                    quote!(match (seq, block) {
                        #parms
                        _ => #none,
                    }),
                )
            };
            quote! {
                impl #rt::Program for Inner {
                    fn run_block<'a>(&'a self, #params) -> #rt::BlockFuture<'a> {
                        #body
                    }
                }
            }
        } else {
            quote!()
        };
        let (tx_name, args_name) =
            if arms.is_empty() { (quote!(_tx), quote!(_args)) } else { (quote!(tx), quote!(args)) };
        let body = if arms.is_empty() {
            quote!(Box::pin(async move {
                #rt::app_error(format!("no public function `{function}`"))
            }))
        } else {
            quote!(Box::pin(async move {
                match function {
                    #arms
                    _ => #rt::app_error(format!("no public function `{function}`")),
                }
            }))
        };
        quote! {
            impl #rt::DynEndpoint for Inner {
                fn core(&self) -> &::std::sync::Arc<#rt::EndpointCore> {
                    &self.core
                }

                fn call<'a>(&'a self, #tx_name: &'a #rt::Tx, function: &'a str, #args_name: Vec<#rt::Value>) -> #rt::CallFuture<'a> {
                    #body
                }
            }

            #program
        }
    }
}
