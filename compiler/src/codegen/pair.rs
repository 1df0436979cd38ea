//! What only a pair of endpoints has: the sequence table and the spec both sides check in the
//! handshake, `connect` and `listen` over TCP, the listener type, and the in-process pair.

use proc_macro2::TokenStream;
use quote::quote;

use super::Gen;
use super::body::rt;
use super::names;
use crate::ir::EndpointId;

impl Gen<'_> {
    pub(super) fn sequence_table(&self) -> TokenStream {
        let rt = rt();
        let infos: Vec<TokenStream> = self
            .p
            .sequences
            .iter()
            .map(|s| {
                let name = &s.name;
                let blocks = s.blocks.len() as u32;
                let locals = s.data.len() as u32;
                let (a, b) = if self.p.symmetric { (true, true) } else { (s.starter() == EndpointId(0), s.starter() == EndpointId(1)) };
                quote!(#rt::SequenceInfo { name: #name, blocks: #blocks, locals: #locals, starters: [#a, #b] })
            })
            .collect();
        quote! {
            /// The protocol's sequences, as the connection engine checks messages against them.
            fn sequences() -> Vec<#rt::SequenceInfo> {
                Vec::from([#(#infos),*])
            }
        }
    }

    /// What both sides of a TCP connection check in the handshake.
    pub(super) fn pair_spec(&self) -> TokenStream {
        let rt = rt();
        let protocol = &self.p.name;
        let (a, b) = (&self.p.endpoints[0].name, &self.p.endpoints[1].name);
        quote! {
            /// What both sides of a connection check in the handshake.
            static PAIR: #rt::PairSpec = #rt::PairSpec {
                protocol: #protocol,
                fingerprint: FINGERPRINT,
                endpoints: [#a, #b],
                sequences,
            };
        }
    }

    /// `connect`, `connect_with`, `listen` and `listen_with` for endpoint `e` of a pair.
    pub(super) fn tcp_constructors(&self, e: EndpointId) -> TokenStream {
        let rt = rt();
        let ep = &self.p.endpoints[e];
        let partner = &self.p.endpoints[e.partner()].name;
        let listener = &self.listeners[e.index()];
        let side = e.index() as u8;
        let params = ep.on_create.as_ref().map(|f| self.host_params(f, "", false)).unwrap_or_default();
        let (decls, values, generics) = (&params.decls, &params.values, params.generics());
        let connect_doc = format!(
            " Connects to a `{partner}` listening at `addr`: the handshake, then both sides' `onCreate` (this side's with the arguments given); returns once both sides are ready."
        );
        let listen_doc = format!(
            " Listens at `addr` for `{partner}` endpoints; each connection that completes the handshake waits in the listener until [`{listener}::accept`] takes it."
        );
        quote! {
            #[doc = #connect_doc]
            pub async fn connect #generics(addr: impl ::waldo::ToSocketAddrs, #(#decls),*) -> Result<Self, ::waldo::Error> {
                let args: Vec<#rt::Value> = Vec::from([#(#values),*]);
                Self::connect_args(addr, &::waldo::TcpOptions::default(), args).await
            }

            /// Like `connect`, with connection options (heartbeats, frame size, handshake time limit).
            pub async fn connect_with #generics(addr: impl ::waldo::ToSocketAddrs, tcp: &::waldo::TcpOptions, #(#decls),*) -> Result<Self, ::waldo::Error> {
                let args: Vec<#rt::Value> = Vec::from([#(#values),*]);
                Self::connect_args(addr, tcp, args).await
            }

            async fn connect_args(addr: impl ::waldo::ToSocketAddrs, tcp: &::waldo::TcpOptions, args: Vec<#rt::Value>) -> Result<Self, ::waldo::Error> {
                let inner = Inner::new_arc();
                let options = ::waldo::CallOptions::default();
                inner.start(&options).await?;
                let program = inner.clone() as ::std::sync::Arc<dyn #rt::Program>;
                let end = #rt::PairEnd { spec: &super::PAIR, side: #side, core: inner.core_arc(), program };
                let pending = #rt::tcp_connect(addr, end, tcp, |link| inner.connect(link)).await?;
                pending.ready(inner.ready(&options, args)).await?;
                Ok(Self::from_inner(inner, options))
            }

            #[doc = #listen_doc]
            pub async fn listen(addr: impl ::waldo::ToSocketAddrs) -> Result<#listener, ::waldo::Error> {
                Self::listen_with(addr, ::waldo::TcpOptions::default()).await
            }

            /// Like `listen`, with the options of every accepted connection and the listener's limits.
            pub async fn listen_with(addr: impl ::waldo::ToSocketAddrs, tcp: ::waldo::TcpOptions) -> Result<#listener, ::waldo::Error> {
                let limits = tcp.clone();
                let listener = ::waldo::Listener::bind_with(addr, &limits, move |stream: ::waldo::Accepted| {
                    let tcp = tcp.clone();
                    async move {
                        let inner = Inner::new_arc();
                        inner.start(&::waldo::CallOptions::default()).await?;
                        let program = inner.clone() as ::std::sync::Arc<dyn #rt::Program>;
                        let end = #rt::PairEnd { spec: &super::PAIR, side: #side, core: inner.core_arc(), program };
                        let pending = #rt::tcp_establish(stream, end, &tcp, |link| inner.connect(link)).await?;
                        Ok((inner, pending))
                    }
                })
                .await?;
                Ok(#listener { listener })
            }
        }
    }

    /// The listener type of endpoint `e` of a pair.
    pub(super) fn listener(&self, e: EndpointId) -> TokenStream {
        let rt = rt();
        let ep = &self.p.endpoints[e];
        let handle = &self.handles[e.index()];
        let listener = &self.listeners[e.index()];
        let params = ep.on_create.as_ref().map(|f| self.host_params(f, "", false)).unwrap_or_default();
        let (decls, values, generics) = (&params.decls, &params.values, params.generics());
        let doc = format!(" A TCP listener that makes a `{}` for each partner that connects.", ep.name);
        let listener_name = listener.to_string();
        quote! {
            #[doc = #doc]
            pub struct #listener {
                listener: ::waldo::Listener<(::std::sync::Arc<Inner>, #rt::Pending)>,
            }

            impl #listener {
                /// The address the listener is bound to (with the port chosen for port 0).
                pub fn local_addr(&self) -> ::std::net::SocketAddr {
                    self.listener.local_addr()
                }

                /// Takes the next partner that completed the handshake, runs this side's
                /// `onCreate` with the arguments given, and returns the endpoint once both
                /// sides are ready. A connection that fails at this point returns its error;
                /// the listener goes on serving the others.
                pub async fn accept #generics(&self, #(#decls),*) -> Result<#handle, ::waldo::Error> {
                    let args: Vec<#rt::Value> = Vec::from([#(#values),*]);
                    let (inner, pending) = self.listener.next().await?;
                    let options = ::waldo::CallOptions::default();
                    pending.ready(inner.ready(&options, args)).await?;
                    Ok(#handle::from_inner(inner, options))
                }

                /// The error of the next connection that failed before `accept` could take
                /// it (a refused handshake, a peer that went away); `None` once stopped.
                pub async fn next_failure(&self) -> Option<::waldo::Error> {
                    self.listener.next_failure().await
                }

                /// Stops accepting connections; endpoints already accepted go on.
                pub fn stop(&self) {
                    self.listener.stop();
                }
            }

            impl ::std::fmt::Debug for #listener {
                fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                    f.debug_struct(#listener_name).field("addr", &self.local_addr()).finish()
                }
            }
        }
    }

    pub(super) fn in_process_pair(&self) -> TokenStream {
        let rt = rt();
        let (a, b) = (&self.p.endpoints[0], &self.p.endpoints[1]);
        let (ma, mb) = (&self.modules[0], &self.modules[1]);
        let (ha, hb) = (&self.handles[0], &self.handles[1]);
        let pa = format!("{}_", names::snake(&a.name));
        let pb = format!("{}_", names::snake(&b.name));
        let pa =
            a.on_create.as_ref().map(|f| self.host_params_avoiding(f, &pa, true, &[])).unwrap_or_default();
        // `Client(pool_size)` and `ClientPool(size)` both prefix to `client_pool_size`.
        let pb = b
            .on_create
            .as_ref()
            .map(|f| {
                self.host_params_avoiding(
                    f,
                    &pb,
                    true,
                    &[pa.names.clone(), pa.generic_names.clone()].concat(),
                )
            })
            .unwrap_or_default();
        let (da, va, db, vb) = (&pa.decls, &pa.values, &pb.decls, &pb.values);
        let both: Vec<&TokenStream> = pa.generics.iter().chain(&pb.generics).collect();
        let generics = if both.is_empty() { quote!() } else { quote!(<#(#both),*>) };
        let doc = format!(
            " Creates a `{}` and a `{}` joined in this process (no sockets, same semantics as a connection), runs both `onCreate`s and returns once both are ready.",
            a.name, b.name
        );
        quote! {
            #[doc = #doc]
            pub async fn in_process_pair #generics(#(#da,)* #(#db),*) -> Result<(#ha, #hb), ::waldo::Error> {
                let args_a: Vec<#rt::Value> = Vec::from([#(#va),*]);
                let args_b: Vec<#rt::Value> = Vec::from([#(#vb),*]);
                let (a, b) = (#ma::Inner::new_arc(), #mb::Inner::new_arc());
                let options = ::waldo::CallOptions::default();
                a.start(&options).await?;
                b.start(&options).await?;
                let (la, lb) = #rt::in_process_pair(
                    (a.core_arc(), a.clone() as ::std::sync::Arc<dyn #rt::Program>),
                    (b.core_arc(), b.clone() as ::std::sync::Arc<dyn #rt::Program>),
                    sequences(),
                );
                a.connect(la);
                b.connect(lb);
                let (ready_a, ready_b) = #rt::join(a.ready(&options, args_a), b.ready(&options, args_b)).await;
                ready_a?;
                ready_b?;
                Ok((#ha::from_inner(a, options.clone()), #hb::from_inner(b, options)))
            }
        }
    }
}
