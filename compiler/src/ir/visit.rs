//! The one walk over checked code: the [`Visit`] trait and the `walk_*` functions its default
//! methods call, in the manner of syn's `visit`.
//!
//! An analysis implements [`Visit`], overrides the methods for the nodes it cares about, and
//! calls the matching `walk_*` function where it wants to go on into a node's parts. The
//! matches here name every statement and expression kind (no `_` arm), so a new kind does not
//! compile until the walk knows what is inside it, and no analysis skips it by accident.
//! [`for_each_expr`] and [`for_each_subexpr`] cover the common case of a closure called on
//! every expression.

use super::{Callee, LocalId, TExpr, TExprKind, TStmt, TStmtKind, VarRef};

/// A visitor of checked code. Each method's default visits the node's parts in source order.
///
/// Expressions are visited outermost first. A local's initializer is not part of its `Decl`
/// statement (it lives in the enclosing function's or block's `locals`), so the walk does not
/// visit it.
pub trait Visit {
    /// A statement list: a body, a branch, a loop body, a `try`, `catch` or `finally` body.
    fn visit_stmts(&mut self, stmts: &[TStmt]) {
        walk_stmts(self, stmts);
    }

    /// A statement.
    fn visit_stmt(&mut self, stmt: &TStmt) {
        walk_stmt(self, stmt);
    }

    /// A local coming into scope: a declaration, or the message of a `catch` clause.
    fn visit_decl(&mut self, local: LocalId) {
        let _ = local;
    }

    /// The variable a `for` loop writes each time round (declared by the loop header or not).
    fn visit_loop_var(&mut self, var: VarRef) {
        let _ = var;
    }

    /// A place written by an assignment, `extAssign` or `extCopy`; by default visited as an
    /// expression.
    fn visit_target(&mut self, target: &TExpr) {
        self.visit_expr(target);
    }

    /// An expression.
    fn visit_expr(&mut self, expr: &TExpr) {
        walk_expr(self, expr);
    }

    /// What a call calls.
    fn visit_callee(&mut self, callee: &Callee) {
        walk_callee(self, callee);
    }
}

/// Visits each statement of `stmts`.
pub fn walk_stmts<V: Visit + ?Sized>(v: &mut V, stmts: &[TStmt]) {
    for stmt in stmts {
        v.visit_stmt(stmt);
    }
}

/// Visits the parts of `stmt`.
pub fn walk_stmt<V: Visit + ?Sized>(v: &mut V, stmt: &TStmt) {
    match &stmt.kind {
        TStmtKind::Decl(local) => v.visit_decl(*local),
        TStmtKind::Assign { targets, op: _, value } => {
            for target in targets {
                v.visit_target(target);
            }
            v.visit_expr(value);
        }
        TStmtKind::Expr(e) => v.visit_expr(e),
        TStmtKind::If { branches, otherwise } => {
            for (cond, body) in branches {
                v.visit_expr(cond);
                v.visit_stmts(body);
            }
            if let Some(body) = otherwise {
                v.visit_stmts(body);
            }
        }
        TStmtKind::While { cond, body } => {
            v.visit_expr(cond);
            v.visit_stmts(body);
        }
        TStmtKind::For { var, iter, body } => {
            v.visit_expr(iter);
            v.visit_loop_var(*var);
            v.visit_stmts(body);
        }
        TStmtKind::Break | TStmtKind::Continue => {}
        TStmtKind::Return(values) => {
            for value in values {
                v.visit_expr(value);
            }
        }
        TStmtKind::Try { body, catches, finally } => {
            v.visit_stmts(body);
            for (_, local, handler) in catches {
                v.visit_decl(*local);
                v.visit_stmts(handler);
            }
            if let Some(body) = finally {
                v.visit_stmts(body);
            }
        }
        TStmtKind::ExtAssign { source, target } | TStmtKind::ExtCopy { source, target } => {
            v.visit_expr(source);
            v.visit_target(target);
        }
        TStmtKind::Block(body) => v.visit_stmts(body),
    }
}

/// Visits the subexpressions of `expr`.
pub fn walk_expr<V: Visit + ?Sized>(v: &mut V, expr: &TExpr) {
    match &expr.kind {
        TExprKind::Number(_)
        | TExprKind::Text(_)
        | TExprKind::Bool(_)
        | TExprKind::Var(_)
        | TExprKind::SelfRef
        | TExprKind::Error => {}
        TExprKind::List(items) => {
            for item in items {
                v.visit_expr(item);
            }
        }
        TExprKind::Map(entries) => {
            for (key, value) in entries {
                v.visit_expr(key);
                v.visit_expr(value);
            }
        }
        TExprKind::Unary(_, x) | TExprKind::Deref(x) | TExprKind::Field(x, _) => v.visit_expr(x),
        TExprKind::Binary(_, a, b) | TExprKind::Index(a, b) => {
            v.visit_expr(a);
            v.visit_expr(b);
        }
        TExprKind::Call(callee, args) => {
            v.visit_callee(callee);
            for arg in args {
                v.visit_expr(arg);
            }
        }
    }
}

/// Visits the expression inside `callee`, if it has one.
pub fn walk_callee<V: Visit + ?Sized>(v: &mut V, callee: &Callee) {
    match callee {
        Callee::Function(_) | Callee::Sequence(_) | Callee::Builtin(_) => {}
        Callee::Value(f) => v.visit_expr(f),
        Callee::Endpoint { target, function: _, resolved: _, results: _ } => v.visit_expr(target),
        Callee::Method(receiver, _) => v.visit_expr(receiver),
    }
}

/// Calls `f` on every expression of `stmts`, outermost first.
pub fn for_each_expr(stmts: &[TStmt], f: impl FnMut(&TExpr)) {
    EachExpr(f).visit_stmts(stmts);
}

/// Calls `f` on `expr` and every expression inside it, outermost first.
pub fn for_each_subexpr(expr: &TExpr, f: impl FnMut(&TExpr)) {
    EachExpr(f).visit_expr(expr);
}

/// The visitor behind [`for_each_expr`] and [`for_each_subexpr`].
struct EachExpr<F>(F);

impl<F: FnMut(&TExpr)> Visit for EachExpr<F> {
    fn visit_expr(&mut self, expr: &TExpr) {
        (self.0)(expr);
        walk_expr(self, expr);
    }
}
