//! Expressions: literals (an empty `[]` or `{}` typed by what the context expects), names,
//! operators, fields and indexing. Calls are in `call`.

use waldo_grammar as ast;
use waldo_grammar::{ExprKind, Span};

use super::scope::{Binding, Cx};
use super::{Checker, error_expr, texpr};
use crate::codes::*;
use crate::ir::*;

impl Checker<'_> {
    pub(super) fn expr_expect(&mut self, cx: &mut Cx, e: &ast::Expr, expected: &Ty) -> TExpr {
        let te = self.expr(cx, e, Some(expected));
        self.coerce(te, expected, "expected")
    }

    /// Types an expression; `hint` is the type the context expects (it types `[]` and `{}`).
    pub(super) fn expr(&mut self, cx: &mut Cx, e: &ast::Expr, hint: Option<&Ty>) -> TExpr {
        let span = e.span;
        match &e.kind {
            ExprKind::Number(n) => texpr(TExprKind::Number(Num(*n)), Ty::Number, span),
            ExprKind::Text(t) => texpr(TExprKind::Text(t.clone()), Ty::Text, span),
            ExprKind::Bool(b) => texpr(TExprKind::Bool(*b), Ty::Bool, span),
            ExprKind::SelfRef => texpr(TExprKind::SelfRef, Ty::Endpoint, span),
            ExprKind::Error => error_expr(span),
            ExprKind::Name(name) => match self.lookup(cx, name.as_str()) {
                Some(Binding::Var(v)) => {
                    if let VarRef::Local(i) = v {
                        cx.mark_used(i);
                    }
                    let ty = self.var_ty(cx, v);
                    texpr(TExprKind::Var(v), ty, span)
                }
                Some(Binding::Exception) => {
                    self.error(
                        E_NOT_A_VALUE,
                        format!("`{}` names exceptions, not a value", name.name),
                        span,
                        "not a value",
                    )
                    .help
                    .push("exception kinds appear only in `catch (Kind as e)`".into());
                    error_expr(span)
                }
                Some(_) => {
                    self.error(
                        E_NOT_A_VALUE,
                        format!("`{}` is a function, not a value", name.name),
                        span,
                        "not a value",
                    )
                    .help
                    .push(format!("call it: `{}(...)`; Function values come from the host", name.name));
                    error_expr(span)
                }
                None => {
                    self.unknown_name(cx, name);
                    error_expr(span)
                }
            },
            ExprKind::List(items) => {
                let elem_hint = match hint.map(Ty::value) {
                    Some(Ty::List(t)) => Some((**t).clone()),
                    _ => None,
                };
                if items.is_empty() {
                    return match elem_hint {
                        Some(t) => texpr(TExprKind::List(Vec::new()), Ty::List(Box::new(t)), span),
                        None => {
                            self.error(
                                E_CANNOT_INFER,
                                "the element type of `[]` cannot be known here",
                                span,
                                "empty list",
                            )
                            .help
                            .push(
                                "declare a variable with its type first: `List(element: Number) l = [];`"
                                    .into(),
                            );
                            error_expr(span)
                        }
                    };
                }
                let first = self.expr(cx, &items[0], elem_hint.as_ref());
                let first = self.deref(first);
                let elem = elem_hint.unwrap_or_else(|| first.ty.clone());
                let mut out = vec![self.coerce(first, &elem, "expected in this list")];
                for item in &items[1..] {
                    out.push(self.expr_expect(cx, item, &elem));
                }
                texpr(TExprKind::List(out), Ty::List(Box::new(elem)), span)
            }
            ExprKind::Map(entries) => {
                let (kh, vh) = match hint.map(Ty::value) {
                    Some(Ty::Map(k, v)) => (Some((**k).clone()), Some((**v).clone())),
                    _ => (None, None),
                };
                if entries.is_empty() {
                    return match (kh, vh) {
                        (Some(k), Some(v)) => {
                            texpr(TExprKind::Map(Vec::new()), Ty::Map(Box::new(k), Box::new(v)), span)
                        }
                        _ => {
                            self.error(E_CANNOT_INFER, "the key and value types of `{}` cannot be known here", span, "empty map")
                                .help
                                .push("declare a variable with its type first: `Map(from: Text, to: Number) m = {};`".into());
                            error_expr(span)
                        }
                    };
                }
                let k0 = self.expr(cx, &entries[0].0, kh.as_ref());
                let k0 = self.deref(k0);
                let v0 = self.expr(cx, &entries[0].1, vh.as_ref());
                let v0 = self.deref(v0);
                let kt = kh.unwrap_or_else(|| k0.ty.clone());
                let vt = vh.unwrap_or_else(|| v0.ty.clone());
                if !matches!(kt, Ty::Number | Ty::Text | Ty::Bool | Ty::Error | Ty::Any) {
                    let shown = self.ty_name(&kt);
                    self.error(
                        E_BAD_MAP_KEY,
                        format!("a Map cannot have keys of type {shown}"),
                        entries[0].0.span,
                        "not a key type",
                    );
                }
                let mut out = vec![(
                    self.coerce(k0, &kt, "expected as a key"),
                    self.coerce(v0, &vt, "expected as a value"),
                )];
                for (k, v) in &entries[1..] {
                    out.push((self.expr_expect(cx, k, &kt), self.expr_expect(cx, v, &vt)));
                }
                texpr(TExprKind::Map(out), Ty::Map(Box::new(kt), Box::new(vt)), span)
            }
            ExprKind::Unary { op, operand } => {
                let want = if *op == UnaryOp::Neg { Ty::Number } else { Ty::Bool };
                let inner = self.expr(cx, operand, Some(&want));
                let inner = self.deref(inner);
                if !inner.ty.fits(&want) {
                    let (f, w) = (self.ty_name(&inner.ty), self.ty_name(&want));
                    self.error(
                        E_BAD_OPERANDS,
                        format!("`{}` needs {w}, found {f}", op.as_str()),
                        operand.span,
                        format!("not {w}"),
                    )
                    .help
                    .push(if *op == UnaryOp::Neg {
                        "negate Numbers only".to_owned()
                    } else {
                        "`not` takes a TrueFalse; compare first".to_owned()
                    });
                }
                texpr(TExprKind::Unary(*op, Box::new(inner)), want, span)
            }
            ExprKind::Binary { op, op_span, lhs, rhs } => {
                let membership = matches!(op, BinOp::In | BinOp::NotIn);
                // An empty `[]` or `{}` takes its type from the other operand, on either side.
                let (l, r) = if is_empty_literal(lhs) && !is_empty_literal(rhs) && !membership {
                    let r = self.expr(cx, rhs, None);
                    let r = self.deref(r);
                    let l = self.expr(cx, lhs, Some(&r.ty));
                    (l, r)
                } else {
                    let l = self.expr(cx, lhs, None);
                    let l = self.deref(l);
                    let rhint = match (&rhs.kind, membership) {
                        (_, false) => Some(l.ty.clone()),
                        (ExprKind::List(_), true) => Some(Ty::List(Box::new(l.ty.clone()))),
                        (ExprKind::Map(_), true) => Some(Ty::Map(Box::new(l.ty.clone()), Box::new(Ty::Any))),
                        (_, true) => None,
                    };
                    let r = self.expr(cx, rhs, rhint.as_ref());
                    (l, r)
                };
                let r = self.deref(r);
                let ty = self.binary_type(*op, &l.ty, &r.ty, *op_span, span);
                texpr(TExprKind::Binary(*op, Box::new(l), Box::new(r)), ty, span)
            }
            ExprKind::Field { base, name } => {
                let b = self.expr(cx, base, None);
                let b = self.deref(b);
                match b.ty.clone() {
                    Ty::Struct(id) => {
                        match self.structs[id].fields.iter().position(|f| f.name == name.as_str()) {
                            Some(i) => {
                                let ty = self.structs[id].fields[i].ty.clone();
                                texpr(TExprKind::Field(Box::new(b), i), ty, span)
                            }
                            None => {
                                let fields: Vec<String> =
                                    self.structs[id].fields.iter().map(|f| format!("`{}`", f.name)).collect();
                                let sname = self.structs[id].name.clone();
                                self.error(
                                    E_UNKNOWN_FIELD,
                                    format!("struct `{sname}` has no field `{}`", name.name),
                                    name.span,
                                    "unknown field",
                                )
                                .help
                                .push(format!("its fields are {}", fields.join(", ")));
                                error_expr(span)
                            }
                        }
                    }
                    Ty::Error | Ty::Any => {
                        self.unknown_result(&b, base.span);
                        error_expr(span)
                    }
                    other => {
                        let shown = self.ty_name(&other);
                        self.error(E_UNKNOWN_FIELD, format!("{shown} has no field `{}`", name.name), name.span, "no such field")
                            .help
                            .push("fields belong to structs; methods are called with parentheses, e.g. `l.append(x)`".into());
                        error_expr(span)
                    }
                }
            }
            ExprKind::Index { base, index } => {
                let b = self.expr(cx, base, None);
                let (key, result) = match b.ty.value() {
                    Ty::List(t) => (Ty::Number, (**t).clone()),
                    Ty::Map(k, v) => ((**k).clone(), (**v).clone()),
                    Ty::Text => (Ty::Number, Ty::Text),
                    Ty::Error | Ty::Any => {
                        self.unknown_result(&b, base.span);
                        (Ty::Error, Ty::Error)
                    }
                    other => {
                        let shown = self.ty_name(other);
                        self.error(
                            E_NOT_INDEXABLE,
                            format!("{shown} cannot be indexed"),
                            base.span,
                            "not a List, Map or Text",
                        )
                        .help
                        .push("`x[i]` reads a List element, a Map value or a Text character".into());
                        (Ty::Error, Ty::Error)
                    }
                };
                let b = self.deref(b);
                let i = self.expr_expect(cx, index, &key);
                texpr(TExprKind::Index(Box::new(b), Box::new(i)), result, span)
            }
            ExprKind::Call { callee, args } => self.call(cx, callee, args, span),
        }
    }

    /// Reports using the result of a call on an endpoint the checker could not identify
    /// where its type must be known (a field, an index, a method, a call of it).
    pub(super) fn unknown_result(&mut self, te: &TExpr, span: Span) {
        if te.ty == Ty::Any {
            self.error(
                E_CANNOT_INFER,
                "the type of this result cannot be known here",
                span,
                "a call on an endpoint the checker cannot identify",
            )
            .help
            .push("store it in a variable of the type you expect first (`Struct S s = e.f();`): the runtime checks it there".into());
        }
    }
}

/// Whether `e` is an empty `[]` or `{}`, whose type must come from elsewhere.
pub(super) fn is_empty_literal(e: &ast::Expr) -> bool {
    matches!(&e.kind, ExprKind::List(items) if items.is_empty())
        || matches!(&e.kind, ExprKind::Map(entries) if entries.is_empty())
}
