//! Types: resolving written types, reading Externals as values, fitting a value to the type
//! expected of it (dynamic endpoint calls take the types they are expected to have), and the
//! operand and result types of the binary operators.

use waldo_grammar as ast;
use waldo_grammar::{Span, TypeKind};

use super::error::{CheckError, Expectation};
use super::{Checker, texpr};
use crate::ir::*;

impl Checker<'_> {
    /// Resolves a written type. `allow_nothing` admits `Nothing` (only in function types).
    pub(super) fn resolve_ty(&mut self, ty: &ast::Type, allow_nothing: bool) -> Ty {
        match &ty.kind {
            TypeKind::Number => Ty::Number,
            TypeKind::Text => Ty::Text,
            TypeKind::TrueFalse => Ty::Bool,
            TypeKind::Endpoint => Ty::Endpoint,
            TypeKind::Nothing => {
                if !allow_nothing {
                    self.report(CheckError::NothingAsData { span: ty.span });
                    return Ty::Error;
                }
                Ty::Nothing
            }
            TypeKind::List(elem) => Ty::List(Box::new(self.resolve_ty(elem, false))),
            TypeKind::Map(k, v) => {
                let key = self.resolve_ty(k, false);
                if !matches!(key, Ty::Number | Ty::Text | Ty::Bool | Ty::Error) {
                    self.report(CheckError::MapKeyType { ty: key.clone(), span: k.span });
                }
                Ty::Map(Box::new(key), Box::new(self.resolve_ty(v, false)))
            }
            TypeKind::Struct(name) => match self.struct_names.get(name.as_str()) {
                Some(&(id, _)) => Ty::Struct(id),
                None => {
                    self.report(CheckError::UnknownStruct { name: name.name.to_string(), span: name.span });
                    Ty::Error
                }
            },
            TypeKind::Function { params, returns } => {
                let mut list = |types: &[ast::Type]| -> Vec<Ty> {
                    if let [only] = types
                        && only.kind == TypeKind::Nothing
                    {
                        return Vec::new();
                    }
                    types.iter().map(|t| self.resolve_ty(t, false)).collect()
                };
                let params = list(params);
                let returns = list(returns);
                Ty::Function(Box::new(FnSig { params, returns }))
            }
            TypeKind::External(inner) => {
                if matches!(inner.kind, TypeKind::External(_)) {
                    self.report(CheckError::NestedExternal { span: ty.span });
                    return Ty::Error;
                }
                Ty::External(Box::new(self.resolve_ty(inner, false)))
            }
        }
    }

    /// Reads an External as its value.
    pub(super) fn deref(&mut self, te: TExpr) -> TExpr {
        match &te.ty {
            Ty::External(inner) => {
                let ty = (**inner).clone();
                let span = te.loc.0;
                texpr(TExprKind::Deref(Box::new(te)), ty, span)
            }
            _ => te,
        }
    }

    /// Adapts `te` to `expected` (reading Externals as values) or reports a mismatch; `what`
    /// says where the value is expected.
    pub(super) fn coerce(&mut self, te: TExpr, expected: &Ty, what: Expectation) -> TExpr {
        let te = if matches!(expected, Ty::External(_)) { te } else { self.deref(te) };
        let te = match expected {
            Ty::External(_) | Ty::Error | Ty::Any => te,
            _ => expect_results(te, std::slice::from_ref(expected)),
        };
        if matches!(te.ty, Ty::Nothing) {
            self.report(CheckError::NoValue { span: te.loc.0 });
            return te;
        }
        if let Ty::Tuple(ts) = &te.ty {
            self.report(CheckError::SeveralValues { count: ts.len(), expected: what, span: te.loc.0 });
            return te;
        }
        if !te.ty.fits(expected) {
            self.report(CheckError::Mismatch {
                expected: expected.clone(),
                found: te.ty.clone(),
                expectation: what,
                span: te.loc.0,
            });
        }
        te
    }

    /// The result type of `l op r`, reporting operands the operator does not take (at
    /// `op_span`, the operator).
    pub(super) fn binary_type(&mut self, op: BinOp, l: &Ty, r: &Ty, op_span: Span) -> Ty {
        let unknown = |t: &Ty| matches!(t, Ty::Error | Ty::Any);
        let bad = |this: &mut Self| {
            this.report(CheckError::BadOperands { op, left: l.clone(), right: r.clone(), span: op_span });
        };
        match op {
            BinOp::Add => {
                if unknown(l) || unknown(r) {
                    return if unknown(l) { r.clone() } else { l.clone() };
                }
                match (l, r) {
                    (Ty::Number, Ty::Number) => Ty::Number,
                    (Ty::Text, Ty::Text) => Ty::Text,
                    _ => {
                        bad(self);
                        Ty::Error
                    }
                }
            }
            BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Rem => {
                if !(l.fits(&Ty::Number) && r.fits(&Ty::Number)) {
                    bad(self);
                    return Ty::Error;
                }
                Ty::Number
            }
            BinOp::And | BinOp::Or => {
                if !(l.fits(&Ty::Bool) && r.fits(&Ty::Bool)) {
                    bad(self);
                    return Ty::Error;
                }
                Ty::Bool
            }
            BinOp::Eq | BinOp::Ne => {
                if !l.fits(r) || matches!(l, Ty::Nothing | Ty::Tuple(_)) {
                    bad(self);
                }
                Ty::Bool
            }
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                let ok = unknown(l) && unknown(r)
                    || matches!((l, r), (Ty::Number, Ty::Number) | (Ty::Text, Ty::Text))
                    || unknown(l) && matches!(r, Ty::Number | Ty::Text)
                    || unknown(r) && matches!(l, Ty::Number | Ty::Text);
                if !ok {
                    bad(self);
                }
                Ty::Bool
            }
            BinOp::In | BinOp::NotIn => {
                let ok = match r {
                    // An External element is compared by its value.
                    Ty::List(t) => l.value().fits(t.value()),
                    Ty::Map(k, _) => l.fits(k),
                    Ty::Text => l.fits(&Ty::Text),
                    t => unknown(t),
                };
                if !ok {
                    bad(self);
                }
                Ty::Bool
            }
        }
    }
}

/// Whether `te` calls a function of an endpoint the checker could not identify (its results
/// are known only at run time).
pub(super) fn is_dynamic_call(te: &TExpr) -> bool {
    te.ty == Ty::Any
        && matches!(&te.kind, TExprKind::Call(c, _) if matches!(**c, Callee::Endpoint { resolved: None, .. }))
}

/// A dynamic call whose results the caller takes back as values of types `tys`: the runtime
/// checks them, and the expression has those types from here on. Any other `te` as it is.
pub(super) fn expect_results(mut te: TExpr, tys: &[Ty]) -> TExpr {
    if !is_dynamic_call(&te) {
        return te;
    }
    let tys: Vec<Ty> = tys.iter().map(|t| t.value().clone()).collect();
    if let TExprKind::Call(c, _) = &mut te.kind
        && let Callee::Endpoint { results, .. } = &mut **c
    {
        *results = Some(tys.clone());
    }
    te.ty = match tys.as_slice() {
        [] => Ty::Nothing,
        [one] => one.clone(),
        many => Ty::Tuple(many.to_vec()),
    };
    te
}
