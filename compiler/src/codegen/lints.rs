//! The lints generated code allows: only those its shape can trigger, found by looking at
//! the generated tree, so a small protocol's code carries no list it does not need. The same
//! pass over the tree tidies it ([`tidy_and_scan`]).
//!
//! Each is allowed because the code mirrors how the Waldo program is written, not because
//! the generator is careless:
//! - `unused_assignments`: Waldo code may store values it never reads;
//! - `clippy::redundant_clone`: assigning one local to another clones a shared reference,
//!   redundant at the source's last use, which would take a liveness analysis to find;
//! - `clippy::too_many_arguments`: the program decides how many parameters a function has;
//! - `clippy::only_used_in_recursion`: every function takes the transaction and the
//!   endpoint, even one that only passes them on to itself;
//! - `clippy::never_loop`, `clippy::collapsible_if`, `clippy::collapsible_else_if`,
//!   `clippy::if_same_then_else`, `clippy::needless_return`: loops that always leave, nested
//!   ifs, alike branches and a `return` ending a `finally` are the program's own shape;
//! - `clippy::while_immutable_condition`: a loop whose condition only a `break` or an
//!   exception ends, as the program wrote it;
//! - `clippy::type_complexity`: the nesting of the program's types;
//! - `clippy::upper_case_acronyms`: the case of the program's names;
//! - on operators (Number, TrueFalse and Text values are Rust's own, so the program's
//!   expressions are Rust expressions): `clippy::bool_comparison`, `clippy::nonminimal_bool`,
//!   `clippy::overly_complex_bool_expr`, `clippy::comparison_to_empty`, `clippy::eq_op`,
//!   `clippy::op_ref`, `clippy::neg_multiply`, `clippy::identity_op`, `clippy::erasing_op`,
//!   `clippy::manual_range_contains`, `clippy::double_comparisons`,
//!   `clippy::comparison_chain`, `clippy::neg_cmp_op_on_partial_ord`: `x == True`,
//!   `s != ''`, `x * -1`, `a >= 0 and a < 9` are how the program says it;
//! - on assignments: `clippy::assign_op_pattern`, `clippy::misrefactored_assign_op`,
//!   `clippy::self_assignment`, `clippy::almost_swapped`: `x = x + 1`, `x = x`, and two
//!   assignments that look like a swap, as written;
//! - `clippy::approx_constant`: a literal such as `3.14` is the program's own number, not a
//!   misspelt `PI`.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::visit_mut::VisitMut;

/// Tidies `file` the way a person would write it, and tells what it contains that a lint
/// could fire on, in one pass: integer literals without a type suffix (`0`, not `0usize`),
/// `Vec::new()` for an empty `Vec::from([])`, and, in a function returning `rt::Returns`,
/// `rt::ok([a, b])` for `Ok(Vec::from([a, b]))`.
pub(super) fn tidy_and_scan(file: &mut syn::File) -> Scan {
    let mut scan = Scan::default();
    scan.visit_file_mut(file);
    scan
}

/// The lints to allow on code that contains what `scan` found, as paths.
pub(super) fn allowed(scan: &Scan) -> Vec<TokenStream> {
    let mut out = Vec::new();
    let mut add = |on: bool, lint: TokenStream| {
        if on {
            out.push(lint);
        }
    };
    add(scan.assigns, quote!(unused_assignments));
    add(scan.clones, quote!(clippy::redundant_clone));
    add(scan.many_params, quote!(clippy::too_many_arguments));
    add(scan.recursion, quote!(clippy::only_used_in_recursion));
    add(scan.loops, quote!(clippy::never_loop));
    add(scan.loops, quote!(clippy::while_immutable_condition));
    add(scan.ifs, quote!(clippy::collapsible_if));
    add(scan.ifs, quote!(clippy::collapsible_else_if));
    add(scan.ifs, quote!(clippy::if_same_then_else));
    add(scan.complex_types, quote!(clippy::type_complexity));
    add(scan.acronyms, quote!(clippy::upper_case_acronyms));
    add(scan.returns, quote!(clippy::needless_return));
    add(scan.approx, quote!(clippy::approx_constant));
    for lint in [
        quote!(clippy::bool_comparison),
        quote!(clippy::nonminimal_bool),
        quote!(clippy::overly_complex_bool_expr),
        quote!(clippy::comparison_to_empty),
        quote!(clippy::eq_op),
        quote!(clippy::op_ref),
        quote!(clippy::neg_multiply),
        quote!(clippy::identity_op),
        quote!(clippy::erasing_op),
        quote!(clippy::manual_range_contains),
        quote!(clippy::double_comparisons),
        quote!(clippy::comparison_chain),
        quote!(clippy::neg_cmp_op_on_partial_ord),
    ] {
        add(scan.operators, lint);
    }
    for lint in [
        quote!(clippy::assign_op_pattern),
        quote!(clippy::misrefactored_assign_op),
        quote!(clippy::self_assignment),
        quote!(clippy::almost_swapped),
    ] {
        add(scan.assigns, lint);
    }
    out
}

/// What the generated tree contains that a lint could fire on.
#[derive(Default)]
pub(super) struct Scan {
    assigns: bool,
    clones: bool,
    many_params: bool,
    recursion: bool,
    loops: bool,
    ifs: bool,
    returns: bool,
    complex_types: bool,
    acronyms: bool,
    operators: bool,
    approx: bool,
    /// The function being visited.
    current_fn: Option<String>,
    /// Whether the code being visited is that of a function returning `rt::Returns`, outside
    /// any closure or `async` block in it.
    in_returns: bool,
}

impl Scan {
    /// What this part of the code or `other` contains.
    pub(super) fn merge(&mut self, other: &Scan) {
        self.assigns |= other.assigns;
        self.clones |= other.clones;
        self.many_params |= other.many_params;
        self.recursion |= other.recursion;
        self.loops |= other.loops;
        self.ifs |= other.ifs;
        self.returns |= other.returns;
        self.complex_types |= other.complex_types;
        self.acronyms |= other.acronyms;
        self.operators |= other.operators;
        self.approx |= other.approx;
    }
}

impl VisitMut for Scan {
    fn visit_item_fn_mut(&mut self, f: &mut syn::ItemFn) {
        self.many_params |= f.sig.inputs.len() > 7;
        let outer = self.current_fn.replace(f.sig.ident.to_string());
        let returns = std::mem::replace(&mut self.in_returns, returns_results(&f.sig.output));
        syn::visit_mut::visit_item_fn_mut(self, f);
        self.current_fn = outer;
        self.in_returns = returns;
    }

    // Closures and async blocks return something else.
    fn visit_expr_closure_mut(&mut self, e: &mut syn::ExprClosure) {
        let returns = std::mem::replace(&mut self.in_returns, false);
        syn::visit_mut::visit_expr_closure_mut(self, e);
        self.in_returns = returns;
    }

    fn visit_expr_async_mut(&mut self, e: &mut syn::ExprAsync) {
        let returns = std::mem::replace(&mut self.in_returns, false);
        syn::visit_mut::visit_expr_async_mut(self, e);
        self.in_returns = returns;
    }

    fn visit_lit_int_mut(&mut self, lit: &mut syn::LitInt) {
        if !lit.suffix().is_empty() {
            *lit = syn::LitInt::new(lit.base10_digits(), lit.span());
        }
    }

    fn visit_expr_mut(&mut self, e: &mut syn::Expr) {
        syn::visit_mut::visit_expr_mut(self, e);
        if let syn::Expr::Call(call) = e
            && let Some(array) = vec_from(call)
        {
            if array.elems.is_empty() {
                *e = syn::parse_quote!(Vec::new());
            }
        } else if self.in_returns
            && let syn::Expr::Call(ok) = e
            && let syn::Expr::Path(f) = &*ok.func
            && f.path.is_ident("Ok")
            && ok.args.len() == 1
            && let Some(syn::Expr::Call(from)) = ok.args.first()
            && let Some(array) = vec_from(from)
            && !array.elems.is_empty()
        {
            *e = syn::parse_quote!(rt::ok(#array));
        }
    }

    fn visit_impl_item_fn_mut(&mut self, f: &mut syn::ImplItemFn) {
        self.many_params |= f.sig.inputs.len() > 7;
        syn::visit_mut::visit_impl_item_fn_mut(self, f);
    }

    fn visit_expr_path_mut(&mut self, p: &mut syn::ExprPath) {
        if let (Some(current), Some(last)) = (&self.current_fn, p.path.segments.last())
            && p.path.segments.len() == 1
            && last.ident == current
        {
            self.recursion = true;
        }
        syn::visit_mut::visit_expr_path_mut(self, p);
    }

    fn visit_expr_binary_mut(&mut self, e: &mut syn::ExprBinary) {
        self.operators = true;
        syn::visit_mut::visit_expr_binary_mut(self, e);
    }

    fn visit_expr_unary_mut(&mut self, e: &mut syn::ExprUnary) {
        self.operators |= matches!(e.op, syn::UnOp::Neg(_) | syn::UnOp::Not(_));
        syn::visit_mut::visit_expr_unary_mut(self, e);
    }

    fn visit_expr_assign_mut(&mut self, e: &mut syn::ExprAssign) {
        self.assigns = true;
        syn::visit_mut::visit_expr_assign_mut(self, e);
    }

    fn visit_local_mut(&mut self, l: &mut syn::Local) {
        // A hoisted local is declared first and assigned later.
        self.assigns |= l.init.is_none() && matches!(&l.pat, syn::Pat::Ident(p) if p.mutability.is_some());
        syn::visit_mut::visit_local_mut(self, l);
    }

    fn visit_expr_method_call_mut(&mut self, m: &mut syn::ExprMethodCall) {
        self.clones |= m.method == "clone";
        syn::visit_mut::visit_expr_method_call_mut(self, m);
    }

    fn visit_expr_loop_mut(&mut self, e: &mut syn::ExprLoop) {
        self.loops = true;
        syn::visit_mut::visit_expr_loop_mut(self, e);
    }

    fn visit_expr_while_mut(&mut self, e: &mut syn::ExprWhile) {
        self.loops = true;
        syn::visit_mut::visit_expr_while_mut(self, e);
    }

    fn visit_expr_for_loop_mut(&mut self, e: &mut syn::ExprForLoop) {
        self.loops = true;
        syn::visit_mut::visit_expr_for_loop_mut(self, e);
    }

    fn visit_expr_if_mut(&mut self, e: &mut syn::ExprIf) {
        self.ifs = true;
        syn::visit_mut::visit_expr_if_mut(self, e);
    }

    fn visit_expr_return_mut(&mut self, e: &mut syn::ExprReturn) {
        self.returns = true;
        syn::visit_mut::visit_expr_return_mut(self, e);
    }

    fn visit_type_mut(&mut self, t: &mut syn::Type) {
        // A closure parameter's type (`impl Fn(A, B) -> C + Send + Sync`) counts as complex.
        self.complex_types |= depth(t) >= 4
            || matches!(t, syn::Type::ImplTrait(i) if i.to_token_stream().to_string().contains("Fn"));
        syn::visit_mut::visit_type_mut(self, t);
    }

    fn visit_lit_float_mut(&mut self, l: &mut syn::LitFloat) {
        self.approx |= l.base10_parse::<f64>().is_ok_and(near_a_constant);
    }

    fn visit_item_struct_mut(&mut self, i: &mut syn::ItemStruct) {
        self.acronyms |= acronym(&i.ident);
        syn::visit_mut::visit_item_struct_mut(self, i);
    }

    fn visit_item_type_mut(&mut self, i: &mut syn::ItemType) {
        self.acronyms |= acronym(&i.ident);
        syn::visit_mut::visit_item_type_mut(self, i);
    }
}

/// Whether a function's return type is `rt::Returns`.
fn returns_results(output: &syn::ReturnType) -> bool {
    matches!(output, syn::ReturnType::Type(_, ty)
        if matches!(&**ty, syn::Type::Path(ty)
            if ty.qself.is_none()
                && ty.path.leading_colon.is_none()
                && ty.path.segments.len() == 2
                && ty.path.segments[0].ident == "rt"
                && ty.path.segments[1].ident == "Returns"))
}

/// The array of a call `Vec::from([..])`.
fn vec_from(call: &syn::ExprCall) -> Option<&syn::ExprArray> {
    match (&*call.func, call.args.first()) {
        (syn::Expr::Path(f), Some(syn::Expr::Array(array)))
            if call.args.len() == 1
                && f.qself.is_none()
                && f.path.leading_colon.is_none()
                && f.path.segments.len() == 2
                && f.path.segments[0].ident == "Vec"
                && f.path.segments[1].ident == "from" =>
        {
            Some(array)
        }
        _ => None,
    }
}

/// Whether a number is close to one of the constants clippy's `approx_constant` knows (`PI`,
/// `E`, `SQRT_2`, `LN_2`...), so that a literal written for it could trip the lint.
fn near_a_constant(x: f64) -> bool {
    use std::f64::consts::*;
    [
        E,
        FRAC_1_PI,
        FRAC_1_SQRT_2,
        FRAC_2_PI,
        FRAC_2_SQRT_PI,
        FRAC_PI_2,
        FRAC_PI_3,
        FRAC_PI_4,
        FRAC_PI_6,
        FRAC_PI_8,
        LN_10,
        LN_2,
        LOG10_E,
        LOG2_E,
        LOG2_10,
        LOG10_2,
        PI,
        SQRT_2,
        TAU,
    ]
    .iter()
    .any(|c| (x - c).abs() < c * 0.01)
}

/// Whether a type's name has two capitals in a row (`HTTPServer`, `RPC`).
fn acronym(name: &proc_macro2::Ident) -> bool {
    name.to_string().as_bytes().windows(2).any(|w| w[0].is_ascii_uppercase() && w[1].is_ascii_uppercase())
}

/// How deeply generic arguments, tuples and references nest in `t`.
fn depth(t: &syn::Type) -> usize {
    match t {
        syn::Type::Path(p) => 1 + path_depth(&p.path),
        // `impl Call<T> + '_` counts as much as the `Result<T>` it gives.
        syn::Type::ImplTrait(i) => {
            1 + i
                .bounds
                .iter()
                .map(|b| if let syn::TypeParamBound::Trait(t) = b { path_depth(&t.path) } else { 0 })
                .max()
                .unwrap_or(0)
        }
        syn::Type::Tuple(tt) => 1 + tt.elems.iter().map(depth).max().unwrap_or(0),
        syn::Type::Reference(r) => depth(&r.elem),
        syn::Type::Slice(s) => 1 + depth(&s.elem),
        syn::Type::Array(a) => 1 + depth(&a.elem),
        _ => 1,
    }
}

/// The deepest type among the generic arguments of `path`'s segments.
fn path_depth(path: &syn::Path) -> usize {
    path.segments
        .iter()
        .flat_map(|s| match &s.arguments {
            syn::PathArguments::AngleBracketed(a) => a
                .args
                .iter()
                .filter_map(|a| if let syn::GenericArgument::Type(t) = a { Some(depth(t)) } else { None })
                .collect::<Vec<_>>(),
            _ => Vec::new(),
        })
        .max()
        .unwrap_or(0)
}
