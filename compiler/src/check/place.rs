//! Writes: assignments (one target or several from a call), the places they write (variables,
//! fields, elements, External places), and the `controls` rule, which decides by the variable
//! at the root of the place whether code on this endpoint may write it.

use waldo_grammar as ast;
use waldo_grammar::{ExprKind, Span};

use super::error::CheckError;
use super::scope::{Binding, Cx};
use super::types::{expect_results, is_dynamic_call};
use super::{Checker, error_expr, texpr};
use crate::ir::*;

impl Checker<'_> {
    pub(super) fn assign(
        &mut self,
        cx: &mut Cx,
        targets: &[ast::Expr],
        op: AssignOp,
        value: &ast::Expr,
    ) -> TStmtKind {
        if let [target] = targets {
            let tgt = self.place(cx, target, false);
            let want = tgt.ty.value().clone();
            let val = if let Some(bin) = op.binary() {
                let v = self.expr(cx, value, Some(&want));
                let v = self.deref(v);
                let result = self.binary_type(bin, &want, &v.ty, target.span.to(value.span));
                if !result.fits(&want) {
                    self.report(CheckError::CompoundAssignType {
                        op,
                        result,
                        target: want.clone(),
                        span: value.span,
                    });
                }
                v
            } else {
                self.expr_expect(cx, value, &want)
            };
            return TStmtKind::Assign { targets: vec![tgt], op, value: val };
        }
        let tgts: Vec<TExpr> = targets.iter().map(|t| self.place(cx, t, false)).collect();
        let val = self.expr(cx, value, None);
        let val = if is_dynamic_call(&val) {
            let tys: Vec<Ty> = tgts.iter().map(|t| t.ty.clone()).collect();
            expect_results(val, &tys)
        } else {
            val
        };
        match &val.ty {
            Ty::Tuple(ts) if ts.len() == tgts.len() => {
                for (i, (t, want)) in ts.iter().zip(&tgts).enumerate() {
                    if !t.value().fits(want.ty.value()) {
                        self.report(CheckError::DestructureType {
                            position: i + 1,
                            found: t.clone(),
                            target: want.ty.clone(),
                            span: targets[i].span,
                        });
                    }
                }
            }
            Ty::Error | Ty::Any => {}
            other => {
                let given = if let Ty::Tuple(ts) = other { ts.len() } else { 1 };
                self.report(CheckError::DestructureCount { targets: tgts.len(), given, span: value.span });
            }
        }
        TStmtKind::Assign { targets: tgts, op, value: val }
    }

    /// Checks an assignment target; `external` admits calls yielding External places.
    pub(super) fn place(&mut self, cx: &mut Cx, e: &ast::Expr, external: bool) -> TExpr {
        match &e.kind {
            ExprKind::Name(name) => match self.lookup(cx, name.as_str()) {
                Some(Binding::Var(v)) => {
                    self.check_write(cx, v, e.span);
                    let ty = self.var_ty(cx, v);
                    if !external && matches!(ty, Ty::External(_)) {
                        self.report(CheckError::AssignToExternal {
                            name: name.name.to_string(),
                            span: e.span,
                        });
                    }
                    texpr(TExprKind::Var(v), ty, e.span)
                }
                Some(_) => {
                    self.report(CheckError::NotAVariable { name: name.name.to_string(), span: e.span });
                    error_expr(e.span)
                }
                None => {
                    self.unknown_name(cx, name);
                    error_expr(e.span)
                }
            },
            ExprKind::Field { base, .. } | ExprKind::Index { base, .. } => {
                // The root variable decides `controls`; the rest is typed as an expression.
                if let Some(root) = root_name(base)
                    && let Some(Binding::Var(v)) = self.lookup(cx, root.as_str())
                {
                    self.check_write(cx, v, e.span);
                }
                let te = self.expr(cx, e, None);
                if let (TExprKind::Index(b, _), false) = (&te.kind, external)
                    && matches!(b.ty.value(), Ty::Text)
                {
                    self.report(CheckError::TextInPlace { span: e.span });
                } else if !external && matches!(te.ty, Ty::External(_)) {
                    // As for an External variable: `=` would replace the cell with a value.
                    self.report(CheckError::AssignToExternalPlace { ty: te.ty.clone(), span: e.span });
                }
                te
            }
            ExprKind::Call { .. } if external => {
                let te = self.expr(cx, e, None);
                if !matches!(te.ty, Ty::External(_) | Ty::Error | Ty::Any) {
                    self.report(CheckError::NotExternalPlace { ty: te.ty.clone(), span: e.span });
                }
                te
            }
            ExprKind::Error => error_expr(e.span),
            _ => {
                self.report(CheckError::NotAPlace { span: e.span });
                error_expr(e.span)
            }
        }
    }

    /// Reports an `extAssign`/`extCopy` target that is not an External place (calls report
    /// this themselves in `place`).
    pub(super) fn external_target(&mut self, target: &TExpr, statement: &'static str, span: Span) {
        if matches!(target.ty, Ty::External(_) | Ty::Error | Ty::Any)
            || matches!(target.kind, TExprKind::Call(..))
        {
            return;
        }
        self.report(CheckError::ExternalTarget { statement, ty: target.ty.clone(), span });
    }

    /// Checks that code on `cx.endpoint` may write `var`.
    pub(super) fn check_write(&mut self, cx: &Cx, var: VarRef, span: Span) {
        if let VarRef::Peered(i) = var
            && let Some(owner) = self.peered[i].owner
            && owner != cx.endpoint
        {
            let name = self.peered[i].var.name.clone();
            let declared = self.peered_names[&name].1;
            self.report(CheckError::ControlsViolation {
                name,
                owner: self.endpoints[owner].name.clone(),
                here: self.endpoints[cx.endpoint].name.clone(),
                span,
                declared,
            });
        }
    }

    /// A container method writes its receiver: `controls` applies to the root variable.
    pub(super) fn container_write(&mut self, cx: &Cx, recv: &TExpr) {
        let mut e = recv;
        loop {
            match &e.kind {
                TExprKind::Var(v) => {
                    self.check_write(cx, *v, recv.loc.0);
                    return;
                }
                TExprKind::Field(b, _) | TExprKind::Index(b, _) | TExprKind::Deref(b) => e = b,
                _ => return,
            }
        }
    }
}

/// The variable at the root of a place like `a.b[c].d`.
fn root_name(e: &ast::Expr) -> Option<&ast::Ident> {
    match &e.kind {
        ExprKind::Name(n) => Some(n),
        ExprKind::Field { base, .. } | ExprKind::Index { base, .. } => root_name(base),
        _ => None,
    }
}
