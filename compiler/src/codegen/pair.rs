//! What only a pair of endpoints has: the sequence table and the spec both sides check in the
//! handshake, `connect` and `listen` over TCP, the listener type, and the in-process pair.

use proc_macro2::TokenStream;
use quote::quote;

use super::Gen;
use super::body::rt;
use super::names;
use crate::ir::{EndpointId, Ty};

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
        let spec = quote!(#rt::PairSpec::new(#protocol, FINGERPRINT, [#a, #b], &[#(#infos),*]));
        match self.shapes() {
            Some((statics, peered, data)) => {
                // One constant per distinct list of sequence data shapes.
                let mut lists: Vec<String> = Vec::new();
                let mut consts = TokenStream::new();
                let data: Vec<proc_macro2::Ident> = data
                    .iter()
                    .map(|shapes| {
                        let key = quote!(#(#shapes),*).to_string();
                        let n = lists.iter().position(|l| *l == key).unwrap_or_else(|| {
                            let name = quote::format_ident!("DATA_{}", lists.len());
                            consts.extend(quote! {
                                const #name: &[&#rt::Shape] = &[#(#shapes),*];
                            });
                            lists.push(key);
                            lists.len() - 1
                        });
                        quote::format_ident!("DATA_{}", n)
                    })
                    .collect();
                quote! {
                    #statics
                    /// The shapes of the sequences' data (see `PAIR`).
                    #consts
                    /// What both sides of a connection check in the handshake, and the shapes
                    /// of the values they send each other.
                    static PAIR: #rt::PairSpec = #spec.with_shapes(&[#(#peered),*], &[#(#data),*]);
                }
            }
            None => quote! {
                /// What both sides of a connection check in the handshake.
                static PAIR: #rt::PairSpec = #spec;
            },
        }
    }

    /// The shapes of the peered variables (`("name", &shape)`) and of each sequence's data,
    /// and a static for each struct they use (`SHAPE_<n>` for struct `n`, which a recursive
    /// struct refers to); `None` when there is no shared data at all.
    fn shapes(&self) -> Option<(TokenStream, Vec<TokenStream>, Vec<Vec<TokenStream>>)> {
        let mut structs = vec![false; self.p.structs.len()];
        let peered: Vec<TokenStream> = self
            .p
            .peered
            .iter()
            .map(|v| {
                let (name, shape) = (&v.var.name, self.shape(&v.var.ty, &mut structs)?);
                Some(quote!((#name, #shape)))
            })
            .collect::<Option<_>>()?;
        let data: Vec<Vec<TokenStream>> = self
            .p
            .sequences
            .iter()
            .map(|s| s.data.iter().map(|v| self.shape(&v.ty, &mut structs)).collect::<Option<_>>())
            .collect::<Option<_>>()?;
        if peered.is_empty() && data.iter().all(Vec::is_empty) {
            return None;
        }
        // The structs used, and those their fields use.
        let mut done = vec![false; structs.len()];
        let mut statics = TokenStream::new();
        while let Some(n) = (0..structs.len()).find(|&n| structs[n] && !done[n]) {
            done[n] = true;
            let def = &self.p.structs[crate::ir::StructId(n)];
            let fields: Vec<TokenStream> =
                def.fields.iter().map(|f| self.shape(&f.ty, &mut structs)).collect::<Option<_>>()?;
            let name = quote::format_ident!("SHAPE_{}", n);
            let doc = format!(" The shape of `Struct {}`.", def.name);
            let rt = rt();
            statics.extend(quote! {
                #[doc = #doc]
                static #name: #rt::Shape = #rt::Shape::Struct(&[#(#fields),*]);
            });
        }
        Some((statics, peered, data))
    }

    /// `&shape` of a value of type `ty` in shared data, marking in `structs` the structs it
    /// uses; `None` for a type shared data cannot hold (the checker refuses Externals,
    /// Functions and Endpoints there), which leaves the protocol's values unchecked.
    fn shape(&self, ty: &Ty, structs: &mut Vec<bool>) -> Option<TokenStream> {
        let rt = rt();
        Some(match ty {
            Ty::Number => quote!(&#rt::Shape::Number),
            Ty::Text => quote!(&#rt::Shape::Text),
            Ty::Bool => quote!(&#rt::Shape::TrueFalse),
            Ty::List(t) => {
                let t = self.shape(t, structs)?;
                quote!(&#rt::Shape::List(#t))
            }
            Ty::Map(k, v) => {
                let (k, v) = (self.shape(k, structs)?, self.shape(v, structs)?);
                quote!(&#rt::Shape::Map(#k, #v))
            }
            Ty::Struct(id) => {
                structs[id.index()] = true;
                let name = quote::format_ident!("SHAPE_{}", id.index());
                quote!(&#name)
            }
            _ => return None,
        })
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
                    pub type #listener = ::waldo::EndpointListener<#handle>;
                };
            }
        };
        let (decls, values, generics) = (&params.decls, &params.values, params.generics());
        quote! {
            #[doc = #doc]
            #[derive(Debug)]
            pub struct #listener {
                listener: ::waldo::EndpointListener<#handle>,
            }

            impl #listener {
                /// Takes the next partner that completed the handshake, runs this side's
                /// `onCreate` with the arguments given, and returns the endpoint once both
                /// sides are ready.
                pub async fn accept #generics(&self, #(#decls),*) -> Result<#handle> {
                    self.listener.accept_args(Vec::from([#(#values),*])).await
                }
            }

            impl From<::waldo::EndpointListener<#handle>> for #listener {
                fn from(listener: ::waldo::EndpointListener<#handle>) -> Self {
                    #listener { listener }
                }
            }

            impl ::std::ops::Deref for #listener {
                type Target = ::waldo::EndpointListener<#handle>;

                fn deref(&self) -> &::waldo::EndpointListener<#handle> {
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
            pub async fn in_process_pair #generics(#(#da,)* #(#db),*) -> ::waldo::Result<(#ha, #hb)> {
                #rt::join_in_process(Vec::from([#(#va),*]), Vec::from([#(#vb),*])).await
            }

            #[doc = #loopback_doc]
            pub async fn loopback_pair #generics(#(#da,)* #(#db),*) -> ::waldo::Result<(#ha, #hb)> {
                #rt::join_loopback(Vec::from([#(#va),*]), Vec::from([#(#vb),*])).await
            }
        }
    }
}
