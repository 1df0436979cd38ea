//! Rust names for Waldo names: `snake_case` for functions, fields and modules,
//! `UpperCamelCase` for types, with Rust keywords escaped (`r#type`, or a trailing `_` for the
//! few words that cannot be raw identifiers).

use proc_macro2::{Ident, Span};

/// Rust's keywords, strict and reserved, in every edition we support.
const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern", "false",
    "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return",
    "self", "Self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where", "while",
    "abstract", "become", "box", "do", "final", "gen", "macro", "override", "priv", "try", "typeof",
    "unsized", "virtual", "yield",
];

/// Keywords that cannot be raw identifiers.
const NOT_RAW: &[&str] = &["crate", "self", "Self", "super", "_"];

/// `getBalance` → `get_balance`; `HTTPServer` → `http_server`; `_x` stays. A name of only
/// underscores and digits (`_`, `__`, `_1`), which Rust reserves or lints against, gets a
/// `v` in front (`v_`, `v__`, `v_1`).
pub fn snake(name: &str) -> String {
    if name.chars().all(|c| c == '_' || c.is_ascii_digit()) {
        return format!("v{name}");
    }
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev = i.checked_sub(1).map(|p| chars[p]);
            let next = chars.get(i + 1).copied();
            let boundary = match prev {
                Some(p) => {
                    p.is_ascii_lowercase()
                        || p.is_ascii_digit()
                        || (p.is_ascii_uppercase() && next.is_some_and(|n| n.is_ascii_lowercase()))
                }
                None => false,
            };
            if boundary && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c == '_' && out.ends_with('_') && out.chars().any(|o| o != '_') {
            // `a__b` → `a_b` (Rust's snake case has no double underscore inside a name);
            // leading underscores stay.
        } else {
            out.push(c);
        }
    }
    out
}

/// `account_info` → `AccountInfo`; `Account` stays.
pub fn camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        if c == '_' {
            upper = true;
            continue;
        }
        if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    // A type name cannot start with a digit (`_1` → `T1`).
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) { format!("T{out}") } else { out }
}

/// `name` as [`ident`] will write it, for the few keywords that cannot be raw identifiers
/// (`crate` → `crate_`): names are made unique after this, so that `crate` and `crate_` do
/// not both become `crate_`.
pub fn escaped(name: String) -> String {
    if NOT_RAW.contains(&name.as_str()) { format!("{name}_") } else { name }
}

/// Names a generated module already uses unqualified (the prelude and the runtime's types,
/// `Result` and `Call`): a protocol struct or endpoint with one of them is named with `Type`
/// after it (`ResultType`, `CallType`).
const TAKEN_TYPES: &[&str] = &[
    "Vec",
    "String",
    "Box",
    "Option",
    "Result",
    "Call",
    "Some",
    "None",
    "Ok",
    "Err",
    "Default",
    "Send",
    "Sync",
    "Fn",
    "Clone",
    "Debug",
    "PartialEq",
    "Inner",
    "Copy",
    "Drop",
    "Iterator",
    "ToString",
    "Into",
    "From",
];

/// The Rust type name for a Waldo struct or endpoint: `UpperCamelCase`, clear of the names
/// generated code uses.
pub fn type_name(name: &str) -> String {
    let c = camel(name);
    if TAKEN_TYPES.contains(&c.as_str()) { format!("{c}Type") } else { c }
}

/// An identifier for `name`, escaped if it is a keyword.
pub fn ident(name: &str) -> Ident {
    if NOT_RAW.contains(&name) {
        Ident::new(&format!("{name}_"), Span::call_site())
    } else if KEYWORDS.contains(&name) {
        Ident::new_raw(name, Span::call_site())
    } else {
        Ident::new(name, Span::call_site())
    }
}

/// Makes `names` unique by appending `_2`, `_3`, ... to later duplicates.
pub fn unique(names: Vec<String>) -> Vec<String> {
    unique_with(names, "_")
}

/// Like [`unique`] for type names (`Server2`, keeping `UpperCamelCase`).
pub fn unique_types(names: Vec<String>) -> Vec<String> {
    unique_with(names, "")
}

fn unique_with(names: Vec<String>, joint: &str) -> Vec<String> {
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::with_capacity(names.len());
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let name = escaped(name);
        let mut candidate = name.clone();
        let mut n = 2;
        // `crate_` and `crate` give `crate_` and `crate_2`, not `crate__2`.
        let joint = if name.ends_with('_') { "" } else { joint };
        while seen.contains(&candidate) {
            candidate = format!("{name}{joint}{n}");
            n += 1;
        }
        seen.insert(candidate.clone());
        out.push(candidate);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_and_keywords() {
        assert_eq!(snake("getBalance"), "get_balance");
        assert_eq!(snake("HTTPServer"), "http_server");
        assert_eq!(snake("already_snake"), "already_snake");
        assert_eq!(snake("_private"), "_private");
        assert_eq!(snake("x2Y"), "x2_y");
        assert_eq!(snake("_"), "v_");
        assert_eq!(snake("__"), "v__");
        assert_eq!(snake("_1"), "v_1");
        assert_eq!(snake("a__b"), "a_b");
        assert_eq!(snake("__lead"), "__lead");
        assert_eq!(camel("account_info"), "AccountInfo");
        assert_eq!(camel("Account"), "Account");
        assert_eq!(camel("_1"), "T1");
        assert_eq!(camel("_"), "T");
        // Clear of the types a generated module names unqualified.
        assert_eq!(type_name("call"), "CallType");
        assert_eq!(type_name("Result"), "ResultType");
        assert_eq!(type_name("Account"), "Account");
        // Escaped first, then made unique: `crate` and `crate_` stay two names.
        assert_eq!(
            unique(vec!["crate".into(), "crate_".into(), "Self".into()]),
            vec!["crate_", "crate_2", "Self_"]
        );
        assert_eq!(ident("type").to_string(), "r#type");
        assert_eq!(ident("crate").to_string(), "crate_");
        assert_eq!(ident("balance").to_string(), "balance");
        assert_eq!(
            unique(vec!["a".into(), "a".into(), "b".into(), "a".into()]),
            vec!["a", "a_2", "b", "a_3"]
        );
    }
}
