//! Partitioning: the code each endpoint runs. Its functions reachable from its public
//! functions, `onCreate`, initializers and blocks, and what that code needs of the module
//! around it (`self` as a value, a link to start sequences on).

use super::Gen;
use crate::ir::visit::{for_each_expr, for_each_subexpr};
use crate::ir::{Callee, EndpointId, FunctionId, TExpr, TExprKind, TStmt};

impl Gen<'_> {
    /// The functions of endpoint `e` that can run: reachable from its public functions,
    /// `onCreate`, initializers and blocks.
    pub(super) fn reachable(&self, e: EndpointId) -> Vec<FunctionId> {
        let ep = &self.p.endpoints[e];
        let mut seen = vec![false; ep.functions.len()];
        let mut todo: Vec<FunctionId> =
            ep.functions.iter().enumerate().filter(|(_, f)| f.public).map(|(i, _)| FunctionId(i)).collect();
        let mut roots: Vec<&[TStmt]> = Vec::new();
        let mut root_exprs: Vec<&TExpr> = Vec::new();
        if let Some(c) = &ep.on_create {
            roots.push(&c.body);
            root_exprs.extend(c.locals.iter().filter_map(|v| v.init.as_ref()));
        }
        root_exprs.extend(ep.globals.iter().filter_map(|g| g.init.as_ref()));
        root_exprs.extend(self.p.peered.iter().filter_map(|v| v.var.init.as_ref()));
        for (s, b, _) in self.p.blocks_on(e) {
            let block = &self.p.sequences[s].blocks[b];
            roots.push(&block.body);
            root_exprs.extend(block.locals.iter().filter_map(|v| v.init.as_ref()));
            if b == 0 {
                root_exprs.extend(self.p.sequences[s].data.iter().filter_map(|v| v.init.as_ref()));
            }
        }
        let mut calls = Vec::new();
        for r in roots {
            for_each_expr(r, |x| collect_calls(x, &mut calls));
        }
        for x in root_exprs {
            for_each_subexpr(x, |x| collect_calls(x, &mut calls));
        }
        todo.extend(calls);
        while let Some(f) = todo.pop() {
            if f.index() >= seen.len() || seen[f.index()] {
                continue;
            }
            seen[f.index()] = true;
            let func = &ep.functions[f];
            let mut more = Vec::new();
            for_each_expr(&func.body, |x| collect_calls(x, &mut more));
            for v in &func.locals {
                if let Some(i) = &v.init {
                    for_each_subexpr(i, |x| collect_calls(x, &mut more));
                }
            }
            todo.extend(more);
        }
        (0..seen.len()).filter(|&i| seen[i]).map(FunctionId).collect()
    }

    /// All the code endpoint `e` runs, for scans.
    fn code_of<'a>(&'a self, e: EndpointId, reachable: &[FunctionId]) -> (Vec<&'a [TStmt]>, Vec<&'a TExpr>) {
        let ep = &self.p.endpoints[e];
        let mut stmts: Vec<&[TStmt]> = reachable.iter().map(|&f| ep.functions[f].body.as_slice()).collect();
        let mut exprs: Vec<&TExpr> = Vec::new();
        if let Some(c) = &ep.on_create {
            stmts.push(&c.body);
            exprs.extend(c.locals.iter().filter_map(|v| v.init.as_ref()));
        }
        exprs.extend(ep.globals.iter().filter_map(|g| g.init.as_ref()));
        exprs.extend(self.p.peered.iter().filter_map(|v| v.var.init.as_ref()));
        if self.pair() {
            for (s, b, _) in self.p.blocks_on(e) {
                stmts.push(&self.p.sequences[s].blocks[b].body);
                exprs.extend(self.p.sequences[s].blocks[b].locals.iter().filter_map(|v| v.init.as_ref()));
                if b == 0 {
                    exprs.extend(self.p.sequences[s].data.iter().filter_map(|v| v.init.as_ref()));
                }
            }
        }
        for &f in reachable {
            exprs.extend(ep.functions[f].locals.iter().filter_map(|v| v.init.as_ref()));
        }
        (stmts, exprs)
    }

    fn any_expr(&self, e: EndpointId, reachable: &[FunctionId], pred: &dyn Fn(&TExpr) -> bool) -> bool {
        let (stmts, exprs) = self.code_of(e, reachable);
        let mut found = false;
        for s in stmts {
            for_each_expr(s, |x| found |= pred(x));
        }
        for x in exprs {
            for_each_subexpr(x, |x| found |= pred(x));
        }
        found
    }

    pub(super) fn uses_self(&self, e: EndpointId, reachable: &[FunctionId]) -> bool {
        self.any_expr(e, reachable, &|x| matches!(x.kind, TExprKind::SelfRef))
    }

    pub(super) fn starts_sequences(&self, e: EndpointId, reachable: &[FunctionId]) -> bool {
        self.pair()
            && self.any_expr(
                e,
                reachable,
                &|x| matches!(&x.kind, TExprKind::Call(c, _) if matches!(**c, Callee::Sequence(_))),
            )
    }
}

fn collect_calls(x: &TExpr, out: &mut Vec<FunctionId>) {
    if let TExprKind::Call(c, _) = &x.kind
        && let Callee::Function(f) = **c
    {
        out.push(f);
    }
}
