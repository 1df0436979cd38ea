//! Host types: the Rust type the host sees for each Waldo type, and the protocol's structs as
//! Rust structs that convert to and from values.

use proc_macro2::{Ident, TokenStream};
use quote::quote;

use super::Gen;
use super::body::{default_value, rt};
use super::names;
use crate::ir::{StructId, Ty};

impl Gen<'_> {
    /// The host (Rust) type of a Waldo type.
    pub(super) fn host_ty(&self, ty: &Ty) -> TokenStream {
        match ty {
            Ty::Number => quote!(f64),
            Ty::Text => quote!(String),
            Ty::Bool => quote!(bool),
            Ty::Nothing | Ty::Error | Ty::Any => quote!(()),
            Ty::List(t) => {
                let t = self.host_ty(t);
                quote!(Vec<#t>)
            }
            Ty::Map(k, v) => {
                let v = self.host_ty(v);
                match **k {
                    Ty::Number => quote!(::waldo::NumberMap<#v>),
                    Ty::Bool => quote!(::std::collections::BTreeMap<bool, #v>),
                    _ => quote!(::std::collections::BTreeMap<String, #v>),
                }
            }
            Ty::Struct(id) => {
                let n = &self.structs[id.index()];
                quote!(super::#n)
            }
            Ty::Function(_) => quote!(::waldo::__rt::HostFn),
            // Waldo allows an unbound Endpoint anywhere one is held.
            Ty::Endpoint => quote!(Option<::waldo::EndpointRef>),
            Ty::External(t) => {
                let t = self.host_ty(t);
                quote!(::waldo::External<#t>)
            }
            Ty::Tuple(ts) => {
                let ts: Vec<TokenStream> = ts.iter().map(|t| self.host_ty(t)).collect();
                quote!((#(#ts),*))
            }
        }
    }

    /// The host type of a struct field (types named from inside the protocol module).
    pub(super) fn field_ty(&self, ty: &Ty) -> TokenStream {
        let t = self.host_ty(ty);
        // Inside the protocol module, structs are siblings, not `super::` items.
        let text = t.to_string().replace("super :: ", "");
        text.parse().unwrap_or(t)
    }

    pub(super) fn host_struct(&self, id: StructId) -> TokenStream {
        let rt = rt();
        let s = &self.p.structs[id];
        let name = &self.structs[id.index()];
        let doc = format!(" `Struct {}` of the protocol.", s.name);
        let field_names: Vec<Ident> = names::unique(s.fields.iter().map(|f| names::snake(&f.name)).collect())
            .iter()
            .map(|n| names::ident(n))
            .collect();
        let types: Vec<TokenStream> = s.fields.iter().map(|f| self.field_ty(&f.ty)).collect();
        let n = s.fields.len();
        let idx: Vec<usize> = (0..n).collect();
        let host_bound = Ty::Struct(id).host_bound(&self.p.structs);
        let derives = if host_bound {
            quote!(#[derive(Clone, Debug)])
        } else {
            quote!(#[derive(Clone, Debug, PartialEq)])
        };
        let fields_var = if n == 0 { quote!(_fields) } else { quote!(fields) };
        let fresh = default_value(self.p, &[], &Ty::Struct(id));
        quote! {
            #[doc = #doc]
            #derives
            pub struct #name {
                #(pub #field_names: #types,)*
            }

            impl #rt::IntoValue for #name {
                fn into_value(self) -> #rt::Value {
                    #rt::Value::new_struct(Vec::from([#(#rt::IntoValue::into_value(self.#field_names)),*]))
                }
            }

            impl #rt::Fresh for #name {
                fn fresh() -> #rt::Value {
                    #fresh
                }
            }

            impl #rt::FromValue for #name {
                fn from_committed(value: &#rt::Value) -> Result<Self, ::waldo::Exception> {
                    let #fields_var = #rt::ops::struct_fields(value, #n)?;
                    Ok(#name {
                        #(#field_names: #rt::FromValue::from_committed(&fields[#idx])?,)*
                    })
                }
            }
        }
    }
}
