//! Lowering checked code (functions, `onCreate`, sequence blocks) to async Rust over the
//! runtime's `Value`.
//!
//! Every Waldo expression becomes a Rust expression of type `Value` (calls, which may return
//! several values, become a `Vec<Value>` that single-value positions take the first of).
//! Locals are hoisted to the top of the body, since Waldo's scope is the whole function.
//! Operators go through `ops`, whose errors are Waldo's `ApplicationException`s, and every
//! variable or container access through the transaction `tx`, which locks it. A `try` body
//! becomes an async block whose `?` stops at the `try`; `return`, `break` and `continue`
//! inside it leave that block as a `Ctl` value that the code after the `try` acts on once
//! `finally` has run.

use proc_macro2::{Ident, Literal, TokenStream};
use quote::{format_ident, quote};

use crate::ir::visit::{self, Visit, for_each_subexpr};
use crate::ir::{
    AssignOp, BinOp, Builtin, Callee, ExceptionKind, LocalId, Method, Protocol, StructId, TExpr, TExprKind,
    TStmt, TStmtKind, Ty, UnaryOp, Var, VarRef,
};

use super::names;

/// What kind of body is being lowered: it decides what `return` means.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyKind {
    /// A function or `onCreate`: returns `Flow<Vec<Value>>`.
    Function,
    /// A sequence block: returns `Flow<()>`.
    Block,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Frame {
    Loop,
    TryBody,
}

/// The lowering of one body.
pub(super) struct Lower<'p> {
    pub(super) protocol: &'p Protocol,
    kind: BodyKind,
    /// The Rust names of the endpoint's functions.
    fn_names: &'p [Ident],
    locals: &'p [Var],
    /// The Rust names of the body's locals, by local id.
    local_names: Vec<Ident>,
    usage: Usage<'p>,
    frames: Vec<Frame>,
    /// Counter for fresh temporaries.
    fresh: usize,
}

/// How a body uses its locals, to declare each one where Rust wants it: in place with `let`
/// (and `mut` only if assigned again), or hoisted to the top when Waldo's function-wide scope
/// lets code after the declaring block use it.
#[derive(Default)]
pub(super) struct Usage<'p> {
    inits: Vec<Option<&'p TExpr>>,
    read: Vec<bool>,
    assigned: Vec<bool>,
    hoisted: Vec<bool>,
    /// Declared by a `for` header.
    loop_declared: Vec<bool>,
    /// Declared only in code that never runs (after a jump): it keeps its default.
    dead_decl: Vec<bool>,
    /// The block each local is declared in (for-loop variables: the loop's body).
    declared_in: Vec<Option<usize>>,
    path: Vec<usize>,
    blocks: usize,
}

impl<'p> Usage<'p> {
    /// Analyses `body` for its `locals`, the first `params` of them parameters.
    pub(super) fn of(body: &[TStmt], locals: &'p [Var], params: usize) -> Usage<'p> {
        let count = locals.len();
        let mut u = Usage {
            inits: locals.iter().map(|v| v.init.as_ref()).collect(),
            read: vec![false; count],
            assigned: vec![false; count],
            hoisted: vec![false; count],
            loop_declared: vec![false; count],
            dead_decl: vec![false; count],
            declared_in: vec![None; count],
            path: Vec::new(),
            blocks: 0,
        };
        u.path.push(0);
        for p in 0..params.min(count) {
            u.declared_in[p] = Some(0);
        }
        u.stmts_in_new_block(body, true);
        u
    }

    fn stmts_in_new_block(&mut self, stmts: &[TStmt], root: bool) -> usize {
        if !root {
            self.blocks += 1;
            self.path.push(self.blocks);
        }
        let id = *self.path.last().unwrap_or(&0);
        for (i, s) in stmts.iter().enumerate() {
            self.visit_stmt(s);
            if diverges(std::slice::from_ref(s)) {
                // The rest never runs and is not generated; a local declared there may still
                // be named later (function-wide scope), so it is declared at the top.
                for rest in &stmts[i + 1..] {
                    self.hoist_decls(rest);
                }
                break;
            }
        }
        if !root {
            self.path.pop();
        }
        id
    }

    fn hoist_decls(&mut self, s: &TStmt) {
        let mut ids = Vec::new();
        collect_decls(std::slice::from_ref(s), &mut ids);
        for id in ids {
            if let Some(h) = self.hoisted.get_mut(id.index()) {
                *h = true;
            }
            if let Some(d) = self.dead_decl.get_mut(id.index()) {
                *d = true;
            }
        }
    }

    fn touch(&mut self, id: LocalId) {
        if let Some(Some(block)) = self.declared_in.get(id.index())
            && !self.path.contains(block)
            && let Some(h) = self.hoisted.get_mut(id.index())
        {
            *h = true;
        }
    }

    fn read_local(&mut self, id: LocalId) {
        self.touch(id);
        if let Some(r) = self.read.get_mut(id.index()) {
            *r = true;
        }
    }

    fn write_local(&mut self, id: LocalId) {
        self.touch(id);
        if let Some(a) = self.assigned.get_mut(id.index()) {
            *a = true;
        }
    }

    /// Whether local `id` is declared at the top of the body.
    pub(super) fn is_hoisted(&self, id: LocalId) -> bool {
        self.hoisted.get(id.index()).copied().unwrap_or(false)
    }

    /// Whether local `id` is declared by a `for` header.
    pub(super) fn is_loop_declared(&self, id: LocalId) -> bool {
        self.loop_declared.get(id.index()).copied().unwrap_or(false)
    }

    /// Whether local `id` is ever read.
    pub(super) fn is_read(&self, id: LocalId) -> bool {
        self.read.get(id.index()).copied().unwrap_or(false)
    }

    /// Whether local `id` is assigned after its declaration.
    pub(super) fn is_assigned(&self, id: LocalId) -> bool {
        self.assigned.get(id.index()).copied().unwrap_or(false)
    }
}

/// The statements decide scopes (a new block per body; the locals a `for` header or a `catch`
/// clause declares), the expressions decide reads.
impl Visit for Usage<'_> {
    fn visit_stmt(&mut self, s: &TStmt) {
        match &s.kind {
            TStmtKind::Decl(id) => {
                if let Some(Some(init)) = self.inits.get(id.index()).copied() {
                    self.visit_expr(init);
                }
                if let Some(d) = self.declared_in.get_mut(id.index()) {
                    *d = self.path.last().copied();
                }
            }
            TStmtKind::Assign { targets, op, value } => {
                self.visit_expr(value);
                for t in targets {
                    if *op != AssignOp::Assign {
                        self.visit_expr(t);
                    }
                    self.visit_target(t);
                }
            }
            TStmtKind::Expr(_) | TStmtKind::Return(_) | TStmtKind::Break | TStmtKind::Continue => {
                visit::walk_stmt(self, s);
            }
            TStmtKind::If { branches, otherwise } => {
                for (c, b) in branches {
                    self.visit_expr(c);
                    self.stmts_in_new_block(b, false);
                }
                if let Some(b) = otherwise {
                    self.stmts_in_new_block(b, false);
                }
            }
            TStmtKind::While { cond, body } => {
                self.visit_expr(cond);
                self.stmts_in_new_block(body, false);
            }
            TStmtKind::For { var, iter, body } => {
                self.visit_expr(iter);
                if let VarRef::Local(id) = var
                    && self.declared_in.get(id.index()).is_some_and(Option::is_none)
                {
                    // Declared by the loop header: its scope starts with the loop body.
                    self.declared_in[id.index()] = Some(self.blocks + 1);
                    self.loop_declared[id.index()] = true;
                }
                self.blocks += 1;
                self.path.push(self.blocks);
                self.visit_loop_var(*var);
                visit::walk_stmts(self, body);
                self.path.pop();
            }
            TStmtKind::Try { body, catches, finally } => {
                self.stmts_in_new_block(body, false);
                for (_, local, handler) in catches {
                    self.blocks += 1;
                    self.path.push(self.blocks);
                    if let Some(d) = self.declared_in.get_mut(local.index()) {
                        *d = Some(self.blocks);
                    }
                    visit::walk_stmts(self, handler);
                    self.path.pop();
                }
                if let Some(f) = finally {
                    self.stmts_in_new_block(f, false);
                }
            }
            TStmtKind::ExtAssign { source, target } | TStmtKind::ExtCopy { source, target } => {
                self.visit_expr(source);
                self.visit_expr(target);
                self.visit_target(target);
            }
            TStmtKind::Block(body) => {
                self.stmts_in_new_block(body, false);
            }
        }
    }

    fn visit_loop_var(&mut self, var: VarRef) {
        match var {
            VarRef::Local(id) if self.loop_declared[id.index()] => self.touch(id),
            VarRef::Local(id) => self.write_local(id),
            VarRef::SeqData(_) | VarRef::Global(_) | VarRef::Peered(_) => {}
        }
    }

    /// A write to a local (through any `Deref`s); a place inside a container reads it.
    fn visit_target(&mut self, t: &TExpr) {
        match &t.kind {
            TExprKind::Var(VarRef::Local(id)) => self.write_local(*id),
            TExprKind::Deref(inner) => self.visit_target(inner),
            _ => self.visit_expr(t),
        }
    }

    fn visit_expr(&mut self, e: &TExpr) {
        if let TExprKind::Var(VarRef::Local(id)) = e.kind {
            self.read_local(id);
        }
        visit::walk_expr(self, e);
    }
}

/// The runtime's hidden module, as generated modules name it (`use ::waldo::__rt as rt;`).
pub(super) fn rt() -> TokenStream {
    quote!(rt)
}

/// The Rust names for a body's locals: their snake-case names, made unique; a local that is
/// never read starts with `_`.
fn local_idents(locals: &[Var], usage: &Usage<'_>) -> Vec<Ident> {
    let names = names::unique(
        locals
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let unread = if usage.is_read(LocalId(i)) { "" } else { "_" };
                format!("{unread}v_{}", names::snake(&v.name).trim_start_matches('_'))
            })
            .collect(),
    );
    names.iter().map(|n| format_ident!("{}", n)).collect()
}

impl<'p> Lower<'p> {
    pub(super) fn new(
        protocol: &'p Protocol,
        fn_names: &'p [Ident],
        kind: BodyKind,
        locals: &'p [Var],
        body: &[TStmt],
        params: usize,
    ) -> Self {
        let usage = Usage::of(body, locals, params);
        let local_names = local_idents(locals, &usage);
        Lower { protocol, kind, fn_names, locals, local_names, usage, frames: Vec::new(), fresh: 0 }
    }

    /// Declarations of the locals hoisted to the top of the body.
    pub(super) fn hoisted(&self) -> TokenStream {
        (0..self.locals.len())
            .map(LocalId)
            .filter(|&id| self.usage.is_hoisted(id))
            .map(|id| {
                let name = &self.local_names[id.index()];
                let value = default_value(self.protocol, &self.locals[id].ty);
                if self.usage.dead_decl[id.index()] && !self.usage.is_assigned(id) {
                    quote!(let #name = #value;)
                } else {
                    quote!(let mut #name = #value;)
                }
            })
            .collect()
    }

    /// `let` or `let mut` for parameter `id`.
    pub(super) fn binding_for_param(&self, id: LocalId) -> TokenStream {
        self.binding(id)
    }

    /// `let` or `let mut` for local `id` declared in place.
    pub(super) fn binding(&self, id: LocalId) -> TokenStream {
        let name = &self.local_names[id.index()];
        if self.usage.is_assigned(id) { quote!(let mut #name) } else { quote!(let #name) }
    }

    fn tmp(&mut self, what: &str) -> Ident {
        self.fresh += 1;
        format_ident!("{}{}", what, self.fresh)
    }

    /// The slot of global `i` (peered variables come first).
    fn global_slot(&self, i: usize) -> usize {
        self.protocol.peered.len() + i
    }

    // ------------------------------------------------------------------ statements

    /// A statement list; statements after one that always jumps away are left out (they
    /// can never run, and Rust would warn about them).
    pub(super) fn stmts(&mut self, stmts: &[TStmt]) -> TokenStream {
        let mut out = TokenStream::new();
        for s in stmts {
            out.extend(self.stmt(s));
            if diverges(std::slice::from_ref(s)) {
                break;
            }
        }
        out
    }

    /// A statement list whose value is the body's result: a `return` (or, in a `try` body, a
    /// `break` or `continue`) in tail position becomes that value rather than a jump, and a
    /// list that falls off its end ends with `fallthrough`.
    pub(super) fn tail(&mut self, stmts: &[TStmt], fallthrough: TokenStream) -> TokenStream {
        let end = stmts.iter().position(|s| diverges(std::slice::from_ref(s))).map_or(stmts.len(), |i| i + 1);
        let stmts = &stmts[..end];
        let Some((last, init)) = stmts.split_last() else { return fallthrough };
        let mut out = TokenStream::new();
        for s in init {
            out.extend(self.stmt(s));
        }
        let rt = rt();
        match &last.kind {
            TStmtKind::Return(values) => {
                // The body ends here: its locals can be moved out rather than cloned.
                let v =
                    if self.inside_try() { self.value_list(values) } else { self.value_list_moving(values) };
                let value = if self.inside_try() {
                    quote!(Ok(#rt::ops::Ctl::Return(#v)))
                } else {
                    match self.kind {
                        BodyKind::Function => quote!(Ok(#v)),
                        BodyKind::Block if values.is_empty() => quote!(Ok(())),
                        BodyKind::Block => quote!({
                            let _ = #v;
                            Ok(())
                        }),
                    }
                };
                out.extend(value);
            }
            TStmtKind::Break | TStmtKind::Continue if self.frames.last() == Some(&Frame::TryBody) => {
                out.extend(match last.kind {
                    TStmtKind::Break => quote!(Ok(#rt::ops::Ctl::Break)),
                    _ => quote!(Ok(#rt::ops::Ctl::Continue)),
                });
            }
            TStmtKind::If { branches, otherwise: Some(o) } if diverges(std::slice::from_ref(last)) => {
                for (i, (cond, body)) in branches.iter().enumerate() {
                    let c = self.r(cond);
                    let b = self.tail(body, quote!());
                    let kw = if i == 0 { quote!(if) } else { quote!(else if) };
                    out.extend(quote!(#kw #rt::ops::truth(&#c)? { #b }));
                }
                let o = self.tail(o, quote!());
                out.extend(quote!(else { #o }));
            }
            TStmtKind::Block(b) if diverges(b) => {
                let b = self.tail(b, quote!());
                out.extend(quote!({ #b }));
            }
            _ => {
                out.extend(self.stmt(last));
                if !diverges(std::slice::from_ref(last)) {
                    out.extend(fallthrough);
                }
            }
        }
        out
    }

    fn stmt(&mut self, s: &TStmt) -> TokenStream {
        let rt = rt();
        match &s.kind {
            TStmtKind::Decl(id) => {
                let var = &self.locals[*id];
                let value = match &var.init {
                    Some(init) => self.expr(init),
                    None => default_value(self.protocol, &var.ty),
                };
                if self.usage.is_hoisted(*id) {
                    let name = &self.local_names[id.index()];
                    quote!(#name = #value;)
                } else {
                    let binding = self.binding(*id);
                    quote!(#binding = #value;)
                }
            }
            TStmtKind::Assign { targets, op, value } => {
                if targets.len() > 1 {
                    let results = self.tmp("results");
                    let call = self.values(value);
                    let writes: TokenStream = targets
                        .iter()
                        .enumerate()
                        .map(|(i, t)| self.write(t, quote!(#rt::ops::nth(&#results, #i))))
                        .collect();
                    return quote!({ let #results = #call; #writes });
                }
                let target = &targets[0];
                if *op == AssignOp::Assign {
                    let v = self.expr(value);
                    return self.write(target, v);
                }
                self.compound(target, *op, value)
            }
            TStmtKind::Expr(e) => self.effect(e),
            TStmtKind::If { branches, otherwise } => {
                if let [(cond, body)] = branches.as_slice()
                    && body.is_empty()
                    && otherwise.as_ref().is_none_or(Vec::is_empty)
                {
                    // Nothing to do either way: only the condition's own errors matter.
                    let c = self.r(cond);
                    return quote!(#rt::ops::truth(&#c)?;);
                }
                let mut out = TokenStream::new();
                for (i, (cond, body)) in branches.iter().enumerate() {
                    let c = self.r(cond);
                    let b = self.stmts(body);
                    let kw = if i == 0 { quote!(if) } else { quote!(else if) };
                    out.extend(quote!(#kw #rt::ops::truth(&#c)? { #b }));
                }
                if let Some(body) = otherwise.as_ref().filter(|b| !b.is_empty()) {
                    let b = self.stmts(body);
                    out.extend(quote!(else { #b }));
                }
                out
            }
            TStmtKind::While { cond, body } => {
                let c = self.r(cond);
                self.frames.push(Frame::Loop);
                let b = self.stmts(body);
                self.frames.pop();
                quote!(while #rt::ops::truth(&#c)? { #b })
            }
            TStmtKind::For { var, iter, body } => {
                let it = self.r(iter);
                let item = self.tmp("item");
                let assign = match var {
                    VarRef::Local(id) if !self.usage.is_hoisted(*id) && self.usage.is_loop_declared(*id) => {
                        let binding = self.binding(*id);
                        quote!(#binding = #item;)
                    }
                    _ => self.write_var(*var, quote!(#item)),
                };
                self.frames.push(Frame::Loop);
                let b = self.stmts(body);
                self.frames.pop();
                quote!(for #item in #rt::ops::iteration(tx, &#it).await? { #assign #b })
            }
            TStmtKind::Break => self.jump(Jump::Break),
            TStmtKind::Continue => self.jump(Jump::Continue),
            TStmtKind::Return(values)
                if values.is_empty() && self.kind == BodyKind::Block && !self.inside_try() =>
            {
                quote!(return Ok(());)
            }
            TStmtKind::Return(values) => {
                let v = self.value_list(values);
                self.ret(v)
            }
            TStmtKind::Try { body, catches, finally } => self.try_stmt(body, catches, finally.as_deref()),
            TStmtKind::ExtAssign { source, target } => {
                let v = self.expr(source);
                self.write(target, v)
            }
            TStmtKind::ExtCopy { source, target } => {
                // The value first, then the place, each once.
                let v = self.expr(source);
                let (value, fresh) = (self.tmp("value"), self.tmp("cell"));
                match &target.kind {
                    TExprKind::Index(base, index) => {
                        let (b, k) = (self.tmp("base"), self.tmp("key"));
                        let base_v = self.container_owned(base);
                        let index_v = self.expr(index);
                        quote!({
                            let #value = #v;
                            let #b = #base_v;
                            let #k = #index_v;
                            let current = #rt::ops::index_get(tx, &#b, &#k).await?;
                            if let Some(#fresh) = #rt::ops::ext_copy(tx, &current, #value).await? {
                                #rt::ops::index_set(tx, &#b, &#k, #fresh).await?;
                            }
                        })
                    }
                    TExprKind::Field(base, field) => {
                        let b = self.tmp("base");
                        let base_v = self.container_owned(base);
                        quote!({
                            let #value = #v;
                            let #b = #base_v;
                            let current = #rt::ops::field_get(tx, &#b, #field).await?;
                            if let Some(#fresh) = #rt::ops::ext_copy(tx, &current, #value).await? {
                                #rt::ops::field_set(tx, &#b, #field, #fresh).await?;
                            }
                        })
                    }
                    TExprKind::Var(_) | TExprKind::Deref(_) => {
                        let current = self.r(target);
                        let store = self.write(target, quote!(#fresh));
                        quote!({
                            let #value = #v;
                            if let Some(#fresh) = #rt::ops::ext_copy(tx, &#current, #value).await? {
                                #store
                            }
                        })
                    }
                    _ => {
                        // A call yielding an External: write into its cell (it has one).
                        let current = self.expr(target);
                        quote!({
                            let #value = #v;
                            let _ = #rt::ops::ext_copy(tx, &#current, #value).await?;
                        })
                    }
                }
            }
            TStmtKind::Block(body) => {
                let b = self.stmts(body);
                quote!({ #b })
            }
        }
    }

    /// An expression statement: calls and effects without a value stay statements.
    fn effect(&mut self, e: &TExpr) -> TokenStream {
        if let TExprKind::Call(callee, args) = &e.kind {
            if let Some(s) = self.unit_call(callee, args) {
                return quote!(#s;);
            }
            let v = self.call_values(callee, args);
            return quote!(#v;);
        }
        let v = self.expr(e);
        quote!(let _ = #v;)
    }

    /// `a op= v`: reads the place once, computes, writes back.
    fn compound(&mut self, target: &TExpr, op: AssignOp, value: &TExpr) -> TokenStream {
        let rt = rt();
        let v = self.expr(value);
        let f = match op {
            AssignOp::Add => quote!(add),
            AssignOp::Sub => quote!(sub),
            AssignOp::Mul => quote!(mul),
            AssignOp::Div => quote!(div),
            AssignOp::Rem => quote!(rem),
            AssignOp::Assign => unreachable!("plain assignment is handled by the caller"),
        };
        match &target.kind {
            TExprKind::Index(base, index) => {
                let (b, i, cur) = (self.tmp("base"), self.tmp("key"), self.tmp("current"));
                let base_v = self.container_owned(base);
                let index_v = self.expr(index);
                quote!({
                    let #b = #base_v;
                    let #i = #index_v;
                    let #cur = #rt::ops::index_get(tx, &#b, &#i).await?;
                    #rt::ops::index_set(tx, &#b, &#i, #rt::ops::#f(&#cur, &#v)?).await?;
                })
            }
            TExprKind::Field(base, field) => {
                let (b, cur) = (self.tmp("base"), self.tmp("current"));
                let base_v = self.container_owned(base);
                quote!({
                    let #b = #base_v;
                    let #cur = #rt::ops::field_get(tx, &#b, #field).await?;
                    #rt::ops::field_set(tx, &#b, #field, #rt::ops::#f(&#cur, &#v)?).await?;
                })
            }
            _ => {
                let cur = self.r(target);
                self.write(target, quote!(#rt::ops::#f(&#cur, &#v)?))
            }
        }
    }

    /// Stores `value` into the place `target`.
    fn write(&mut self, target: &TExpr, value: TokenStream) -> TokenStream {
        let rt = rt();
        match &target.kind {
            TExprKind::Var(v) => self.write_var(*v, value),
            TExprKind::Index(base, index) => {
                let b = self.container(base);
                let i = self.r(index);
                quote!(#rt::ops::index_set(tx, &#b, &#i, #value).await?;)
            }
            TExprKind::Field(base, field) => {
                let b = self.container(base);
                quote!(#rt::ops::field_set(tx, &#b, #field, #value).await?;)
            }
            TExprKind::Deref(inner) => self.write(inner, value),
            _ => {
                let v = self.expr(target);
                quote!(let _ = (#v, #value);)
            }
        }
    }

    fn write_var(&mut self, v: VarRef, value: TokenStream) -> TokenStream {
        match v {
            VarRef::Local(id) => {
                let name = &self.local_names[id.index()];
                quote!(#name = #value;)
            }
            VarRef::SeqData(i) => quote!(data[#i] = #value;),
            VarRef::Global(i) => {
                let slot = self.global_slot(i);
                quote!(tx.write(&ep.core, #slot, #value).await?;)
            }
            VarRef::Peered(i) => quote!(tx.write(&ep.core, #i, #value).await?;),
        }
    }

    /// Like [`Lower::container`], as an owned value (bound to a temporary).
    fn container_owned(&mut self, base: &TExpr) -> TokenStream {
        match &base.kind {
            _ if roots_in_external(base) => self.container(base),
            _ => self.expr(base),
        }
    }

    /// An expression to borrow (`&` in front): a local or sequence datum is borrowed in
    /// place, anything else is a temporary.
    fn r(&mut self, e: &TExpr) -> TokenStream {
        match &e.kind {
            TExprKind::Var(VarRef::Local(id)) => {
                let name = &self.local_names[id.index()];
                quote!(#name)
            }
            TExprKind::Var(VarRef::SeqData(i)) => quote!(data[#i]),
            _ => self.expr(e),
        }
    }

    /// A container to change in place: an External's pending copy, or the value itself.
    fn container(&mut self, base: &TExpr) -> TokenStream {
        let rt = rt();
        match &base.kind {
            TExprKind::Deref(inner) => {
                let e = self.r(inner);
                quote!(#rt::ops::ext_container(tx, &#e).await?)
            }
            _ if matches!(base.ty, Ty::External(_)) => {
                let e = self.r(base);
                quote!(#rt::ops::ext_container(tx, &#e).await?)
            }
            // Inside an External container, keep working on its pending copy: reading the
            // inner container as a value would change a throwaway copy.
            TExprKind::Index(b, i) if roots_in_external(b) => {
                let c = self.container(b);
                let i = self.r(i);
                quote!(#rt::ops::index_get(tx, &#c, &#i).await?)
            }
            TExprKind::Field(b, f) if roots_in_external(b) => {
                let c = self.container(b);
                quote!(#rt::ops::field_get(tx, &#c, #f).await?)
            }
            _ => self.r(base),
        }
    }

    // ------------------------------------------------------------------ control flow

    fn inside_try(&self) -> bool {
        self.frames.contains(&Frame::TryBody)
    }

    fn jump(&mut self, jump: Jump) -> TokenStream {
        let rt = rt();
        // A loop inside the innermost try body is left with plain break/continue.
        match self.frames.last() {
            Some(Frame::Loop) => match jump {
                Jump::Break => quote!(break;),
                Jump::Continue => quote!(continue;),
            },
            _ => match jump {
                Jump::Break => quote!(return Ok(#rt::ops::Ctl::Break);),
                Jump::Continue => quote!(return Ok(#rt::ops::Ctl::Continue);),
            },
        }
    }

    /// `return values` where `values` is a `Vec<Value>` expression.
    fn ret(&mut self, values: TokenStream) -> TokenStream {
        let rt = rt();
        if self.inside_try() {
            return quote!(return Ok(#rt::ops::Ctl::Return(#values)););
        }
        match self.kind {
            BodyKind::Function => quote!(return Ok(#values);),
            BodyKind::Block => quote!({ let _ = #values; return Ok(()); }),
        }
    }

    fn try_stmt(
        &mut self,
        body: &[TStmt],
        catches: &[(ExceptionKind, LocalId, Vec<TStmt>)],
        finally: Option<&[TStmt]>,
    ) -> TokenStream {
        let rt = rt();
        // Loops outside the try are not "innermost" inside it.
        let saved = std::mem::take(&mut self.frames);
        self.frames = vec![Frame::TryBody];
        let body_code = self.tail(body, quote!(Ok(#rt::ops::Ctl::Next)));
        let mut arms = TokenStream::new();
        let sp = self.tmp("savepoint");
        // The undo log covers variables, objects and Externals; the body's own locals and
        // sequence data are saved here and put back with it.
        let (mut assigned, mut data_written) = (Vec::new(), false);
        collect_assigned(body, &mut assigned, &mut data_written);
        let mut inner = Vec::new();
        collect_decls(body, &mut inner);
        assigned.retain(|id| !inner.contains(id));
        let mut save = TokenStream::new();
        let mut restore = TokenStream::new();
        if !catches.is_empty() {
            for id in &assigned {
                let (name, saved) = (self.local_names[id.index()].clone(), self.tmp("saved"));
                save.extend(quote!(let #saved = #name.clone();));
                restore.extend(quote!(#name = #saved.clone();));
            }
            if data_written {
                let saved = self.tmp("saved_data");
                save.extend(quote!(let #saved = data.to_vec();));
                restore.extend(quote!(data.clone_from_slice(&#saved);));
            }
        }
        let take_savepoint =
            if catches.is_empty() { quote!() } else { quote!(let #sp = tx.savepoint(); #save) };
        for (kind, local, handler) in catches {
            let e = self.tmp("exception");
            let guard = match kind {
                ExceptionKind::Application => quote!(if #e.kind == #rt::ExceptionKind::Application),
                ExceptionKind::Network => quote!(if #e.kind == #rt::ExceptionKind::Network),
                ExceptionKind::Any => quote!(),
            };
            let binding = self.binding(*local);
            let h = self.tail(handler, quote!(Ok(#rt::ops::Ctl::Next)));
            arms.extend(quote!(
                Err(#rt::Raise::Exception(#e)) #guard => {
                    tx.rollback_to(#sp.clone());
                    #restore
                    #binding = #rt::Value::text(&#e.message);
                    #h
                }
            ));
        }
        self.frames = saved;
        let fin = finally.map(|f| self.stmts(f)).unwrap_or_default();
        let outcome = self.tmp("outcome");
        let done = self.tmp("done");
        let after_return = {
            let v = self.tmp("values");
            let r = self.ret(quote!(#v));
            (v, r)
        };
        let (rv, r) = after_return;
        let brk = self.jump(Jump::Break);
        let cont = self.jump(Jump::Continue);
        let loop_arms = if self.frames.is_empty() && !self.inside_try() {
            // No loop around: break/continue cannot come out of the body.
            quote!(#rt::ops::Ctl::Break | #rt::ops::Ctl::Continue => {})
        } else {
            quote!(#rt::ops::Ctl::Break => { #brk } #rt::ops::Ctl::Continue => { #cont })
        };
        let handled =
            if catches.is_empty() { quote!(#done) } else { quote!(match #done { #arms other => other }) };
        let attempt = quote!(async {
            let #done: #rt::Flow<#rt::ops::Ctl> = async {
                #body_code
            }
            .await;
            #handled
        }
        .await);
        if finally.is_some_and(diverges) {
            // A `finally` that always leaves decides how the statement ends, whatever the
            // body or a catch did (an exception included).
            return quote!({
                #take_savepoint
                let _ = #attempt;
                #fin
            });
        }
        quote!({
            #take_savepoint
            let #outcome: #rt::Flow<#rt::ops::Ctl> = #attempt;
            #fin
            match #outcome? {
                #rt::ops::Ctl::Next => {}
                #rt::ops::Ctl::Return(#rv) => { #r }
                #loop_arms
            }
        })
    }

    // ------------------------------------------------------------------ expressions

    /// `values`, flattened (a call returning k values counts k), as a `Vec<Value>`.
    fn value_list(&mut self, values: &[TExpr]) -> TokenStream {
        if values.iter().all(|v| !matches!(v.ty, Ty::Tuple(_))) {
            let vs: Vec<TokenStream> = values.iter().map(|v| self.expr(v)).collect();
            return quote!(Vec::from([#(#vs),*]));
        }
        let out = self.tmp("values");
        let mut pushes = TokenStream::new();
        for v in values {
            if matches!(v.ty, Ty::Tuple(_)) {
                let vs = self.values(v);
                pushes.extend(quote!(#out.extend(#vs);));
            } else {
                let x = self.expr(v);
                pushes.extend(quote!(#out.push(#x);));
            }
        }
        quote!({ let mut #out = Vec::new(); #pushes #out })
    }

    /// Like [`Lower::value_list`] at the end of a body: a local named once is moved.
    fn value_list_moving(&mut self, values: &[TExpr]) -> TokenStream {
        let once = |id: LocalId| {
            let mut n = 0;
            for v in values {
                for_each_subexpr(v, |x| {
                    if matches!(x.kind, TExprKind::Var(VarRef::Local(i)) if i == id) {
                        n += 1;
                    }
                });
            }
            n == 1
        };
        if values.iter().any(|v| matches!(v.ty, Ty::Tuple(_))) {
            return self.value_list(values);
        }
        let vs: Vec<TokenStream> = values
            .iter()
            .map(|v| match v.kind {
                TExprKind::Var(VarRef::Local(id)) if once(id) => {
                    let name = &self.local_names[id.index()];
                    quote!(#name)
                }
                _ => self.expr(v),
            })
            .collect();
        quote!(Vec::from([#(#vs),*]))
    }

    /// The values of a multi-value expression (a call), as a `Vec<Value>`.
    fn values(&mut self, e: &TExpr) -> TokenStream {
        match &e.kind {
            TExprKind::Call(callee, args) => self.call_values(callee, args),
            _ => {
                let v = self.expr(e);
                quote!(Vec::from([#v]))
            }
        }
    }

    /// `e` as a `Value` expression.
    pub(super) fn expr(&mut self, e: &TExpr) -> TokenStream {
        let rt = rt();
        match &e.kind {
            TExprKind::Number(n) => number(n.0),
            TExprKind::Text(t) => quote!(#rt::Value::text(#t)),
            TExprKind::Bool(b) => quote!(#rt::Value::Bool(#b)),
            TExprKind::Var(v) => self.read_var(*v),
            TExprKind::SelfRef => quote!(ep.value()),
            TExprKind::List(items) => {
                let vs: Vec<TokenStream> = items.iter().map(|i| self.expr(i)).collect();
                quote!(#rt::Value::new_list(Vec::from([#(#vs),*])))
            }
            TExprKind::Map(entries) => {
                let es: Vec<TokenStream> = entries
                    .iter()
                    .map(|(k, v)| {
                        let k = self.expr(k);
                        let v = self.expr(v);
                        quote!((#k, #v))
                    })
                    .collect();
                quote!(#rt::ops::map_literal(Vec::from([#(#es),*]))?)
            }
            TExprKind::Unary(op, x) => {
                let x = self.r(x);
                match op {
                    UnaryOp::Neg => quote!(#rt::ops::neg(&#x)?),
                    UnaryOp::Not => quote!(#rt::ops::not(&#x)?),
                }
            }
            TExprKind::Binary(op, a, b) => self.binary(*op, a, b),
            TExprKind::Deref(x) => {
                let x = self.r(x);
                quote!(#rt::ops::ext_read(tx, &#x).await?)
            }
            TExprKind::Field(base, i) => {
                let b = self.r(base);
                quote!(#rt::ops::field_get(tx, &#b, #i).await?)
            }
            TExprKind::Index(base, index) => {
                let b = self.r(base);
                let i = self.r(index);
                quote!(#rt::ops::index_get(tx, &#b, &#i).await?)
            }
            TExprKind::Call(callee, args) => {
                if let Some(s) = self.unit_call(callee, args) {
                    return quote!({ #s; #rt::Value::Nothing });
                }
                if let Some(v) = self.value_call(callee, args) {
                    return v;
                }
                let vs = self.call_values(callee, args);
                if let Callee::Endpoint { resolved: None, results: None, function, .. } = &**callee {
                    // An unknown function's one value, of a kind the operation will check.
                    return quote!(#rt::ops::first(#rt::ops::check_results(#function, #vs, &[#rt::ops::Kind::Any])?));
                }
                quote!(#rt::ops::first(#vs))
            }
            TExprKind::Error => quote!(#rt::Value::Nothing),
        }
    }

    fn read_var(&mut self, v: VarRef) -> TokenStream {
        match v {
            VarRef::Local(id) => {
                let name = &self.local_names[id.index()];
                quote!(#name.clone())
            }
            VarRef::SeqData(i) => quote!(data[#i].clone()),
            VarRef::Global(i) => {
                let slot = self.global_slot(i);
                quote!(tx.read(&ep.core, #slot).await?)
            }
            VarRef::Peered(i) => quote!(tx.read(&ep.core, #i).await?),
        }
    }

    fn binary(&mut self, op: BinOp, a: &TExpr, b: &TExpr) -> TokenStream {
        let rt = rt();
        let x = self.r(a);
        let y = self.r(b);
        match op {
            BinOp::Or => quote!(#rt::Value::Bool(#rt::ops::truth(&#x)? || #rt::ops::truth(&#y)?)),
            BinOp::And => quote!(#rt::Value::Bool(#rt::ops::truth(&#x)? && #rt::ops::truth(&#y)?)),
            BinOp::Eq => quote!(#rt::ops::eq(tx, &#x, &#y).await?),
            BinOp::Ne => quote!(#rt::ops::not(&#rt::ops::eq(tx, &#x, &#y).await?)?),
            BinOp::Lt => quote!(#rt::ops::compare(#rt::ops::Order::Lt, &#x, &#y)?),
            BinOp::Le => quote!(#rt::ops::compare(#rt::ops::Order::Le, &#x, &#y)?),
            BinOp::Gt => quote!(#rt::ops::compare(#rt::ops::Order::Gt, &#x, &#y)?),
            BinOp::Ge => quote!(#rt::ops::compare(#rt::ops::Order::Ge, &#x, &#y)?),
            BinOp::In => quote!(#rt::ops::contains(tx, &#x, &#y).await?),
            BinOp::NotIn => quote!(#rt::ops::not(&#rt::ops::contains(tx, &#x, &#y).await?)?),
            BinOp::Add => quote!(#rt::ops::add(&#x, &#y)?),
            BinOp::Sub => quote!(#rt::ops::sub(&#x, &#y)?),
            BinOp::Mul => quote!(#rt::ops::mul(&#x, &#y)?),
            BinOp::Div => quote!(#rt::ops::div(&#x, &#y)?),
            BinOp::Rem => quote!(#rt::ops::rem(&#x, &#y)?),
        }
    }

    // ------------------------------------------------------------------ calls

    fn args(&mut self, args: &[TExpr]) -> Vec<TokenStream> {
        args.iter().map(|a| self.expr(a)).collect()
    }

    fn refs(&mut self, args: &[TExpr]) -> Vec<TokenStream> {
        args.iter().map(|a| self.r(a)).collect()
    }

    /// Calls with no value, as a statement (`append`, `print`, `signal`...).
    fn unit_call(&mut self, callee: &Callee, args: &[TExpr]) -> Option<TokenStream> {
        let rt = rt();
        Some(match callee {
            Callee::Builtin(Builtin::Print) => {
                let a = self.refs(args);
                let x = &a[0];
                quote!(tx.print(&ep.core, #rt::ops::print_text(tx, &#x).await?))
            }
            Callee::Builtin(Builtin::Signal) => {
                let (first, rest) = args.split_first()?;
                let f = self.r(first);
                let rest = self.args(rest);
                quote!(#rt::ops::signal(tx, &ep.core, &#f, Vec::from([#(#rest),*])).await?)
            }
            Callee::Method(recv, m) => {
                let r = match m {
                    Method::Id => return None,
                    _ => self.container(recv),
                };
                let a = self.args(args);
                match m {
                    Method::Append => {
                        let x = &a[0];
                        quote!(#rt::ops::append(tx, &#r, #x).await?)
                    }
                    Method::Insert => {
                        let (i, x) = (&a[0], &a[1]);
                        quote!(#rt::ops::insert(tx, &#r, &#i, #x).await?)
                    }
                    Method::RemoveIndex => {
                        let i = &a[0];
                        let i = quote!((#i));
                        quote!(#rt::ops::remove_index(tx, &#r, &#i).await?)
                    }
                    Method::RemoveKey => {
                        let k = &a[0];
                        quote!(#rt::ops::remove_key(tx, &#r, &#k).await?)
                    }
                    Method::Id => return None,
                }
            }
            _ => return None,
        })
    }

    /// Calls with exactly one value, as a `Value` expression.
    fn value_call(&mut self, callee: &Callee, args: &[TExpr]) -> Option<TokenStream> {
        let rt = rt();
        Some(match callee {
            Callee::Builtin(Builtin::Len) => {
                let a = self.refs(args);
                let x = &a[0];
                quote!(#rt::ops::len(tx, &#x).await?)
            }
            Callee::Builtin(Builtin::Range) => {
                let a = self.refs(args);
                match a.as_slice() {
                    [x, y] => quote!(#rt::ops::range(&#x, &#y, None)?),
                    [x, y, z] => quote!(#rt::ops::range(&#x, &#y, Some(&#z))?),
                    _ => quote!(#rt::Value::Nothing),
                }
            }
            Callee::Builtin(Builtin::ToText) => {
                let a = self.refs(args);
                let x = &a[0];
                quote!(#rt::ops::to_text(&#x)?)
            }
            Callee::Builtin(Builtin::Id) => quote!(#rt::Value::text(ep.core.id())),
            Callee::Method(recv, Method::Id) => {
                let r = self.r(recv);
                quote!(#rt::ops::endpoint_id(&#r)?)
            }
            _ => return None,
        })
    }

    /// A call's results, as a `Vec<Value>` expression.
    fn call_values(&mut self, callee: &Callee, args: &[TExpr]) -> TokenStream {
        let rt = rt();
        match callee {
            Callee::Function(f) => {
                let name = &self.fn_names[f.index()];
                let a = self.args(args);
                quote!(#name(ep, tx, Vec::from([#(#a),*])).await?)
            }
            Callee::Sequence(s) => {
                let seq = &self.protocol.sequences[*s];
                let a = self.args(args);
                let rest: Vec<TokenStream> =
                    seq.data[seq.params..].iter().map(|v| default_value(self.protocol, &v.ty)).collect();
                let (params, returns) = (seq.params, seq.returns);
                let s = s.index() as u32;
                quote!(#rt::ops::seq_results(
                    ep.link()?
                        .sequence(tx, #s, #rt::ops::copy_all(tx, Vec::from([#(#a,)* #(#rest),*])).await?)
                        .await?,
                    #params,
                    #returns,
                ))
            }
            Callee::Value(f) => {
                let f = self.r(f);
                let a = self.args(args);
                quote!(#rt::ops::call_function(tx, &#f, Vec::from([#(#a),*])).await?)
            }
            Callee::Endpoint { target, function, results, .. } => {
                let t = self.r(target);
                let a = self.args(args);
                let call = quote!(#rt::ops::call_endpoint(tx, &#t, #function, Vec::from([#(#a),*])).await?);
                match results {
                    // The function was not known to the checker: the runtime checks what it
                    // gives back against what the caller takes.
                    Some(tys) => {
                        let kinds = tys.iter().map(kind_of);
                        quote!(#rt::ops::check_results(#function, #call, &[#(#rt::ops::Kind::#kinds),*])?)
                    }
                    None => call,
                }
            }
            other => {
                // Builtins and methods with one value or none.
                if let Some(s) = self.unit_call(other, args) {
                    return quote!({ #s; Vec::new() });
                }
                match self.value_call(other, args) {
                    Some(v) => quote!(Vec::from([#v])),
                    None => quote!(Vec::new()),
                }
            }
        }
    }
}

enum Jump {
    Break,
    Continue,
}

/// The locals declared anywhere in `stmts`: declarations, `for` loop variables and catch
/// variables.
fn collect_decls(stmts: &[TStmt], out: &mut Vec<LocalId>) {
    struct Decls<'a>(&'a mut Vec<LocalId>);

    impl Visit for Decls<'_> {
        fn visit_decl(&mut self, local: LocalId) {
            self.0.push(local);
        }

        fn visit_loop_var(&mut self, var: VarRef) {
            if let VarRef::Local(id) = var {
                self.0.push(id);
            }
        }

        // Expressions hold no statements.
        fn visit_expr(&mut self, _: &TExpr) {}
    }

    Decls(out).visit_stmts(stmts);
}

/// The locals assigned anywhere in `stmts`, and whether sequence data is (to save and
/// restore them around a `try` body).
fn collect_assigned(stmts: &[TStmt], out: &mut Vec<LocalId>, data: &mut bool) {
    struct Assigned<'a> {
        locals: &'a mut Vec<LocalId>,
        data: &'a mut bool,
    }

    impl Assigned<'_> {
        fn var(&mut self, var: VarRef) {
            match var {
                VarRef::Local(id) if !self.locals.contains(&id) => self.locals.push(id),
                VarRef::SeqData(_) => *self.data = true,
                VarRef::Local(_) | VarRef::Global(_) | VarRef::Peered(_) => {}
            }
        }
    }

    impl Visit for Assigned<'_> {
        fn visit_loop_var(&mut self, var: VarRef) {
            self.var(var);
        }

        /// The variable at the root of the place, through any `Deref`s; writes into a
        /// container change objects, which the undo log covers.
        fn visit_target(&mut self, target: &TExpr) {
            let mut e = target;
            while let TExprKind::Deref(inner) = &e.kind {
                e = inner;
            }
            if let TExprKind::Var(var) = e.kind {
                self.var(var);
            }
        }

        // Expressions hold no statements.
        fn visit_expr(&mut self, _: &TExpr) {}
    }

    Assigned { locals: out, data }.visit_stmts(stmts);
}

/// Whether a statement list always jumps away (`return`, `break`, `continue`, or an `if`
/// whose every branch does), as Rust sees it.
pub(super) fn diverges(stmts: &[TStmt]) -> bool {
    stmts.iter().any(|s| match &s.kind {
        TStmtKind::Return(_) | TStmtKind::Break | TStmtKind::Continue => true,
        TStmtKind::If { branches, otherwise: Some(o) } => {
            branches.iter().all(|(_, b)| diverges(b)) && diverges(o)
        }
        TStmtKind::If { otherwise: None, .. } => false,
        TStmtKind::Block(b) => diverges(b),
        // Lowered to end with its `finally`, which always leaves.
        TStmtKind::Try { finally: Some(f), .. } => diverges(f),
        TStmtKind::Try { finally: None, .. } => false,
        // A loop's body may not run, and a jump in it leaves only the loop.
        TStmtKind::While { .. } | TStmtKind::For { .. } => false,
        TStmtKind::Decl(_)
        | TStmtKind::Assign { .. }
        | TStmtKind::Expr(_)
        | TStmtKind::ExtAssign { .. }
        | TStmtKind::ExtCopy { .. } => false,
    })
}

/// Whether `e` is, or is inside, an External container (`x`, `x[k]`, `x.f[i]` with `x`
/// External).
fn roots_in_external(e: &TExpr) -> bool {
    match &e.kind {
        TExprKind::Deref(_) => true,
        _ if matches!(e.ty, Ty::External(_)) => true,
        TExprKind::Index(b, _) | TExprKind::Field(b, _) => roots_in_external(b),
        _ => false,
    }
}

/// A Number literal as a `Value`.
pub(super) fn number(n: f64) -> TokenStream {
    let rt = rt();
    if n.is_finite() {
        let lit = Literal::f64_unsuffixed(n);
        quote!(#rt::Value::Number(#lit))
    } else {
        quote!(#rt::Value::Number(f64::INFINITY))
    }
}

/// The default value of a variable of type `ty` (the book's language chapter, "Defaults").
pub(super) fn default_value(protocol: &Protocol, ty: &Ty) -> TokenStream {
    default_in(protocol, ty, &mut Vec::new())
}

fn default_in(protocol: &Protocol, ty: &Ty, structs: &mut Vec<StructId>) -> TokenStream {
    let rt = rt();
    match ty {
        Ty::Number => quote!(#rt::Value::Number(0.0)),
        Ty::Text => quote!(#rt::Value::text("")),
        Ty::Bool => quote!(#rt::Value::Bool(false)),
        Ty::List(_) => quote!(#rt::Value::new_list(Vec::new())),
        Ty::Map(..) => quote!(#rt::Value::new_map(Default::default())),
        Ty::Struct(id) if !structs.contains(id) => {
            structs.push(*id);
            let fields: Vec<TokenStream> =
                protocol.structs[*id].fields.iter().map(|f| default_in(protocol, &f.ty, structs)).collect();
            structs.pop();
            quote!(#rt::Value::new_struct(Vec::from([#(#fields),*])))
        }
        // An External declared without a value starts bound to a fresh cell of its own.
        Ty::External(inner) => {
            let value = default_in(protocol, inner, structs);
            quote!(#rt::Value::External(#rt::ExtCell::new(#value)))
        }
        _ => quote!(#rt::Value::Nothing),
    }
}

/// The kind of value a parameter of type `ty` takes, for checking dynamic endpoint calls.
pub(super) fn kind_of(ty: &Ty) -> TokenStream {
    match ty {
        Ty::Number => quote!(Number),
        Ty::Text => quote!(Text),
        Ty::Bool => quote!(TrueFalse),
        Ty::List(_) => quote!(List),
        Ty::Map(..) => quote!(Map),
        Ty::Struct(_) => quote!(Struct),
        Ty::Function(_) => quote!(Function),
        Ty::Endpoint => quote!(Endpoint),
        Ty::External(_) => quote!(External),
        _ => quote!(Any),
    }
}
