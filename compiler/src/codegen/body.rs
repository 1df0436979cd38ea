//! Lowering checked code (functions, `onCreate`, sequence blocks) to async Rust.
//!
//! Values the checker has typed Number, TrueFalse or Text are plain Rust values in the
//! generated code (`f64`, `bool`, the runtime's cheap `Text`): their arithmetic, comparisons
//! and logic are Rust operators, and only what the language says can raise (`/` and `%` by
//! zero, a Text index out of range) calls a runtime helper that returns the exception. Every
//! other value is the runtime's dynamic `Value`; the two meet where a value enters or leaves
//! a container, a shared variable, the sequence data or a call ([`Repr`] and [`Code`]).
//! Calls, which may return several values, give a `Vec<Value>`. Locals are hoisted to the top
//! of the body when Waldo's function-wide scope needs it. Operators on dynamic values go
//! through `ops`, whose errors are Waldo's `ApplicationException`s, and every variable or
//! container access through the transaction `tx`, which locks it. A `try` body becomes an
//! async block whose `?` stops at the `try`; `return`, `break` and `continue` inside it leave
//! that block as a `Ctl` value that the code after the `try` acts on once `finally` has run.

use proc_macro2::{Ident, Literal, TokenStream};
use quote::{format_ident, quote};

use crate::ir::visit::{self, Visit, for_each_subexpr};
use crate::ir::{
    AssignOp, BinOp, Builtin, Callee, ExceptionKind, FunctionId, LocalId, Method, Protocol, StructId, TExpr,
    TExprKind, TStmt, TStmtKind, Ty, UnaryOp, Var, VarRef,
};

use super::names;

/// How generated code holds a value of a checked type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Repr {
    /// `f64`.
    Num,
    /// `bool`.
    Bool,
    /// `rt::ops::Text`.
    Text,
    /// `rt::Value`.
    Dyn,
}

impl Repr {
    /// How a value of type `ty` is held.
    pub(super) fn of(ty: &Ty) -> Repr {
        match ty {
            Ty::Number => Repr::Num,
            Ty::Bool => Repr::Bool,
            Ty::Text => Repr::Text,
            _ => Repr::Dyn,
        }
    }

    fn is_copy(self) -> bool {
        matches!(self, Repr::Num | Repr::Bool)
    }
}

/// A lowered expression: its Rust code, how it holds its value, and how tightly its
/// outermost operator binds (to parenthesize it as an operand only where Rust needs it).
pub(super) struct Code {
    ts: TokenStream,
    repr: Repr,
    prec: u8,
}

/// Rust's operator precedences, loosest first; `ATOM` for paths, literals, calls, indexing.
const OR: u8 = 1;
const AND: u8 = 2;
const CMP: u8 = 3;
const ADD: u8 = 4;
const MUL: u8 = 5;
const UNARY: u8 = 6;
const ATOM: u8 = 9;

impl Code {
    fn atom(ts: TokenStream, repr: Repr) -> Code {
        Code { ts, repr, prec: ATOM }
    }

    fn op(ts: TokenStream, repr: Repr, prec: u8) -> Code {
        Code { ts, repr, prec }
    }

    /// The code as a method receiver.
    fn operand(&self) -> TokenStream {
        self.at(ATOM)
    }

    /// The code where an operand must bind at least as tightly as `prec`.
    fn at(&self, prec: u8) -> TokenStream {
        let ts = &self.ts;
        if self.prec >= prec { ts.clone() } else { quote!((#ts)) }
    }
}

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
    /// Which of the endpoint's functions may wait (`async`); the others are plain `fn`s.
    fn_waits: &'p [bool],
    /// The functions the body calls.
    pub(super) called: Vec<FunctionId>,
    locals: &'p [Var],
    /// The Rust names of the body's locals, by local id.
    local_names: Vec<Ident>,
    usage: Usage<'p>,
    frames: Vec<Frame>,
    /// Counter for fresh temporaries.
    fresh: usize,
    /// The Rust names of the protocol's structs (whose `rt::Fresh` makes their starting
    /// values); empty: starting values are written out.
    struct_names: &'p [Ident],
    /// The functions that wait and take no arguments (called as `f(ep, tx)`).
    fn_bare: &'p [bool],
    /// Whether the statement being lowered noted its place and may raise after a call in it
    /// (its calls then put the place back when they return: `tx.back`).
    calls_put_back: bool,
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

    /// Whether hoisted local `id` keeps its starting value: its declaration never runs and
    /// nothing assigns it (a plain `let` at the top).
    fn is_constant(&self, id: LocalId) -> bool {
        self.dead_decl.get(id.index()).copied().unwrap_or(false) && !self.is_assigned(id)
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

/// The runtime's hidden module, as generated modules name it (`use waldo::__rt as rt;`).
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
        fn_waits: &'p [bool],
        kind: BodyKind,
        locals: &'p [Var],
        body: &[TStmt],
        params: usize,
    ) -> Self {
        let usage = Usage::of(body, locals, params);
        let local_names = local_idents(locals, &usage);
        Lower {
            protocol,
            kind,
            fn_names,
            fn_waits,
            called: Vec::new(),
            locals,
            local_names,
            usage,
            frames: Vec::new(),
            fresh: 0,
            struct_names: &[],
            fn_bare: &[],
            calls_put_back: false,
        }
    }

    /// Calls the functions marked in `bare` without arguments.
    pub(super) fn with_bare(mut self, bare: &'p [bool]) -> Self {
        self.fn_bare = bare;
        self
    }

    /// Uses the protocol's structs, named `struct_names`, for their starting values.
    pub(super) fn with_structs(mut self, struct_names: &'p [Ident]) -> Self {
        self.struct_names = struct_names;
        self
    }

    /// Declarations of the locals hoisted to the top of the body.
    pub(super) fn hoisted(&self) -> TokenStream {
        (0..self.locals.len())
            .map(LocalId)
            .filter(|&id| self.usage.is_hoisted(id))
            .map(|id| {
                let name = &self.local_names[id.index()];
                let value = self.local_default(id);
                if self.usage.is_constant(id) {
                    quote!(let #name = #value;)
                } else {
                    quote!(let mut #name = #value;)
                }
            })
            .collect()
    }

    /// The value local `id` starts with when declared without one, held as its type is.
    fn local_default(&self, id: LocalId) -> TokenStream {
        let rt = rt();
        match Repr::of(&self.locals[id].ty) {
            Repr::Num => quote!(0.0),
            Repr::Bool => quote!(false),
            Repr::Text => quote!(#rt::ops::text("")),
            Repr::Dyn => default_value(self.protocol, self.struct_names, &self.locals[id].ty),
        }
    }

    /// The statement that takes parameter `id` out of the call's `args`.
    pub(super) fn param(&self, id: LocalId) -> TokenStream {
        let rt = rt();
        let binding = self.binding(id);
        let ty = match Repr::of(&self.locals[id].ty) {
            Repr::Num => quote!(f64),
            Repr::Bool => quote!(bool),
            Repr::Text => quote!(#rt::ops::Text),
            Repr::Dyn => return quote!(#binding = args.next().unwrap_or(#rt::Value::Nothing);),
        };
        quote!(#binding: #ty = #rt::ops::arg(&mut args)?;)
    }

    /// The statement that takes the first `n` locals, the parameters, out of the call's
    /// `args`: one `let` of a tuple (`rt::ops::params`), or one `let` each when there are
    /// more than the runtime's tuples hold.
    pub(super) fn params(&self, n: usize) -> TokenStream {
        let rt = rt();
        if n > 8 {
            let each: TokenStream = (0..n).map(|i| self.param(LocalId(i))).collect();
            return quote!(let mut args = args.into_iter(); #each);
        }
        let (mut names, mut types) = (Vec::new(), Vec::new());
        for i in 0..n {
            let id = LocalId(i);
            let name = &self.local_names[i];
            names.push(if self.usage.is_assigned(id) { quote!(mut #name) } else { quote!(#name) });
            types.push(match Repr::of(&self.locals[id].ty) {
                Repr::Num => quote!(f64),
                Repr::Bool => quote!(bool),
                Repr::Text => quote!(#rt::ops::Text),
                Repr::Dyn => quote!(#rt::Value),
            });
        }
        if n == 1 {
            let (name, ty) = (&names[0], &types[0]);
            return quote!(let #name: #ty = #rt::ops::params(args)?;);
        }
        quote!(let (#(#names),*): (#(#types),*) = #rt::ops::params(args)?;)
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
                let outer = self.noting(last, &mut out);
                // The body ends here: its locals can be moved out rather than cloned.
                let v =
                    if self.inside_try() { self.value_list(values) } else { self.value_list_moving(values) };
                self.calls_put_back = outer;
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
                let outer = self.noting(last, &mut out);
                for (i, (cond, body)) in branches.iter().enumerate() {
                    let c = if i == 0 { self.cond(cond) } else { self.noted_cond(cond) };
                    self.calls_put_back = outer;
                    let b = self.tail(body, quote!());
                    let kw = if i == 0 { quote!(if) } else { quote!(else if) };
                    out.extend(quote!(#kw #c { #b }));
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

    /// `tx.at(..)` with the line of statement `s`, when `s` itself (not the statements in
    /// it) may raise an `ApplicationException`, so that the exception names where it was
    /// raised; nothing when it cannot, or when the source is not known.
    fn note(&self, s: &TStmt) -> TokenStream {
        match self.protocol.lines.line(s.loc.0.start) {
            Some(line) if may_raise(s, self.locals) != Raises::No => quote!(tx.at(CODE.file, #line);),
            _ => TokenStream::new(),
        }
    }

    fn stmt(&mut self, s: &TStmt) -> TokenStream {
        let mut out = TokenStream::new();
        let outer = self.noting(s, &mut out);
        out.extend(self.stmt_code(s));
        self.calls_put_back = outer;
        out
    }

    /// Adds statement `s`'s [`Lower::note`] to `out`, and makes the calls lowered next put
    /// the place back if `s` may raise after them; returns the setting to restore after `s`.
    fn noting(&mut self, s: &TStmt, out: &mut TokenStream) -> bool {
        let note = self.note(s);
        let put_back = !note.is_empty() && may_raise(s, self.locals) == Raises::AfterCalls;
        out.extend(note);
        std::mem::replace(&mut self.calls_put_back, put_back)
    }

    /// The condition of a `while` or an `elseIf`, which runs after other statements have
    /// noted their places: when it may raise, it notes its own first
    /// (`tx.noted(CODE.file, 12) && ..`).
    fn noted_cond(&mut self, e: &TExpr) -> TokenStream {
        let line = self.protocol.lines.line(e.loc.0.start);
        match line {
            Some(line) if expr_may_raise(e) => {
                let outer = std::mem::replace(&mut self.calls_put_back, true);
                let c = if let TExprKind::Bool(_) = e.kind {
                    self.cond(e)
                } else {
                    self.want(e, Repr::Bool).at(AND)
                };
                self.calls_put_back = outer;
                quote!(tx.noted(CODE.file, #line) && #c)
            }
            _ => self.cond(e),
        }
    }

    fn stmt_code(&mut self, s: &TStmt) -> TokenStream {
        let rt = rt();
        match &s.kind {
            TStmtKind::Decl(id) => {
                let var = &self.locals[*id];
                let value = match &var.init {
                    Some(init) => {
                        let init = self.typed(init);
                        self.as_repr(init, Repr::of(&var.ty)).ts
                    }
                    None => self.local_default(*id),
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
                        .map(|(i, t)| {
                            self.write(t, Code::atom(quote!(#rt::ops::nth(&#results, #i)), Repr::Dyn))
                        })
                        .collect();
                    return quote!({ let #results = #call; #writes });
                }
                let target = &targets[0];
                if *op == AssignOp::Assign {
                    let v = self.typed(value);
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
                    let c = self.cond(cond);
                    return quote!(let _ = #c;);
                }
                let mut out = TokenStream::new();
                for (i, (cond, body)) in branches.iter().enumerate() {
                    let c = if i == 0 { self.cond(cond) } else { self.noted_cond(cond) };
                    let b = self.stmts(body);
                    let kw = if i == 0 { quote!(if) } else { quote!(else if) };
                    out.extend(quote!(#kw #c { #b }));
                }
                if let Some(body) = otherwise.as_ref().filter(|b| !b.is_empty()) {
                    let b = self.stmts(body);
                    out.extend(quote!(else { #b }));
                }
                out
            }
            TStmtKind::While { cond, body } => {
                // Noted before the loop, and again before each later test.
                let c = if body.is_empty() { self.cond(cond) } else { self.noted_cond(cond) };
                self.frames.push(Frame::Loop);
                let b = self.stmts(body);
                self.frames.pop();
                quote!(while #c { #b })
            }
            TStmtKind::For { var, iter, body } => {
                let it = self.r(iter);
                let item = self.tmp("item");
                let item_code = Code::atom(quote!(#item), Repr::Dyn);
                let assign = match var {
                    VarRef::Local(id) if !self.usage.is_hoisted(*id) && self.usage.is_loop_declared(*id) => {
                        let binding = self.binding(*id);
                        let value = self.as_repr(item_code, Repr::of(&self.locals[*id].ty)).ts;
                        quote!(#binding = #value;)
                    }
                    _ => self.write_var(*var, item_code),
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
                let v = self.typed(source);
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
                        let store = self.write(target, Code::atom(quote!(#fresh), Repr::Dyn));
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
        let op = match op {
            AssignOp::Add => BinOp::Add,
            AssignOp::Sub => BinOp::Sub,
            AssignOp::Mul => BinOp::Mul,
            AssignOp::Div => BinOp::Div,
            AssignOp::Rem => BinOp::Rem,
            AssignOp::Assign => unreachable!("plain assignment is handled by the caller"),
        };
        match &target.kind {
            TExprKind::Index(base, index) => {
                let (b, i, cur) = (self.tmp("base"), self.tmp("key"), self.tmp("current"));
                let base_v = self.container_owned(base);
                let index_v = self.expr(index);
                let current = self.read_as(quote!(#rt::ops::index_get(tx, &#b, &#i).await?), &target.ty);
                let y = self.typed(value);
                let new = self.arith(op, Code::atom(quote!(#cur), current.repr), y);
                let new = self.value_of(new);
                let current = current.ts;
                quote!({
                    let #b = #base_v;
                    let #i = #index_v;
                    let #cur = #current;
                    #rt::ops::index_set(tx, &#b, &#i, #new).await?;
                })
            }
            TExprKind::Field(base, field) => {
                let (b, cur) = (self.tmp("base"), self.tmp("current"));
                let base_v = self.container_owned(base);
                let current = self.read_as(quote!(#rt::ops::field_get(tx, &#b, #field).await?), &target.ty);
                let y = self.typed(value);
                let new = self.arith(op, Code::atom(quote!(#cur), current.repr), y);
                let new = self.value_of(new);
                let current = current.ts;
                quote!({
                    let #b = #base_v;
                    let #cur = #current;
                    #rt::ops::field_set(tx, &#b, #field, #new).await?;
                })
            }
            TExprKind::Var(VarRef::Local(id))
                if Repr::of(&self.locals[*id].ty) == Repr::Num
                    && (matches!(op, BinOp::Add | BinOp::Sub | BinOp::Mul) || nonzero_number(value)) =>
            {
                // A Number local changes in place: `x += v;`, `x /= 2.0;`.
                let name = self.local_names[id.index()].clone();
                let y = self.want(value, Repr::Num).ts;
                match op {
                    BinOp::Add => quote!(#name += #y;),
                    BinOp::Sub => quote!(#name -= #y;),
                    BinOp::Mul => quote!(#name *= #y;),
                    BinOp::Div => quote!(#name /= #y;),
                    _ => quote!(#name %= #y;),
                }
            }
            _ => {
                let x = self.typed_place(target);
                let y = self.typed(value);
                let new = self.arith(op, x, y);
                self.write(target, new)
            }
        }
    }

    /// Stores `value` into the place `target`.
    fn write(&mut self, target: &TExpr, value: Code) -> TokenStream {
        let rt = rt();
        match &target.kind {
            TExprKind::Var(v) => self.write_var(*v, value),
            TExprKind::Index(base, index) => {
                let b = self.container(base);
                let i = self.r(index);
                let value = self.value_of(value);
                quote!(#rt::ops::index_set(tx, &#b, &#i, #value).await?;)
            }
            TExprKind::Field(base, field) => {
                let b = self.container(base);
                let value = self.value_of(value);
                quote!(#rt::ops::field_set(tx, &#b, #field, #value).await?;)
            }
            TExprKind::Deref(inner) => self.write(inner, value),
            _ => {
                let v = self.expr(target);
                let value = self.value_of(value);
                quote!(let _ = (#v, #value);)
            }
        }
    }

    fn write_var(&mut self, v: VarRef, value: Code) -> TokenStream {
        match v {
            VarRef::Local(id) => {
                let name = &self.local_names[id.index()];
                let value = self.as_repr(value, Repr::of(&self.locals[id].ty)).ts;
                quote!(#name = #value;)
            }
            VarRef::SeqData(i) => {
                let value = self.value_into(value);
                quote!(data[#i] = #value;)
            }
            VarRef::Global(i) => {
                let slot = self.global_slot(i);
                let value = value.ts;
                quote!(ep.set(tx, #slot, #value).await?;)
            }
            VarRef::Peered(i) => {
                let value = value.ts;
                quote!(ep.set(tx, #i, #value).await?;)
            }
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
            TExprKind::Var(VarRef::Local(id)) if Repr::of(&self.locals[*id].ty) == Repr::Dyn => {
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
        if let ([(kind, local, handler)], None) = (catches, finally)
            && !has_jump(body)
            && !has_jump(handler)
        {
            return self.try_catch(body, *kind, *local, handler);
        }
        // Loops outside the try are not "innermost" inside it.
        let saved = std::mem::take(&mut self.frames);
        self.frames = vec![Frame::TryBody];
        let body_code = self.tail(body, quote!(Ok(#rt::ops::Ctl::Next)));
        let mut arms = TokenStream::new();
        let sp = self.tmp("savepoint");
        // The undo log covers variables, objects and Externals; the body's own locals and
        // sequence data are saved here and put back with it.
        let saves = if catches.is_empty() { Vec::new() } else { self.save_assigned(body) };
        let save: TokenStream = saves.iter().map(|(n, v, _)| quote!(let #n = #v;)).collect();
        // Each handler puts back its own copy: the copies stay for the next one.
        let restore: TokenStream = saves
            .iter()
            .map(|(saved, _, local)| match local {
                Some(id) => {
                    let name = &self.local_names[id.index()];
                    if Repr::of(&self.locals[*id].ty).is_copy() {
                        quote!(#name = #saved;)
                    } else {
                        quote!(#name = #saved.clone();)
                    }
                }
                None => quote!(data.clone_from_slice(&#saved);),
            })
            .collect();
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
            let message = self.exception_message(*local, &e);
            let h = self.tail(handler, quote!(Ok(#rt::ops::Ctl::Next)));
            // A handler with a `?` or a `return` is a block of its own, which they end.
            let h = if leaves_early(&h) { quote!(async { #h }.await) } else { h };
            arms.extend(quote!(
                Err(#rt::Raise::Exception(#e)) #guard => {
                    tx.rollback_to(#sp.clone());
                    #restore
                    #binding = #message;
                    #h
                }
            ));
        }
        self.frames = saved;
        let fin = finally.map(|f| self.stmts(f)).unwrap_or_default();
        let done = self.tmp("done");
        let attempt = quote!(let #done: #rt::Flow<#rt::ops::Ctl> = async { #body_code }.await;);
        if catches.is_empty() {
            return self.try_end(quote!(#take_savepoint #attempt), &done, fin, finally, body, catches);
        }
        let outcome = self.tmp("outcome");
        let handled = quote!(let #outcome = match #done { #arms other => other };);
        self.try_end(quote!(#take_savepoint #attempt #handled), &outcome, fin, finally, body, catches)
    }

    /// The common `try`: one `catch`, no `finally`, and nothing that leaves the statement
    /// but an exception. The body runs to an outcome; `tx.caught` undoes it and hands over
    /// the exception when the `catch` takes it, and the handler runs as plain statements.
    fn try_catch(
        &mut self,
        body: &[TStmt],
        kind: ExceptionKind,
        local: LocalId,
        handler: &[TStmt],
    ) -> TokenStream {
        let rt = rt();
        let saved = std::mem::take(&mut self.frames);
        self.frames = vec![Frame::TryBody];
        let body_code = self.stmts(body);
        self.frames = saved;
        let saves = self.save_assigned(body);
        let (sp, done, e) = (self.tmp("savepoint"), self.tmp("done"), self.tmp("exception"));
        let names = saves.iter().map(|(n, _, _)| n);
        let values = saves.iter().map(|(_, v, _)| v);
        let restore: TokenStream = saves
            .iter()
            .map(|(saved, _, local)| match local {
                Some(id) => {
                    let name = &self.local_names[id.index()];
                    quote!(#name = #saved;)
                }
                None => quote!(data.clone_from_slice(&#saved);),
            })
            .collect();
        let save = if saves.is_empty() {
            quote!(let #sp = tx.savepoint();)
        } else {
            quote!(let (#sp, #(#names),*) = (tx.savepoint(), #(#values),*);)
        };
        // A body that cannot wait runs in a closure, so that the function stays plain; one
        // that waits is an async block, awaited where its outcome is taken.
        let (attempt, outcome) = if waits(&body_code) {
            (quote!(let #done = async { #body_code Ok(()) };), quote!(#done.await))
        } else {
            (quote!(let #done: #rt::Flow<()> = #rt::ops::attempt(|| { #body_code Ok(()) });), quote!(#done))
        };
        let kind = match kind {
            ExceptionKind::Application => quote!(Some(#rt::ExceptionKind::Application)),
            ExceptionKind::Network => quote!(Some(#rt::ExceptionKind::Network)),
            ExceptionKind::Any => quote!(None),
        };
        let binding = self.binding(local);
        let message = self.exception_message(local, &e);
        let h = self.stmts(handler);
        quote! {
            #save
            #attempt
            if let Some(#e) = tx.caught(#outcome, #sp, #kind)? {
                #restore
                #binding = #message;
                #h
            }
        }
    }

    /// What a `try` body assigns that the undo log does not cover (its locals and the
    /// sequence data): each as the name of its saved copy, the copy's value, and the local
    /// it is put back into (`None`: the sequence data).
    fn save_assigned(&mut self, body: &[TStmt]) -> Vec<(Ident, TokenStream, Option<LocalId>)> {
        let (mut assigned, mut data_written) = (Vec::new(), false);
        collect_assigned(body, &mut assigned, &mut data_written);
        // A local declared in the body is put back too when code after the `try` can see it
        // (it is hoisted: Waldo's scope is the whole function); one that only the body sees
        // is declared again whenever the body runs.
        let mut inner = Vec::new();
        collect_decls(body, &mut inner);
        assigned
            .retain(|&id| !inner.contains(&id) || self.usage.is_hoisted(id) && !self.usage.is_constant(id));
        let mut saves = Vec::new();
        for id in &assigned {
            let (name, saved) = (self.local_names[id.index()].clone(), self.tmp("saved"));
            let value =
                if Repr::of(&self.locals[*id].ty).is_copy() { quote!(#name) } else { quote!(#name.clone()) };
            saves.push((saved, value, Some(*id)));
        }
        if data_written {
            let saved = self.tmp("saved_data");
            saves.push((saved, quote!(data.to_vec()), None));
        }
        saves
    }

    /// The message of exception `e`, as the value of the `catch` variable `local`.
    fn exception_message(&self, local: LocalId, e: &Ident) -> TokenStream {
        let rt = rt();
        match Repr::of(&self.locals[local].ty) {
            Repr::Text => quote!(#rt::ops::text(&#e.message)),
            _ => quote!(#rt::Value::text(&#e.message)),
        }
    }

    /// The end of a `try` statement: `start` has run the body and the handlers into
    /// `outcome`; then `finally` (`fin`), then what the outcome says to do.
    fn try_end(
        &mut self,
        start: TokenStream,
        outcome: &Ident,
        fin: TokenStream,
        finally: Option<&[TStmt]>,
        body: &[TStmt],
        catches: &[(ExceptionKind, LocalId, Vec<TStmt>)],
    ) -> TokenStream {
        let rt = rt();
        // An attempt that must stop (wounded, past its deadline) does not run the `finally`.
        let start = if fin.is_empty() {
            start
        } else {
            quote!(#start let #outcome = #rt::ops::before_finally(tx, #outcome)?;)
        };
        if finally.is_some_and(diverges) {
            // A `finally` that always leaves decides how the statement ends, whatever the
            // body or a catch did (an exception included).
            return quote!({ #start let _ = #outcome; #fin });
        }
        let jumps = has_jump(body) || catches.iter().any(|(_, _, h)| has_jump(h));
        if !jumps {
            // Nothing in the body or the handlers leaves the statement but an exception.
            return quote!({ #start #fin #outcome?; });
        }
        let v = self.tmp("values");
        let r = self.ret(quote!(#v));
        let brk = self.jump(Jump::Break);
        let cont = self.jump(Jump::Continue);
        let end = if self.frames.is_empty() && !self.inside_try() {
            // No loop around: break/continue cannot come out of the body.
            quote!(if let #rt::ops::Ctl::Return(#v) = #outcome? { #r })
        } else {
            quote!(match #outcome? {
                #rt::ops::Ctl::Next => {}
                #rt::ops::Ctl::Return(#v) => { #r }
                #rt::ops::Ctl::Break => { #brk }
                #rt::ops::Ctl::Continue => { #cont }
            })
        };
        quote!({ #start #fin #end })
    }

    // ------------------------------------------------------------------ expressions

    /// `values`, flattened (a call returning k values counts k), as a `Vec<Value>`.
    fn value_list(&mut self, values: &[TExpr]) -> TokenStream {
        if values.iter().all(|v| !matches!(v.ty, Ty::Tuple(_))) {
            let vs: Vec<TokenStream> = values.iter().map(|v| self.element(v)).collect();
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
                    self.value_into(Code::atom(quote!(#name), Repr::of(&self.locals[id].ty)))
                }
                _ => self.element(v),
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
            TExprKind::Text(t) => return quote!(#rt::Value::text(#t)),
            // Values that already are `Value`s stay so (rather than being typed and back).
            TExprKind::Var(VarRef::SeqData(i)) => return quote!(data[#i].clone()),
            TExprKind::Var(VarRef::Peered(i)) => return quote!(ep.get(tx, #i).await?),
            TExprKind::Var(VarRef::Global(i)) => {
                let slot = self.global_slot(*i);
                return quote!(ep.get(tx, #slot).await?);
            }
            _ => {}
        }
        if let Some(v) = self.read_dyn(e) {
            return v;
        }
        let c = self.typed(e);
        self.value_of(c)
    }

    /// The `Value` of an expression that reads one (an element, a field, an External, the
    /// value of a call): what [`Lower::typed`] then takes the typed value out of.
    fn read_dyn(&mut self, e: &TExpr) -> Option<TokenStream> {
        let rt = rt();
        Some(match &e.kind {
            TExprKind::Deref(x) => {
                let x = self.r(x);
                quote!(#rt::ops::ext_read(tx, &#x).await?)
            }
            TExprKind::Field(base, i) => {
                let b = self.r(base);
                quote!(#rt::ops::field_get(tx, &#b, #i).await?)
            }
            TExprKind::Index(base, index) if Repr::of(&base.ty) != Repr::Text => {
                let b = self.r(base);
                let i = self.r(index);
                quote!(#rt::ops::index_get(tx, &#b, &#i).await?)
            }
            TExprKind::Call(callee, _)
                if matches!(
                    &**callee,
                    Callee::Function(_)
                        | Callee::Sequence(_)
                        | Callee::Value(_)
                        | Callee::Endpoint { results: Some(_), .. }
                        | Callee::Endpoint { resolved: Some(_), .. }
                ) =>
            {
                let TExprKind::Call(callee, args) = &e.kind else { return None };
                let vs = self.call_values(callee, args);
                quote!(#rt::ops::first(#vs))
            }
            _ => return None,
        })
    }

    /// `e` held as `repr`.
    fn want(&mut self, e: &TExpr, repr: Repr) -> Code {
        let c = self.typed(e);
        self.as_repr(c, repr)
    }

    /// A condition: `e` as a `bool` expression.
    fn cond(&mut self, e: &TExpr) -> TokenStream {
        if let TExprKind::Bool(b) = e.kind {
            // Rust wants `loop` for `while true`, which would change what it finds reachable.
            let rt = rt();
            return quote!(#rt::ops::constant(#b));
        }
        self.want(e, Repr::Bool).ts
    }

    /// The `Value` of a lowered expression.
    fn value_of(&self, c: Code) -> TokenStream {
        let rt = rt();
        let ts = c.ts;
        match c.repr {
            Repr::Num => quote!(#rt::Value::Number(#ts)),
            Repr::Bool => quote!(#rt::Value::Bool(#ts)),
            Repr::Text => quote!(#rt::Value::Text(#ts)),
            Repr::Dyn => ts,
        }
    }

    /// Like [`Lower::value_of`], where the code around says that a `Value` is wanted (an
    /// element of a `Vec<Value>` or an array, sequence data): a typed value is converted
    /// with `.into()`.
    fn value_into(&self, c: Code) -> TokenStream {
        match c.repr {
            Repr::Dyn => c.ts,
            _ => {
                let x = c.operand();
                quote!(#x.into())
            }
        }
    }

    /// The `Value` of `e` as an element of a `Vec<Value>` (see [`Lower::value_into`]).
    pub(super) fn element(&mut self, e: &TExpr) -> TokenStream {
        match &e.kind {
            TExprKind::Text(t) => quote!(#t.into()),
            TExprKind::Var(VarRef::SeqData(_) | VarRef::Peered(_) | VarRef::Global(_)) => self.expr(e),
            _ => match self.read_dyn(e) {
                Some(v) => v,
                None => {
                    let c = self.typed(e);
                    self.value_into(c)
                }
            },
        }
    }

    /// A lowered expression held as `repr`: a typed value becomes a `Value`, and a `Value`
    /// of a typed expression is taken out (a value of another kind raises).
    fn as_repr(&self, c: Code, repr: Repr) -> Code {
        if c.repr == repr {
            return c;
        }
        if c.repr != Repr::Dyn {
            let v = self.value_of(c);
            return self.as_repr(Code::atom(v, Repr::Dyn), repr);
        }
        let x = c.operand();
        match repr {
            Repr::Num => Code::atom(quote!(#x.as_number()?), repr),
            Repr::Bool => Code::atom(quote!(#x.as_bool()?), repr),
            Repr::Text => Code::atom(quote!(#x.as_text()?.clone()), repr),
            Repr::Dyn => c,
        }
    }

    /// A `Value` read (`ts`) of an expression of type `ty`, held as that type is.
    fn read_as(&self, ts: TokenStream, ty: &Ty) -> Code {
        self.as_repr(Code::atom(ts, Repr::Dyn), Repr::of(ty))
    }

    /// The current value of a place (a variable or an External), as its type is held.
    fn typed_place(&mut self, target: &TExpr) -> Code {
        self.typed(target)
    }

    /// A Text expression to pass where a `&str` is taken: a literal as it is, a Text local or
    /// sequence datum borrowed where it is.
    fn text_ref(&mut self, e: &TExpr) -> TokenStream {
        match &e.kind {
            TExprKind::Text(t) => quote!(#t),
            TExprKind::Var(VarRef::Local(id)) if Repr::of(&self.locals[*id].ty) == Repr::Text => {
                let name = &self.local_names[id.index()];
                quote!(&#name)
            }
            TExprKind::Var(VarRef::SeqData(i)) => quote!(data[#i].as_str()?),
            _ => {
                let c = self.want(e, Repr::Text).ts;
                quote!(&#c)
            }
        }
    }

    /// A Text expression as a `&str`, to compare.
    fn text_cmp(&mut self, e: &TExpr) -> TokenStream {
        match &e.kind {
            TExprKind::Text(t) => quote!(#t),
            TExprKind::Var(VarRef::SeqData(i)) => quote!(data[#i].as_str()?),
            TExprKind::Var(VarRef::Local(id)) if Repr::of(&self.locals[*id].ty) == Repr::Text => {
                let name = &self.local_names[id.index()];
                quote!(&*#name)
            }
            _ => {
                let c = self.want(e, Repr::Text).ts;
                quote!(&*#c)
            }
        }
    }

    /// `e` lowered as its type is held.
    fn typed(&mut self, e: &TExpr) -> Code {
        let rt = rt();
        match &e.kind {
            TExprKind::Number(n) => number_code(n.0),
            TExprKind::Text(t) => Code::atom(quote!(#rt::ops::text(#t)), Repr::Text),
            TExprKind::Bool(b) => Code::atom(quote!(#b), Repr::Bool),
            TExprKind::Var(v) => self.read_var(*v, &e.ty),
            TExprKind::SelfRef => Code::atom(quote!(ep.value()), Repr::Dyn),
            TExprKind::List(items) => {
                let vs: Vec<TokenStream> = items.iter().map(|i| self.expr(i)).collect();
                Code::atom(quote!(#rt::Value::new_list(Vec::from([#(#vs),*]))), Repr::Dyn)
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
                Code::atom(quote!(#rt::ops::map_literal(Vec::from([#(#es),*]))?), Repr::Dyn)
            }
            TExprKind::Unary(op, x) => {
                let c = self.typed(x);
                match (op, c.repr) {
                    (UnaryOp::Neg, Repr::Num) => {
                        // `-(-x)`: Rust warns on `--x`.
                        let x = c.at(UNARY + 1);
                        Code::op(quote!(-#x), Repr::Num, UNARY)
                    }
                    (UnaryOp::Neg, _) => {
                        let x = self.value_of(c);
                        Code::atom(quote!(#rt::ops::neg(&#x)?), Repr::Num)
                    }
                    (UnaryOp::Not, Repr::Bool) if c.prec > UNARY => {
                        let x = c.ts;
                        Code::op(quote!(!#x), Repr::Bool, UNARY)
                    }
                    (UnaryOp::Not, Repr::Bool) => {
                        // `!(a < b)`, `!(a == b)` and `!!a` read as a different test in Rust.
                        let x = c.ts;
                        Code::atom(quote!(#rt::ops::negate(#x)), Repr::Bool)
                    }
                    (UnaryOp::Not, _) => {
                        let x = self.value_of(c);
                        Code::atom(quote!(#rt::ops::not(&#x)?), Repr::Bool)
                    }
                }
            }
            TExprKind::Binary(op, a, b) => self.binary(*op, a, b, &e.ty),
            TExprKind::Deref(_) | TExprKind::Field(..) => {
                let v = self.read_dyn(e).unwrap_or_default();
                self.read_as(v, &e.ty)
            }
            TExprKind::Index(base, index) if Repr::of(&base.ty) == Repr::Text => {
                let t = self.text_ref(base);
                let i = self.want(index, Repr::Num).ts;
                Code::atom(quote!(#rt::ops::char_at_index(#t, #i)?), Repr::Text)
            }
            TExprKind::Index(..) => {
                let v = self.read_dyn(e).unwrap_or_default();
                self.read_as(v, &e.ty)
            }
            TExprKind::Call(callee, args) => {
                if let Some(s) = self.unit_call(callee, args) {
                    return Code::atom(quote!({ #s; #rt::Value::Nothing }), Repr::Dyn);
                }
                if let Some(v) = self.value_call(callee, args) {
                    let repr = Repr::of(&e.ty);
                    return self.as_repr(v, repr);
                }
                let vs = self.call_values(callee, args);
                if let Callee::Endpoint { resolved: None, results: None, function, .. } = &**callee {
                    // An unknown function's one value, of a kind the operation will check.
                    return Code::atom(
                        quote!(#rt::ops::first(#rt::ops::check_results(#function, #vs, &[#rt::ops::Kind::Any])?)),
                        Repr::Dyn,
                    );
                }
                let first = match Repr::of(&e.ty) {
                    Repr::Num => quote!(first_number),
                    Repr::Bool => quote!(first_bool),
                    Repr::Text => quote!(first_text),
                    Repr::Dyn => return Code::atom(quote!(#rt::ops::first(#vs)), Repr::Dyn),
                };
                Code::atom(quote!(#rt::ops::#first(#vs)?), Repr::of(&e.ty))
            }
            TExprKind::Error => Code::atom(quote!(#rt::Value::Nothing), Repr::Dyn),
        }
    }

    /// The value of variable `slot` (a peered or global variable) of type `ty`.
    fn read_slot(&self, slot: usize, ty: &Ty) -> Code {
        let repr = Repr::of(ty);
        let ts = match repr {
            Repr::Num => quote!(ep.num(tx, #slot).await?),
            Repr::Bool => quote!(ep.truth(tx, #slot).await?),
            Repr::Text => quote!(ep.text(tx, #slot).await?),
            Repr::Dyn => quote!(ep.get(tx, #slot).await?),
        };
        Code::atom(ts, repr)
    }

    fn read_var(&mut self, v: VarRef, ty: &Ty) -> Code {
        match v {
            VarRef::Local(id) => {
                let name = &self.local_names[id.index()];
                let repr = Repr::of(&self.locals[id].ty);
                if repr.is_copy() {
                    Code::atom(quote!(#name), repr)
                } else {
                    Code::atom(quote!(#name.clone()), repr)
                }
            }
            VarRef::SeqData(i) => match Repr::of(ty) {
                Repr::Dyn => Code::atom(quote!(data[#i].clone()), Repr::Dyn),
                repr => self.as_repr(Code::atom(quote!(data[#i]), Repr::Dyn), repr),
            },
            VarRef::Global(i) => self.read_slot(self.global_slot(i), ty),
            VarRef::Peered(i) => self.read_slot(i, ty),
        }
    }

    fn binary(&mut self, op: BinOp, a: &TExpr, b: &TExpr, ty: &Ty) -> Code {
        let rt = rt();
        let (ra, rb) = (Repr::of(&a.ty), Repr::of(&b.ty));
        let same = |r: Repr| ra == r && rb == r;
        match op {
            BinOp::Or | BinOp::And => {
                let p = if op == BinOp::Or { OR } else { AND };
                let x = self.want(a, Repr::Bool).at(p);
                let y = self.want(b, Repr::Bool).at(p + 1);
                let ts = if op == BinOp::Or { quote!(#x || #y) } else { quote!(#x && #y) };
                Code::op(ts, Repr::Bool, p)
            }
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Rem => {
                if op == BinOp::Add && same(Repr::Text) {
                    let x = self.text_ref(a);
                    let y = self.text_ref(b);
                    return Code::atom(quote!(#rt::ops::concat(#x, #y)), Repr::Text);
                }
                let x = self.typed(a);
                let y = self.typed(b);
                let c = self.arith(op, x, y);
                let repr = Repr::of(ty);
                self.as_repr(c, repr)
            }
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge if same(Repr::Num) || same(Repr::Text) => {
                let (x, y) = if ra == Repr::Num {
                    (self.typed(a).at(CMP + 1), self.typed(b).at(CMP + 1))
                } else {
                    (self.text_cmp(a), self.text_cmp(b))
                };
                let ts = match op {
                    BinOp::Lt => quote!(#x < #y),
                    BinOp::Le => quote!(#x <= #y),
                    BinOp::Gt => quote!(#x > #y),
                    _ => quote!(#x >= #y),
                };
                Code::op(ts, Repr::Bool, CMP)
            }
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                let x = self.r(a);
                let y = self.r(b);
                let order = match op {
                    BinOp::Lt => quote!(Lt),
                    BinOp::Le => quote!(Le),
                    BinOp::Gt => quote!(Gt),
                    _ => quote!(Ge),
                };
                Code::atom(quote!(#rt::ops::compare(#rt::ops::Order::#order, &#x, &#y)?), Repr::Bool)
            }
            BinOp::Eq | BinOp::Ne if ra == rb && ra != Repr::Dyn => {
                let (x, y) = if ra == Repr::Text {
                    (self.text_cmp(a), self.text_cmp(b))
                } else {
                    (self.typed(a).at(CMP + 1), self.typed(b).at(CMP + 1))
                };
                let ts = if op == BinOp::Eq { quote!(#x == #y) } else { quote!(#x != #y) };
                Code::op(ts, Repr::Bool, CMP)
            }
            BinOp::Eq | BinOp::Ne => {
                let x = self.r(a);
                let y = self.r(b);
                let eq = quote!(#rt::ops::eq(tx, &#x, &#y).await?);
                if op == BinOp::Eq {
                    Code::atom(eq, Repr::Bool)
                } else {
                    Code::op(quote!(!#eq), Repr::Bool, UNARY)
                }
            }
            BinOp::In | BinOp::NotIn => {
                let found = if same(Repr::Text) {
                    let x = self.text_ref(a);
                    let y = self.text_ref(b);
                    quote!(#rt::ops::text_in(#x, #y))
                } else {
                    let x = self.r(a);
                    let y = self.r(b);
                    quote!(#rt::ops::contains(tx, &#x, &#y).await?)
                };
                if op == BinOp::In {
                    Code::atom(found, Repr::Bool)
                } else {
                    Code::op(quote!(!#found), Repr::Bool, UNARY)
                }
            }
        }
    }

    /// `x op y` for an arithmetic operator: Rust's on two Numbers, the runtime's otherwise
    /// (`+` on a value only the runtime knows may join Texts).
    fn arith(&self, op: BinOp, x: Code, y: Code) -> Code {
        let rt = rt();
        if x.repr == Repr::Num && y.repr == Repr::Num {
            let p = if matches!(op, BinOp::Add | BinOp::Sub) { ADD } else { MUL };
            let (a, b) = (x.at(p), y.at(p + 1));
            return match op {
                BinOp::Add => Code::op(quote!(#a + #b), Repr::Num, p),
                BinOp::Sub => Code::op(quote!(#a - #b), Repr::Num, p),
                BinOp::Mul => Code::op(quote!(#a * #b), Repr::Num, p),
                // By a Number literal other than zero: nothing to raise.
                BinOp::Div if nonzero_literal(&y.ts) => Code::op(quote!(#a / #b), Repr::Num, p),
                BinOp::Rem if nonzero_literal(&y.ts) => Code::op(quote!(#a % #b), Repr::Num, p),
                // Arguments: any expression as it is.
                BinOp::Div => {
                    let (a, b) = (x.ts, y.ts);
                    Code::atom(quote!(#rt::ops::divide(#a, #b)?), Repr::Num)
                }
                _ => {
                    let (a, b) = (x.ts, y.ts);
                    Code::atom(quote!(#rt::ops::remainder(#a, #b)?), Repr::Num)
                }
            };
        }
        if op == BinOp::Add && x.repr == Repr::Text && y.repr == Repr::Text {
            let (a, b) = (x.ts, y.ts);
            return Code::atom(quote!(#rt::ops::concat(&#a, &#b)), Repr::Text);
        }
        let f = match op {
            BinOp::Add => quote!(add),
            BinOp::Sub => quote!(sub),
            BinOp::Mul => quote!(mul),
            BinOp::Div => quote!(div),
            _ => quote!(rem),
        };
        let (a, b) = (self.value_of(x), self.value_of(y));
        Code::atom(quote!(#rt::ops::#f(&#a, &#b)?), Repr::Dyn)
    }

    // ------------------------------------------------------------------ calls

    fn args(&mut self, args: &[TExpr]) -> Vec<TokenStream> {
        args.iter().map(|a| self.element(a)).collect()
    }

    fn refs(&mut self, args: &[TExpr]) -> Vec<TokenStream> {
        args.iter().map(|a| self.r(a)).collect()
    }

    /// Calls with no value, as a statement (`append`, `print`, `signal`...).
    fn unit_call(&mut self, callee: &Callee, args: &[TExpr]) -> Option<TokenStream> {
        let rt = rt();
        Some(match callee {
            Callee::Builtin(Builtin::Print) => {
                // A Number, TrueFalse or Text prints as `toText` writes it.
                let text = match &args[0].kind {
                    TExprKind::Var(VarRef::Local(id)) if Repr::of(&self.locals[*id].ty) == Repr::Text => {
                        let name = &self.local_names[id.index()];
                        quote!(#name.to_string())
                    }
                    _ => {
                        let x = self.typed(&args[0]);
                        match x.repr {
                            Repr::Num => {
                                let n = x.ts;
                                quote!(#rt::number_to_text(#n))
                            }
                            Repr::Bool => {
                                let b = x.ts;
                                quote!(#rt::ops::bool_text(#b).to_string())
                            }
                            Repr::Text => {
                                let t = x.operand();
                                quote!(#t.to_string())
                            }
                            Repr::Dyn => {
                                let v = x.ts;
                                quote!(#rt::ops::print_text(tx, &#v).await?)
                            }
                        }
                    }
                };
                quote!(tx.print(&ep.core, #text))
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

    /// Calls with exactly one value.
    fn value_call(&mut self, callee: &Callee, args: &[TExpr]) -> Option<Code> {
        let rt = rt();
        Some(match callee {
            Callee::Builtin(Builtin::Len) => match args {
                [x] if Repr::of(&x.ty) == Repr::Text => {
                    let t = self.text_ref(x);
                    Code::atom(quote!(#rt::ops::text_len(#t)), Repr::Num)
                }
                _ => {
                    let a = self.refs(args);
                    let x = &a[0];
                    Code::atom(quote!(#rt::ops::len(tx, &#x).await?), Repr::Num)
                }
            },
            Callee::Builtin(Builtin::Range) => {
                let a = self.refs(args);
                let ts = match a.as_slice() {
                    [x, y] => quote!(#rt::ops::range(&#x, &#y, None)?),
                    [x, y, z] => quote!(#rt::ops::range(&#x, &#y, Some(&#z))?),
                    _ => quote!(#rt::Value::Nothing),
                };
                Code::atom(ts, Repr::Dyn)
            }
            Callee::Builtin(Builtin::ToText) => {
                let x = self.typed(&args[0]);
                match x.repr {
                    Repr::Num => {
                        let n = x.ts;
                        Code::atom(quote!(#rt::ops::number_text(#n)), Repr::Text)
                    }
                    Repr::Bool => {
                        let b = x.ts;
                        Code::atom(quote!(#rt::ops::bool_text(#b)), Repr::Text)
                    }
                    Repr::Text => x,
                    Repr::Dyn => {
                        let v = x.ts;
                        Code::atom(quote!(#rt::ops::to_text(&#v)?), Repr::Text)
                    }
                }
            }
            Callee::Builtin(Builtin::Id) => Code::atom(quote!(#rt::ops::text(ep.core.id())), Repr::Text),
            Callee::Method(recv, Method::Id) => {
                let r = self.r(recv);
                Code::atom(quote!(#rt::ops::endpoint_id(&#r)?), Repr::Text)
            }
            _ => return None,
        })
    }

    /// `call?`, a call of a function of this endpoint, whose code notes its own places; in a
    /// statement that may raise after it, the statement's place is put back when it returns
    /// (the runtime does it for sequences and endpoint calls).
    fn put_back(&self, call: TokenStream) -> TokenStream {
        if self.calls_put_back { quote!(tx.back(tx.mark(), #call)?) } else { quote!(#call?) }
    }

    /// A call's results, as a `Vec<Value>` expression.
    fn call_values(&mut self, callee: &Callee, args: &[TExpr]) -> TokenStream {
        let rt = rt();
        match callee {
            Callee::Function(f) => {
                let name = &self.fn_names[f.index()];
                let a = self.args(args);
                self.called.push(*f);
                let call = if self.fn_bare.get(f.index()).copied().unwrap_or(false) {
                    quote!(#name(ep, tx).await)
                } else if self.fn_waits.get(f.index()).copied().unwrap_or(true) {
                    quote!(#name(ep, tx, Vec::from([#(#a),*])).await)
                } else {
                    quote!(#name(ep, tx, Vec::from([#(#a),*])))
                };
                self.put_back(call)
            }
            Callee::Sequence(s) => {
                let returns = self.protocol.sequences[*s].returns;
                let a = self.args(args);
                let s = s.index() as u32;
                quote!(ep.sequence(tx, #s, [#(#a),*], #returns).await?)
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
                    Some(v) => {
                        let v = self.value_of(v);
                        quote!(Vec::from([#v]))
                    }
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

/// The locals assigned or declared anywhere in `stmts`, and whether sequence data is
/// assigned (to save and restore them around a `try` body).
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

        // A declaration sets its local (to its initializer or its type's default).
        fn visit_decl(&mut self, local: LocalId) {
            self.var(VarRef::Local(local));
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

/// Whether lowered code may wait: an `.await` or an `async` block in it. Code that cannot
/// becomes a plain `fn` (cheaper to run, and to compile).
pub(super) fn waits(tokens: &TokenStream) -> bool {
    tokens.clone().into_iter().any(|t| match t {
        proc_macro2::TokenTree::Ident(i) => i == "await" || i == "async",
        proc_macro2::TokenTree::Group(g) => waits(&g.stream()),
        proc_macro2::TokenTree::Punct(_) | proc_macro2::TokenTree::Literal(_) => false,
    })
}

/// Whether lowered code can leave early: a `?` or a `return` in it.
fn leaves_early(tokens: &TokenStream) -> bool {
    tokens.clone().into_iter().any(|t| match t {
        proc_macro2::TokenTree::Punct(p) => p.as_char() == '?',
        proc_macro2::TokenTree::Ident(i) => i == "return",
        proc_macro2::TokenTree::Group(g) => leaves_early(&g.stream()),
        proc_macro2::TokenTree::Literal(_) => false,
    })
}

/// Whether a statement list holds a `return`, `break` or `continue` anywhere.
fn has_jump(stmts: &[TStmt]) -> bool {
    struct Jumps(bool);

    impl Visit for Jumps {
        fn visit_stmt(&mut self, s: &TStmt) {
            if matches!(s.kind, TStmtKind::Return(_) | TStmtKind::Break | TStmtKind::Continue) {
                self.0 = true;
            }
            visit::walk_stmt(self, s);
        }

        // Expressions hold no statements.
        fn visit_expr(&mut self, _: &TExpr) {}
    }

    let mut j = Jumps(false);
    j.visit_stmts(stmts);
    j.0
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

/// A Number literal as an `f64`.
fn number_code(n: f64) -> Code {
    if n.is_finite() {
        let lit = Literal::f64_unsuffixed(n.abs());
        if n.is_sign_negative() {
            Code::op(quote!(-#lit), Repr::Num, UNARY)
        } else {
            Code::atom(quote!(#lit), Repr::Num)
        }
    } else if n > 0.0 {
        Code::atom(quote!(f64::INFINITY), Repr::Num)
    } else {
        Code::atom(quote!(f64::NEG_INFINITY), Repr::Num)
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
pub(super) fn default_value(protocol: &Protocol, struct_names: &[Ident], ty: &Ty) -> TokenStream {
    default_in(protocol, struct_names, ty, &mut Vec::new())
}

/// The starting value of `ty` inside the starting values of `structs` (a struct already
/// being made starts as Nothing where it holds itself through an External). A struct made
/// from scratch is `rt::fresh` of its Rust type (named in `struct_names`) when there are
/// names, written out when not (in that type's own `rt::Fresh`).
fn default_in(
    protocol: &Protocol,
    struct_names: &[Ident],
    ty: &Ty,
    structs: &mut Vec<StructId>,
) -> TokenStream {
    let rt = rt();
    match ty {
        Ty::Number => quote!(#rt::Value::Number(0.0)),
        Ty::Text => quote!(#rt::Value::text("")),
        Ty::Bool => quote!(#rt::Value::Bool(false)),
        Ty::List(_) => quote!(#rt::Value::new_list(Vec::new())),
        Ty::Map(..) => quote!(#rt::Value::new_map(Default::default())),
        Ty::Struct(id) if structs.is_empty() && !struct_names.is_empty() => {
            let name = &struct_names[id.index()];
            quote!(#rt::fresh::<super::#name>())
        }
        Ty::Struct(id) if !structs.contains(id) => {
            structs.push(*id);
            let fields: Vec<TokenStream> = protocol.structs[*id]
                .fields
                .iter()
                .map(|f| default_in(protocol, struct_names, &f.ty, structs))
                .collect();
            structs.pop();
            quote!(#rt::Value::new_struct(Vec::from([#(#fields),*])))
        }
        // An External declared without a value starts bound to a fresh cell of its own.
        Ty::External(inner) => {
            let value = default_in(protocol, struct_names, inner, structs);
            quote!(#rt::Value::External(#rt::ExtCell::new(#value)))
        }
        _ => quote!(#rt::Value::Nothing),
    }
}

/// The starting value of `ty` where a `Value` is wanted (see [`Lower::value_into`]).
pub(super) fn start_value(protocol: &Protocol, struct_names: &[Ident], ty: &Ty) -> TokenStream {
    match ty {
        Ty::Number => quote!(0.0.into()),
        Ty::Text => quote!("".into()),
        Ty::Bool => quote!(false.into()),
        _ => default_value(protocol, struct_names, ty),
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

/// Whether a statement may raise an `ApplicationException` itself (not through the
/// statements inside it), and how.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Raises {
    No,
    /// Only through the code it calls (its own functions, sequences), which notes its own
    /// places.
    InCalls,
    /// Through its own operations, perhaps after a call in it.
    AfterCalls,
}

/// Whether `code` is one Number literal other than zero: a divisor that cannot raise.
fn nonzero_literal(code: &TokenStream) -> bool {
    let mut tokens = code.clone().into_iter();
    match (tokens.next(), tokens.next()) {
        (Some(proc_macro2::TokenTree::Literal(l)), None) => {
            l.to_string().parse::<f64>().is_ok_and(|n| n != 0.0)
        }
        _ => false,
    }
}

/// Whether `e` is a Number literal other than zero (see [`nonzero_literal`]).
fn nonzero_number(e: &TExpr) -> bool {
    matches!(e.kind, TExprKind::Number(n) if n.0 != 0.0)
}

/// Whether expression `e` has an operation that may raise an `ApplicationException` (the
/// book's "Runtime errors"): division or `%` (but by a Number literal other than zero),
/// indexing, a container method, a call of a `Function` value or another endpoint (or its
/// `id()`), `range`, `signal`, reading an External.
fn expr_may_raise(e: &TExpr) -> bool {
    let mut found = false;
    for_each_subexpr(e, |x| {
        found |= matches!(&x.kind, TExprKind::Binary(BinOp::Div | BinOp::Rem, _, y) if !nonzero_number(y))
            || matches!(&x.kind, TExprKind::Index(..) | TExprKind::Deref(_))
            || matches!(&x.kind, TExprKind::Call(callee, _) if matches!(**callee,
                Callee::Value(_)
                    | Callee::Endpoint { .. }
                    | Callee::Method(..)
                    | Callee::Builtin(Builtin::Range | Builtin::Signal)));
    });
    found
}

/// Whether expression `e` calls code that notes its own places (a function of the endpoint,
/// a sequence).
fn calls_code(e: &TExpr) -> bool {
    let mut found = false;
    for_each_subexpr(e, |x| {
        found |= matches!(&x.kind, TExprKind::Call(callee, _) if matches!(**callee, Callee::Function(_) | Callee::Sequence(_)));
    });
    found
}

/// Whether statement `s` itself may raise, and how (see [`Raises`]). A write into a container
/// element or a struct field may raise too: it may be data the other endpoint controls.
fn may_raise(s: &TStmt, locals: &[Var]) -> Raises {
    let exprs: Vec<&TExpr> = match &s.kind {
        TStmtKind::Decl(id) => locals.get(id.index()).and_then(|v| v.init.as_ref()).into_iter().collect(),
        TStmtKind::Assign { targets, value, .. } => targets.iter().chain(std::iter::once(value)).collect(),
        TStmtKind::Expr(e) => vec![e],
        // An `elseIf`'s and a `while`'s later tests note their own places.
        TStmtKind::If { branches, .. } => branches.iter().take(1).map(|(cond, _)| cond).collect(),
        TStmtKind::While { cond, .. } => vec![cond],
        TStmtKind::For { iter, .. } => vec![iter],
        TStmtKind::Return(values) => values.iter().collect(),
        TStmtKind::ExtAssign { source, target } | TStmtKind::ExtCopy { source, target } => {
            vec![source, target]
        }
        TStmtKind::Break | TStmtKind::Continue | TStmtKind::Try { .. } | TStmtKind::Block(_) => Vec::new(),
    };
    let into = |t: &TExpr| matches!(t.kind, TExprKind::Index(..) | TExprKind::Field(..));
    let writes_into = match &s.kind {
        TStmtKind::Assign { targets, op, value } => {
            matches!(op, AssignOp::Div | AssignOp::Rem) && !nonzero_number(value) || targets.iter().any(into)
        }
        TStmtKind::ExtAssign { target, .. } | TStmtKind::ExtCopy { target, .. } => into(target),
        _ => false,
    };
    if writes_into || exprs.iter().any(|e| expr_may_raise(e)) {
        Raises::AfterCalls
    } else if exprs.iter().any(|e| calls_code(e)) {
        Raises::InCalls
    } else {
        Raises::No
    }
}
