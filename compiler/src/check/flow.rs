//! Whether a function body always ends in `return` (or an endless loop), on the syntax tree:
//! a function with results must not be able to run off its end.

use waldo_grammar as ast;
use waldo_grammar::{ExprKind, StmtKind};

/// Whether running these statements always ends in `return` (or an endless loop).
pub(super) fn always_returns(stmts: &[ast::Stmt]) -> bool {
    stmts.iter().any(stmt_returns)
}

fn stmt_returns(stmt: &ast::Stmt) -> bool {
    match &stmt.kind {
        StmtKind::Return(_) => true,
        StmtKind::Block(b) => always_returns(&b.stmts),
        StmtKind::If { branches, else_branch } => {
            else_branch.as_ref().is_some_and(|e| stmt_returns(e))
                && branches.iter().all(|b| stmt_returns(&b.body))
        }
        StmtKind::Try { body, catches, finally } => {
            finally.as_ref().is_some_and(|f| always_returns(&f.stmts))
                || always_returns(&body.stmts) && catches.iter().all(|c| always_returns(&c.body.stmts))
        }
        StmtKind::While { cond, body } => matches!(cond.kind, ExprKind::Bool(true)) && !breaks(body),
        // A `for` loop ends when its items do.
        StmtKind::For { .. } => false,
        StmtKind::Decl(_)
        | StmtKind::Assign { .. }
        | StmtKind::Expr(_)
        | StmtKind::Break
        | StmtKind::Continue
        | StmtKind::ExtAssign { .. }
        | StmtKind::ExtCopy { .. }
        | StmtKind::Error => false,
    }
}

/// Whether a loop body contains a `break` for this loop.
fn breaks(stmt: &ast::Stmt) -> bool {
    match &stmt.kind {
        StmtKind::Break => true,
        StmtKind::Block(b) => b.stmts.iter().any(breaks),
        StmtKind::If { branches, else_branch } => {
            branches.iter().any(|b| breaks(&b.body)) || else_branch.as_ref().is_some_and(|e| breaks(e))
        }
        StmtKind::Try { body, catches, finally } => {
            body.stmts.iter().any(breaks)
                || catches.iter().any(|c| c.body.stmts.iter().any(breaks))
                || finally.as_ref().is_some_and(|f| f.stmts.iter().any(breaks))
        }
        // A `break` inside a nested loop leaves that loop.
        StmtKind::While { .. } | StmtKind::For { .. } => false,
        StmtKind::Decl(_)
        | StmtKind::Assign { .. }
        | StmtKind::Expr(_)
        | StmtKind::Continue
        | StmtKind::Return(_)
        | StmtKind::ExtAssign { .. }
        | StmtKind::ExtCopy { .. }
        | StmtKind::Error => false,
    }
}
