//! What only a pair of endpoints has: the sequence table and the spec both sides check in the
//! handshake, `connect` and `listen` over TCP, the listener type, and the in-process pair.

use proc_macro2::TokenStream;
use quote::quote;

use super::Gen;
use super::body::rt;
use super::names;
use crate::ir::EndpointId;

impl Gen<'_> {
    /// What both sides of a TCP connection check in the handshake: the protocol, its
    /// fingerprint, its endpoints and its sequences (as the connection engine checks messages
    /// against them).
    pub(super) fn pair_spec(&self) -> TokenStream {
        let rt = rt();
        let infos: Vec<TokenStream> = self
            .p
            .sequences
            .iter()
            .map(|s| {
                let name = &s.name;
                let blocks = s.blocks.len() as u32;
                let locals = s.data.len() as u32;
                let (a, b) = if self.p.symmetric {
                    (true, true)
                } else {
                    (s.starter() == EndpointId(0), s.starter() == EndpointId(1))
                };
                quote!(#rt::SequenceInfo::new(#name, #blocks, #locals, [#a, #b]))
            })
            .collect();
        let protocol = &self.p.name;
        let (a, b) = (&self.p.endpoints[0].name, &self.p.endpoints[1].name);
        quote! {
            /// What both sides of a connection check in the handshake.
            static PAIR: #rt::PairSpec = #rt::PairSpec::new(#protocol, FINGERPRINT, [#a, #b], &[#(#infos),*]);
        }
    }

    /// The listener type of endpoint `e` of a pair: the runtime's listener itself when
    /// `onCreate` takes no arguments, else a wrapper whose `accept` takes them.
    pub(super) fn listener(&self, e: EndpointId) -> TokenStream {
        let ep = &self.p.endpoints[e];
        let handle = &self.handles[e.index()];
        let listener = &self.listeners[e.index()];
        let partner = &self.p.endpoints[e.partner()].name;
        let doc = format!(" A TCP listener that makes a `{}` for each `{partner}` that connects.", ep.name);
        let params = match &ep.on_create {
            Some(f) if f.params > 0 => self.host_params(f, "", false),
            _ => {
                return quote! {
                    #[doc = #doc]
                    pub type #listener = waldo::EndpointListener<#handle>;
                };
            }
        };
        let (decls, values, generics) = (&params.decls, &params.values, params.generics());
        quote! {
            #[doc = #doc]
            #[derive(Debug)]
            pub struct #listener {
                listener: waldo::EndpointListener<#handle>,
            }

            impl #listener {
                /// Takes the next partner that completed the handshake, runs this side's
                /// `onCreate` with the arguments given, and returns the endpoint once both
                /// sides are ready.
                pub async fn accept #generics(&self, #(#decls),*) -> Result<#handle> {
                    self.listener.accept_args(Vec::from([#(#values),*])).await
                }
            }

            impl From<waldo::EndpointListener<#handle>> for #listener {
                fn from(listener: waldo::EndpointListener<#handle>) -> Self {
                    #listener { listener }
                }
            }

            impl ::std::ops::Deref for #listener {
                type Target = waldo::EndpointListener<#handle>;

                fn deref(&self) -> &waldo::EndpointListener<#handle> {
                    &self.listener
                }
            }
        }
    }

    /// `in_process_pair` and `loopback_pair`: both endpoints of the pair, joined in this
    /// process or over loopback TCP.
    pub(super) fn pairs(&self) -> TokenStream {
        let rt = rt();
        let (a, b) = (&self.p.endpoints[0], &self.p.endpoints[1]);
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
        let in_process_doc = format!(
            " Creates a `{}` and a `{}` joined in this process (no sockets, the same semantics as a connection), runs both `onCreate`s and returns once both are ready.",
            a.name, b.name
        );
        let loopback_doc = format!(
            " Creates a `{}` and a `{}` connected over TCP on this machine's loopback interface (the `{}` listens on a port the system picks, the `{}` connects), runs both `onCreate`s and returns once both are ready.",
            a.name, b.name, b.name, a.name
        );
        quote! {
            #[doc = #in_process_doc]
            pub async fn in_process_pair #generics(#(#da,)* #(#db),*) -> waldo::Result<(#ha, #hb)> {
                #rt::join_in_process(Vec::from([#(#va),*]), Vec::from([#(#vb),*])).await
            }

            #[doc = #loopback_doc]
            pub async fn loopback_pair #generics(#(#da,)* #(#db),*) -> waldo::Result<(#ha, #hb)> {
                #rt::join_loopback(Vec::from([#(#va),*]), Vec::from([#(#vb),*])).await
            }
        }
    }
}
