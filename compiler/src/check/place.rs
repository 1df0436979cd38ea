//! Writes: assignments (one target or several from a call), the places they write (variables,
//! fields, elements, External places), and the `controls` rule, which decides by the variable
//! at the root of the place whether code on this endpoint may write it.

use waldo_grammar as ast;
use waldo_grammar::{ExprKind, Span};

use super::scope::{Binding, Cx};
use super::types::{expect_results, is_dynamic_call};
use super::{Checker, error_expr, texpr};
use crate::codes::*;
use crate::diagnostics::Label;
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
                let result = self.binary_type(bin, &want, &v.ty, target.span.to(value.span), value.span);
                if !result.fits(&want) {
                    let (r, w) = (self.ty_name(&result), self.ty_name(&want));
                    self.error(
                        E_MISMATCHED_TYPES,
                        format!("mismatched types: `{}` gives {r}, the target is {w}", op.as_str()),
                        value.span,
                        format!("expected {w}"),
                    );
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
                        let (f, w) = (self.ty_name(t), self.ty_name(&want.ty));
                        self.error(
                            E_MISMATCHED_TYPES,
                            format!("mismatched types: value {} is {f}, its target is {w}", i + 1),
                            targets[i].span,
                            format!("expected {f}"),
                        );
                    }
                }
            }
            Ty::Error | Ty::Any => {}
            other => {
                let n = if let Ty::Tuple(ts) = other { ts.len() } else { 1 };
                self.error(
                    E_VALUE_COUNT,
                    format!(
                        "{} targets but the right side gives {n} value{}",
                        tgts.len(),
                        if n == 1 { "" } else { "s" }
                    ),
                    value.span,
                    format!("gives {n}"),
                )
                .help
                .push("destructure a call that returns exactly as many values as there are targets".into());
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
                        self.error(E_NOT_ASSIGNABLE, format!("`{}` is an External; `=` cannot change it", name.name), e.span, "External variable")
                            .help
                            .push(format!("write the value into the cell with `extCopy value to {};`, or share another cell with `extAssign`", name.name));
                    }
                    texpr(TExprKind::Var(v), ty, e.span)
                }
                Some(_) => {
                    self.error(
                        E_NOT_ASSIGNABLE,
                        format!("`{}` is not a variable", name.name),
                        e.span,
                        "cannot be assigned",
                    )
                    .help
                    .push("only variables, struct fields and List or Map elements can be assigned".into());
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
                    self.error(
                        E_NOT_ASSIGNABLE,
                        "Text cannot be changed in place",
                        e.span,
                        "a character of a Text",
                    )
                    .help
                    .push("build a new Text and assign it to the variable".into());
                }
                te
            }
            ExprKind::Call { .. } if external => {
                let te = self.expr(cx, e, None);
                if !matches!(te.ty, Ty::External(_) | Ty::Error | Ty::Any) {
                    let shown = self.ty_name(&te.ty);
                    self.error(E_NOT_EXTERNAL, format!("the target must be an External place, found {shown}"), e.span, "not an External")
                        .help
                        .push("`extCopy` and `extAssign` write into External variables, elements or calls returning an External".into());
                }
                te
            }
            ExprKind::Error => error_expr(e.span),
            _ => {
                self.error(E_NOT_ASSIGNABLE, "this expression cannot be assigned", e.span, "not a place")
                    .help
                    .push("only variables, struct fields and List or Map elements can be assigned".into());
                error_expr(e.span)
            }
        }
    }

    /// Reports an `extAssign`/`extCopy` target that is not an External place (calls report
    /// this themselves in `place`).
    pub(super) fn external_target(&mut self, target: &TExpr, statement: &str, span: Span) {
        if matches!(target.ty, Ty::External(_) | Ty::Error | Ty::Any)
            || matches!(target.kind, TExprKind::Call(..))
        {
            return;
        }
        let shown = self.ty_name(&target.ty);
        self.error(
            E_NOT_EXTERNAL,
            format!("the target of `{statement}` must be an External, found {shown}"),
            span,
            "not an External",
        )
        .help
        .push("to change an ordinary variable, assign it with `=`".into());
    }

    /// Checks that code on `cx.endpoint` may write `var`.
    pub(super) fn check_write(&mut self, cx: &Cx, var: VarRef, span: Span) {
        if let VarRef::Peered(i) = var
            && let Some(owner) = self.peered[i].owner
            && owner != cx.endpoint
        {
            let (name, owner_name, here) = (
                self.peered[i].var.name.clone(),
                self.endpoints[owner].name.clone(),
                self.endpoints[cx.endpoint].name.clone(),
            );
            let decl = self.peered_names[&name].1;
            self.error(E_CONTROLS_VIOLATION, format!("`{name}` is controlled by `{owner_name}` and cannot be written on `{here}`"), span, format!("written on `{here}`"))
                .with_secondary_mut(Label::new(decl, format!("`{owner_name} controls` this")))
                .help
                .push(format!("write it in code that runs on `{owner_name}` (its functions or its blocks), or remove `{owner_name} controls`"));
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
