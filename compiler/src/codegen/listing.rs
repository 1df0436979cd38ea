//! `waldoc build --list`: the public Rust items of generated code, each with its path and
//! signature, read back from the generated file (so the listing is always what the file
//! holds).

use std::fmt::Write as _;

use quote::ToTokens;

/// The public items of `code` (a file [`super::generate`] made), one per line: items at the
/// path a host names them by (an endpoint's types at the protocol module, where they are
/// re-exported), with the methods of each type indented under it.
pub fn list(code: &str) -> Result<String, super::GenError> {
    let file: syn::File = syn::parse_str(code).map_err(|e| super::GenError::Internal(e.to_string()))?;
    let mut out = String::new();
    for item in &file.items {
        if let syn::Item::Mod(m) = item {
            let path = m.ident.to_string();
            let reexported = reexports(m);
            module(&mut out, &path, m, &path, &reexported);
        }
    }
    Ok(out)
}

/// The names a protocol module re-exports from its endpoint modules.
fn reexports(m: &syn::ItemMod) -> Vec<String> {
    let mut names = Vec::new();
    for item in m.content.iter().flat_map(|(_, items)| items) {
        if let syn::Item::Use(u) = item
            && is_pub(&u.vis)
        {
            collect_use(&u.tree, &mut names);
        }
    }
    names
}

fn collect_use(tree: &syn::UseTree, out: &mut Vec<String>) {
    match tree {
        syn::UseTree::Path(p) => collect_use(&p.tree, out),
        syn::UseTree::Name(n) => out.push(n.ident.to_string()),
        syn::UseTree::Group(g) => g.items.iter().for_each(|t| collect_use(t, out)),
        _ => {}
    }
}

/// Lists the public items of module `m` at `path`; names in `reexported` are listed at
/// `top` instead.
fn module(out: &mut String, path: &str, m: &syn::ItemMod, top: &str, reexported: &[String]) {
    let Some((_, items)) = &m.content else { return };
    let at = |name: &str| {
        if reexported.iter().any(|r| r == name) {
            format!("{top}::{name}")
        } else {
            format!("{path}::{name}")
        }
    };
    for item in items {
        match item {
            syn::Item::Const(c) if is_pub(&c.vis) => {
                let _ = writeln!(
                    out,
                    "pub const {}: {}",
                    at(&c.ident.to_string()),
                    tidy(&c.ty.to_token_stream())
                );
            }
            syn::Item::Fn(f) if is_pub(&f.vis) => {
                let _ = writeln!(out, "{}", signature(&f.sig, &at(&f.sig.ident.to_string())));
            }
            syn::Item::Type(t) if is_pub(&t.vis) => {
                let _ = writeln!(
                    out,
                    "pub type {} = {}",
                    at(&t.ident.to_string()),
                    tidy(&t.ty.to_token_stream())
                );
            }
            syn::Item::Struct(s) if is_pub(&s.vis) => {
                let name = s.ident.to_string();
                let fields: Vec<String> = s
                    .fields
                    .iter()
                    .filter(|f| is_pub(&f.vis))
                    .filter_map(|f| {
                        Some(format!("pub {}: {}", f.ident.as_ref()?, tidy(&f.ty.to_token_stream())))
                    })
                    .collect();
                let body =
                    if fields.is_empty() { String::new() } else { format!(" {{ {} }}", fields.join(", ")) };
                let _ = writeln!(out, "pub struct {}{body}", at(&name));
                for other in items {
                    if let syn::Item::Impl(i) = other
                        && self_is(i, &name)
                    {
                        implementation(out, i);
                    }
                }
            }
            syn::Item::Mod(inner) if is_pub(&inner.vis) => {
                module(out, &format!("{path}::{}", inner.ident), inner, top, reexported);
            }
            _ => {}
        }
    }
}

/// The public methods of an inherent impl, or the trait a trait impl implements.
fn implementation(out: &mut String, i: &syn::ItemImpl) {
    if let Some((t, _)) = &i.trait_ {
        let trait_ = tidy(&t.to_token_stream());
        let target = i.items.iter().find_map(|item| match item {
            syn::ImplItem::Type(t) if t.ident == "Target" => Some(tidy(&t.ty.to_token_stream())),
            _ => None,
        });
        let _ = match target {
            Some(target) => writeln!(out, "    impl {trait_} (Target = {target})"),
            None => writeln!(out, "    impl {trait_}"),
        };
        return;
    }
    for item in &i.items {
        if let syn::ImplItem::Fn(f) = item
            && is_pub(&f.vis)
        {
            let _ = writeln!(out, "    {}", signature(&f.sig, &f.sig.ident.to_string()));
        }
    }
}

fn self_is(i: &syn::ItemImpl, name: &str) -> bool {
    matches!(&*i.self_ty, syn::Type::Path(p) if p.path.is_ident(name))
}

fn is_pub(vis: &syn::Visibility) -> bool {
    matches!(vis, syn::Visibility::Public(_))
}

/// `pub [async] fn name<..>(params) -> ret`, printed as prettyplease prints it, on one line.
fn signature(sig: &syn::Signature, name: &str) -> String {
    let ident = sig.ident.to_string();
    let file: syn::File = syn::parse_quote!(pub #sig {});
    let printed = prettyplease::unparse(&file);
    let one_line = printed.lines().map(str::trim).collect::<Vec<_>>().join(" ");
    let one_line = one_line.trim_end_matches("{}").trim_end().replace("( ", "(").replace(", )", ")");
    // Endpoint modules import `waldo::Result` and `waldo::Call`; a listing is read out of
    // that context.
    let one_line =
        one_line.replace("-> Result<", "-> waldo::Result<").replace("-> impl Call<", "-> impl waldo::Call<");
    tidy_text(&one_line.replacen(&format!("fn {ident}"), &format!("fn {name}"), 1))
}

fn tidy(tokens: &proc_macro2::TokenStream) -> String {
    let ty: Result<syn::Type, _> = syn::parse2(tokens.clone());
    let text = match ty {
        Ok(ty) => {
            let file: syn::File = syn::parse_quote!(type T = #ty;);
            let printed = prettyplease::unparse(&file);
            let one_line = printed.lines().map(str::trim).collect::<Vec<_>>().join(" ");
            one_line.trim_start_matches("type T = ").trim_end_matches(';').to_owned()
        }
        Err(_) => tokens.to_string(),
    };
    tidy_text(&text)
}

/// Paths as a host writes them: `waldo::X`, `std::X`.
fn tidy_text(text: &str) -> String {
    text.replace("::waldo::", "waldo::").replace("::std::", "std::")
}
