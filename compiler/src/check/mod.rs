//! The checker: turns a syntax tree into a [`Protocol`] the code generator can trust.
//!
//! It works in two passes. The first collects every declaration — endpoints, structs, peered
//! data, sequences, each endpoint's globals and functions — resolves their types, and checks
//! the protocol's shape (bodies, sections, block order). The second checks every body: names,
//! types, calls, `controls`, returns, loops. Both passes report and go on: a mistake produces
//! one diagnostic and an `Error` type that fits everywhere, so later code is still checked and
//! one run reports every independent mistake.
//!
//! Mistakes are data until `check` returns: each is recorded as a `CheckError` (module
//! `error`, which also writes every message, in one function) and turned into a
//! [`Diagnostic`] at the end.
//!
//! This module holds the entry point, the `Checker` with what the first pass learns, and how
//! it reports. The passes are `impl Checker` blocks in the child modules, one concern each:
//! `collect` (pass 1), `bodies` (pass 2, per function and block), `scope` (what a name means
//! where), `stmt`, `place` (writes and `controls`), `expr`, `call`, `builtins`, `types`
//! (written types and fitting values to them), `flow` (whether code always returns) and
//! `suggest` (help for unknown names).

mod bodies;
mod builtins;
mod call;
mod collect;
mod error;
mod expr;
mod flow;
mod place;
mod scope;
mod stmt;
mod suggest;
mod types;

use std::collections::HashMap;

use error::CheckError;

use waldo_grammar as ast;
use waldo_grammar::{FileId, Span};

use crate::diagnostics::Diagnostic;
use crate::ir::indexed_by;
use crate::ir::*;

/// The names a program may not declare.
const BUILTINS: &[&str] = &[
    "len",
    "range",
    "toText",
    "print",
    "signal",
    "id",
    "ApplicationException",
    "NetworkException",
    "Exception",
];

/// Checks a parsed file. Returns the checked protocol and every diagnostic (errors and
/// warnings), in source order. The protocol is meaningful only when no diagnostic is an error.
pub fn check(file: &ast::File) -> (Protocol, Vec<Diagnostic>) {
    let mut checker = Checker::new(file);
    checker.collect();
    let protocol = checker.check_bodies();
    let mut diags: Vec<Diagnostic> =
        checker.errors.into_iter().map(|e| e.into_diagnostic(checker.file, &checker.structs)).collect();
    diags.sort_by_key(|d| (d.primary.span.start, d.primary.span.end));
    (protocol, diags)
}

/// Parameters as resolved in the first pass: name, type, where declared.
type Params = Vec<(String, Ty, Span)>;

/// A function's signature, known after the first pass.
struct FnInfo {
    public: bool,
    params: Params,
    returns: Vec<Ty>,
    span: Span,
}

/// One endpoint as the first pass sees it.
struct EpInfo<'a> {
    name: String,
    span: Span,
    /// The body written for it (under `Symmetric`, the first endpoint's, for both).
    body: Option<&'a ast::EndpointBody>,
    globals: Vec<Var>,
    global_names: HashMap<String, (usize, Span)>,
    functions: Vec<FnInfo>,
    function_names: HashMap<String, (FunctionId, Span)>,
    on_create: Option<(&'a ast::OnCreate, Params)>,
}

/// One sequence as the first pass sees it.
struct SeqInfo<'a> {
    def: &'a ast::SequenceDef,
    data: Vec<Var>,
    params: usize,
    returns: usize,
    data_names: HashMap<String, (usize, Span)>,
    blocks: Vec<(EndpointId, String, Span)>,
}

indexed_by!(<'a> EndpointId => EpInfo<'a>);
indexed_by!(<'a> SequenceId => SeqInfo<'a>);
indexed_by!(FunctionId => FnInfo);

/// The checker's state: the file, the mistakes found so far, and what the first pass learns
/// about the protocol's declarations (by id, and by name for lookups).
struct Checker<'a> {
    file: FileId,
    ast: &'a ast::File,
    errors: Vec<CheckError>,
    symmetric: bool,
    endpoints: Vec<EpInfo<'a>>,
    structs: Vec<StructDef>,
    struct_names: HashMap<String, (StructId, Span)>,
    struct_asts: Vec<&'a ast::StructDecl>,
    peered: Vec<PeeredVar>,
    peered_names: HashMap<String, (usize, Span)>,
    peered_asts: Vec<&'a ast::PeeredVar>,
    sequences: Vec<SeqInfo<'a>>,
    sequence_names: HashMap<String, (SequenceId, Span)>,
}

/// The location of a checked node.
fn loc(span: Span) -> Loc {
    Loc(span)
}

/// A checked expression.
fn texpr(kind: TExprKind, ty: Ty, span: Span) -> TExpr {
    TExpr { kind, ty, loc: Loc(span) }
}

/// The expression that stands for one with a mistake: its type fits everywhere.
fn error_expr(span: Span) -> TExpr {
    texpr(TExprKind::Error, Ty::Error, span)
}

impl<'a> Checker<'a> {
    fn new(ast: &'a ast::File) -> Self {
        Checker {
            file: ast.file,
            ast,
            errors: Vec::new(),
            symmetric: ast.endpoints.kind == ast::EndpointDeclKind::Symmetric,
            endpoints: Vec::new(),
            structs: Vec::new(),
            struct_names: HashMap::new(),
            struct_asts: Vec::new(),
            peered: Vec::new(),
            peered_names: HashMap::new(),
            peered_asts: Vec::new(),
            sequences: Vec::new(),
            sequence_names: HashMap::new(),
        }
    }

    /// Records a mistake (or a warning); it becomes a diagnostic when `check` returns.
    fn report(&mut self, error: CheckError) {
        self.errors.push(error);
    }

    /// Reports declaring a builtin name; returns whether it was one.
    fn builtin_declared(&mut self, name: &ast::Ident) -> bool {
        if BUILTINS.contains(&name.as_str()) {
            self.report(CheckError::BuiltinDeclared { name: name.name.to_string(), span: name.span });
            true
        } else {
            false
        }
    }

    /// Every endpoint of the protocol, in declaration order.
    fn endpoint_ids(&self) -> impl Iterator<Item = EndpointId> + use<> {
        (0..self.endpoints.len()).map(EndpointId)
    }

    /// The member set of endpoint `id` (under `Symmetric`, the written one).
    fn ep(&self, id: EndpointId) -> &EpInfo<'a> {
        if self.symmetric { &self.endpoints[0] } else { &self.endpoints[id] }
    }
}
