//! Statements: blocks (with the warning about unreachable code), declarations, branches and
//! loops, `break` and `continue`, `return` (values counted and typed against the function's
//! results), `try` with its handlers, `extAssign` and `extCopy`.

use waldo_grammar as ast;
use waldo_grammar::{ExprKind, Span, StmtKind};

use super::error::{CheckError, Expectation};
use super::expr::is_empty_literal;
use super::scope::{Binding, Cx};
use super::types::{expect_results, is_dynamic_call};
use super::{Checker, error_expr, loc};
use crate::ir::*;

impl Checker<'_> {
    pub(super) fn block(&mut self, cx: &mut Cx, stmts: &[ast::Stmt]) -> Vec<TStmt> {
        let mut out = Vec::with_capacity(stmts.len());
        let mut left_at: Option<Span> = None;
        let mut warned = false;
        for stmt in stmts {
            if let Some(end) = left_at
                && !warned
            {
                warned = true;
                self.report(CheckError::Unreachable { span: stmt.span, leaves: end });
            }
            if left_at.is_none()
                && matches!(stmt.kind, StmtKind::Return(_) | StmtKind::Break | StmtKind::Continue)
            {
                left_at = Some(stmt.span);
            }
            out.push(self.stmt(cx, stmt));
        }
        out
    }

    /// A statement used as a body (`if`, `while`, `for`): a block's statements, or one.
    fn body(&mut self, cx: &mut Cx, stmt: &ast::Stmt) -> Vec<TStmt> {
        match &stmt.kind {
            StmtKind::Block(b) => self.block(cx, &b.stmts),
            _ => vec![self.stmt(cx, stmt)],
        }
    }

    fn stmt(&mut self, cx: &mut Cx, stmt: &ast::Stmt) -> TStmt {
        let kind = match &stmt.kind {
            StmtKind::Decl(decl) => {
                let ty = self.resolve_ty(&decl.ty, false);
                let init = decl.init.as_ref().map(|e| self.expr_expect(cx, e, &ty));
                let id = self.declare_local(cx, &decl.name, ty, false);
                cx.locals[id].init = init;
                TStmtKind::Decl(id)
            }
            StmtKind::Assign { targets, op, value } => self.assign(cx, targets, *op, value),
            StmtKind::Expr(e) => {
                let te = self.expr(cx, e, None);
                TStmtKind::Expr(te)
            }
            StmtKind::If { branches, else_branch } => {
                let branches = branches
                    .iter()
                    .map(|b| {
                        let cond = self.condition(cx, &b.cond);
                        (cond, self.body(cx, &b.body))
                    })
                    .collect();
                let otherwise = else_branch.as_ref().map(|s| self.body(cx, s));
                TStmtKind::If { branches, otherwise }
            }
            StmtKind::While { cond, body } => {
                let cond = self.condition(cx, cond);
                cx.loops += 1;
                let body = self.body(cx, body);
                cx.loops -= 1;
                TStmtKind::While { cond, body }
            }
            StmtKind::For { ty, var, iter, body } => {
                let declared = ty.as_ref().map(|t| self.resolve_ty(t, false));
                // `for (Number i in [])`: the empty literal's type comes from the variable.
                let hint = if is_empty_literal(iter) {
                    let var_ty = match &declared {
                        Some(d) => Some(d.clone()),
                        None => match self.lookup(cx, var.as_str()) {
                            Some(Binding::Var(v)) => Some(self.var_ty(cx, v)),
                            _ => None,
                        },
                    };
                    var_ty.map(|t| match &iter.kind {
                        ExprKind::Map(_) => Ty::Map(Box::new(t), Box::new(Ty::Any)),
                        _ => Ty::List(Box::new(t)),
                    })
                } else {
                    None
                };
                let iter_t = self.expr(cx, iter, hint.as_ref());
                let elem = match iter_t.ty.value() {
                    Ty::List(t) => (**t).clone(),
                    Ty::Map(k, _) => (**k).clone(),
                    Ty::Text => Ty::Text,
                    Ty::Error | Ty::Any => Ty::Error,
                    other => {
                        self.report(CheckError::NotIterable { ty: other.clone(), span: iter.span });
                        Ty::Error
                    }
                };
                let iter_t = self.deref(iter_t);
                let var_ref = match (ty, declared) {
                    (Some(t), Some(declared)) => {
                        if !elem.fits(&declared) {
                            self.report(CheckError::LoopVariableType {
                                yields: elem,
                                declared: declared.clone(),
                                span: t.span,
                            });
                        }
                        let id = self.declare_local(cx, var, declared, true);
                        cx.mark_used(id);
                        VarRef::Local(id)
                    }
                    _ => match self.lookup(cx, var.as_str()) {
                        Some(Binding::Var(v)) => {
                            let vt = self.var_ty(cx, v);
                            if !elem.fits(&vt) {
                                self.report(CheckError::LoopTargetType {
                                    yields: elem,
                                    name: var.name.to_string(),
                                    ty: vt,
                                    span: var.span,
                                });
                            }
                            self.check_write(cx, v, var.span);
                            v
                        }
                        _ => {
                            self.report(CheckError::UnknownLoopVariable {
                                name: var.name.to_string(),
                                item: elem,
                                span: var.span,
                            });
                            VarRef::Local(cx.add_local(&var.name, Ty::Error, var.span))
                        }
                    },
                };
                cx.loops += 1;
                let body = self.body(cx, body);
                cx.loops -= 1;
                TStmtKind::For { var: var_ref, iter: iter_t, body }
            }
            StmtKind::Break | StmtKind::Continue => {
                let word = if matches!(stmt.kind, StmtKind::Break) { "break" } else { "continue" };
                if cx.loops == 0 {
                    self.report(CheckError::BreakOutsideLoop { keyword: word, span: stmt.span });
                }
                if word == "break" { TStmtKind::Break } else { TStmtKind::Continue }
            }
            StmtKind::Return(values) => self.ret(cx, values, stmt.span),
            StmtKind::Try { body, catches, finally } => {
                let body = self.block(cx, &body.stmts);
                let mut handlers = Vec::new();
                for c in catches {
                    let kind = c.kind().unwrap_or(ExceptionKind::Any);
                    // A clause that an earlier one always takes first never runs.
                    let earlier = catches.iter().take_while(|other| !std::ptr::eq(*other, c)).find(|other| {
                        let k = other.kind().unwrap_or(ExceptionKind::Any);
                        k == ExceptionKind::Any || k == kind
                    });
                    let dead = earlier.is_some();
                    if let Some(earlier) = earlier {
                        self.report(CheckError::UnreachableCatch {
                            kind: c.kind_name.name.to_string(),
                            span: c.kind_name.span,
                            earlier: earlier.kind_name.span,
                        });
                    }
                    // The caught message is visible only inside its clause; like any
                    // variable, it may not redeclare a name that is visible there.
                    let shadowed = cx.scope.get(c.var.as_str()).copied();
                    let id = self.declare_local(cx, &c.var, Ty::Text, false);
                    cx.mark_used(id);
                    let stmts = self.block(cx, &c.body.stmts);
                    cx.scope.remove(c.var.as_str());
                    if let Some(prev) = shadowed {
                        cx.scope.insert(c.var.name.to_string(), prev);
                    }
                    if !dead {
                        handlers.push((kind, id, stmts));
                    }
                }
                let finally = finally.as_ref().map(|f| self.block(cx, &f.stmts));
                TStmtKind::Try { body, catches: handlers, finally }
            }
            StmtKind::ExtAssign { source, target } => {
                let src = self.expr(cx, source, None);
                let tgt = self.place(cx, target, true);
                self.external_target(&tgt, "extAssign", target.span);
                if !matches!(src.ty, Ty::External(_) | Ty::Error | Ty::Any) {
                    self.report(CheckError::ShareNotExternal { ty: src.ty.clone(), span: source.span });
                } else if !src.ty.fits(&tgt.ty) {
                    self.report(CheckError::ShareMismatch {
                        source: src.ty.clone(),
                        target: tgt.ty.clone(),
                        span: source.span,
                    });
                }
                TStmtKind::ExtAssign { source: src, target: tgt }
            }
            StmtKind::ExtCopy { source, target } => {
                let tgt = self.place(cx, target, true);
                self.external_target(&tgt, "extCopy", target.span);
                let inner = match &tgt.ty {
                    Ty::External(t) => (**t).clone(),
                    _ => Ty::Error,
                };
                let src = self.expr_expect(cx, source, &inner);
                TStmtKind::ExtCopy { source: src, target: tgt }
            }
            StmtKind::Block(b) => TStmtKind::Block(self.block(cx, &b.stmts)),
            StmtKind::Error => TStmtKind::Block(Vec::new()),
        };
        TStmt { kind, loc: loc(stmt.span) }
    }

    fn condition(&mut self, cx: &mut Cx, e: &ast::Expr) -> TExpr {
        let te = self.expr(cx, e, Some(&Ty::Bool));
        let te = self.deref(te);
        if !te.ty.fits(&Ty::Bool) {
            self.report(CheckError::ConditionNotBool { ty: te.ty.clone(), span: e.span });
        }
        te
    }

    fn ret(&mut self, cx: &mut Cx, values: &[ast::Expr], span: Span) -> TStmtKind {
        let Some(expected) = cx.returns.clone() else {
            if !values.is_empty() {
                self.report(CheckError::ReturnValueNotAllowed { in_block: cx.sequence.is_some(), span });
            }
            let vals = values.iter().map(|v| self.expr(cx, v, None)).collect();
            return TStmtKind::Return(vals);
        };
        // Flatten calls returning several values.
        let mut checked = Vec::new();
        let mut count = 0;
        for v in values {
            let te = self.expr(cx, v, expected.get(count));
            match &te.ty {
                Ty::Tuple(ts) => count += ts.len(),
                _ => count += 1,
            }
            checked.push(te);
        }
        // A call on an Endpoint the checker cannot identify gives as many values as the
        // list needs (the runtime checks them), when it is the only such call in the list.
        let dynamic: Vec<usize> = (0..checked.len()).filter(|&i| is_dynamic_call(&checked[i])).collect();
        if let [i] = dynamic[..]
            && count != expected.len()
            && count - 1 <= expected.len()
        {
            let slot: usize =
                checked[..i].iter().map(|t| if let Ty::Tuple(ts) = &t.ty { ts.len() } else { 1 }).sum();
            let n = expected.len() - (count - 1);
            let call = std::mem::replace(&mut checked[i], error_expr(span));
            checked[i] = expect_results(call, &expected[slot..slot + n]);
            if n == 0 {
                // No value at all: a list of none, not a value-less call.
                checked[i].ty = Ty::Tuple(Vec::new());
            }
            count = expected.len();
        }
        if count != expected.len() {
            self.report(CheckError::ReturnCount { given: count, expected: expected.len(), span });
            return TStmtKind::Return(checked);
        }
        let mut out = Vec::new();
        let mut slot = 0;
        for te in checked {
            if let Ty::Tuple(ts) = &te.ty {
                for (i, t) in ts.iter().enumerate() {
                    if !t.value().fits(&expected[slot + i]) {
                        self.report(CheckError::ReturnedType {
                            found: t.clone(),
                            expected: expected[slot + i].clone(),
                            position: slot + i + 1,
                            span: te.loc.0,
                        });
                    }
                }
                slot += ts.len();
                out.push(te);
            } else {
                let e = expected[slot].clone();
                out.push(self.coerce(te, &e, Expectation::Returned));
                slot += 1;
            }
        }
        TStmtKind::Return(out)
    }
}
