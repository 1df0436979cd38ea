//! Expressions: literals (an empty `[]` or `{}` typed by what the context expects), names,
//! operators, fields and indexing. Calls are in `call`.

use waldo_grammar as ast;
use waldo_grammar::{ExprKind, Span};

use super::error::{CheckError, Expectation};
use super::scope::{Binding, Cx};
use super::{Checker, error_expr, texpr};
use crate::ir::*;

impl Checker<'_> {
    pub(super) fn expr_expect(&mut self, cx: &mut Cx, e: &ast::Expr, expected: &Ty) -> TExpr {
        let te = self.expr(cx, e, Some(expected));
        self.coerce(te, expected, Expectation::Expected)
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
                    self.report(CheckError::ExceptionAsValue { name: name.name.to_string(), span });
                    error_expr(span)
                }
                Some(_) => {
                    self.report(CheckError::FunctionAsValue { name: name.name.to_string(), span });
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
                            self.report(CheckError::EmptyList { span });
                            error_expr(span)
                        }
                    };
                }
                let first = self.expr(cx, &items[0], elem_hint.as_ref());
                // Elements of a List of Externals are cells (as `append` takes them).
                let first =
                    if matches!(elem_hint, Some(Ty::External(_))) { first } else { self.deref(first) };
                let elem = elem_hint.unwrap_or_else(|| first.ty.clone());
                let mut out = vec![self.coerce(first, &elem, Expectation::InList)];
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
                            self.report(CheckError::EmptyMap { span });
                            error_expr(span)
                        }
                    };
                }
                let k0 = self.expr(cx, &entries[0].0, kh.as_ref());
                let k0 = self.deref(k0);
                let v0 = self.expr(cx, &entries[0].1, vh.as_ref());
                let v0 = if matches!(vh, Some(Ty::External(_))) { v0 } else { self.deref(v0) };
                let kt = kh.unwrap_or_else(|| k0.ty.clone());
                let vt = vh.unwrap_or_else(|| v0.ty.clone());
                if !matches!(kt, Ty::Number | Ty::Text | Ty::Bool | Ty::Error | Ty::Any) {
                    self.report(CheckError::MapLiteralKey { ty: kt.clone(), span: entries[0].0.span });
                }
                let mut out = vec![(
                    self.coerce(k0, &kt, Expectation::AsKey),
                    self.coerce(v0, &vt, Expectation::AsValue),
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
                    self.report(CheckError::UnaryOperand {
                        op: *op,
                        found: inner.ty.clone(),
                        span: operand.span,
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
                let ty = self.binary_type(*op, &l.ty, &r.ty, *op_span);
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
                                let fields = self.structs[id].fields.iter().map(|f| f.name.clone()).collect();
                                self.report(CheckError::UnknownField {
                                    struct_name: self.structs[id].name.clone(),
                                    field: name.name.to_string(),
                                    fields,
                                    span: name.span,
                                });
                                error_expr(span)
                            }
                        }
                    }
                    Ty::Error | Ty::Any => {
                        self.unknown_result(&b, base.span);
                        error_expr(span)
                    }
                    other => {
                        self.report(CheckError::FieldOfNonStruct {
                            ty: other,
                            field: name.name.to_string(),
                            span: name.span,
                        });
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
                        self.report(CheckError::NotIndexable { ty: other.clone(), span: base.span });
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
            self.report(CheckError::UnknownResult { span });
        }
    }
}

/// Whether `e` is an empty `[]` or `{}`, whose type must come from elsewhere.
pub(super) fn is_empty_literal(e: &ast::Expr) -> bool {
    matches!(&e.kind, ExprKind::List(items) if items.is_empty())
        || matches!(&e.kind, ExprKind::Map(entries) if entries.is_empty())
}
