//! Partitioning: the code each endpoint runs, its functions reachable from its public
//! functions, `onCreate`, initializers and blocks.

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
}

fn collect_calls(x: &TExpr, out: &mut Vec<FunctionId>) {
    if let TExprKind::Call(c, _) = &x.kind
        && let Callee::Function(f) = **c
    {
        out.push(f);
    }
}
