//! The checker: turns a syntax tree into a [`Protocol`] the code generator can trust.
//!
//! It works in two passes. The first collects every declaration — endpoints, structs, peered
//! data, sequences, each endpoint's globals and functions — resolves their types, and checks
//! the protocol's shape (bodies, sections, block order). The second checks every body: names,
//! types, calls, `controls`, returns, loops. Both passes report and go on: a mistake produces
//! one diagnostic and an `Error` type that fits everywhere, so later code is still checked and
//! one run reports every independent mistake.

use std::collections::HashMap;

use waldo_grammar as ast;
use waldo_grammar::{ExprKind, FileId, Span, StmtKind, TypeKind};

use crate::codes::*;
use crate::diagnostics::{Diagnostic, Label, Severity};
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
    let mut diags = checker.diags;
    diags.sort_by_key(|d| (d.primary.span.start, d.primary.span.end));
    (protocol, diags)
}

/// What a name refers to where it is used.
#[derive(Clone, Copy, Debug)]
enum Binding {
    Var(VarRef),
    Function(FunctionId),
    OnCreate,
    Sequence(SequenceId),
    Builtin(Builtin),
    Exception,
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

struct Checker<'a> {
    file: FileId,
    ast: &'a ast::File,
    diags: Vec<Diagnostic>,
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

/// Where the code being checked runs, and what it can see.
struct Cx {
    /// The endpoint running the code.
    endpoint: EndpointId,
    /// The sequence whose block is being checked.
    sequence: Option<SequenceId>,
    /// Locals (parameters first), by `LocalId`.
    locals: Vec<Var>,
    /// Whether each local has been read.
    used: Vec<bool>,
    /// Visible locals by name.
    scope: HashMap<String, LocalId>,
    /// How many globals of the endpoint are visible (initializers see earlier ones only).
    globals_visible: usize,
    /// How many peered variables are visible.
    peered_visible: usize,
    /// Whether functions and sequences are visible (not in peered initializers).
    code_visible: bool,
    /// Result types of the enclosing function; `None` where `return` takes no value.
    returns: Option<Vec<Ty>>,
    /// Nesting of loops around the current statement.
    loops: u32,
}

impl Cx {
    fn new(endpoint: EndpointId) -> Self {
        Cx {
            endpoint,
            sequence: None,
            locals: Vec::new(),
            used: Vec::new(),
            scope: HashMap::new(),
            globals_visible: usize::MAX,
            peered_visible: usize::MAX,
            code_visible: true,
            returns: None,
            loops: 0,
        }
    }

    fn add_local(&mut self, name: &str, ty: Ty, span: Span) -> LocalId {
        let id = self.locals.len();
        self.locals.push(Var { name: name.to_owned(), ty, init: None, loc: Loc(span) });
        self.used.push(false);
        self.scope.insert(name.to_owned(), id);
        id
    }
}

fn loc(span: Span) -> Loc {
    Loc(span)
}

fn texpr(kind: TExprKind, ty: Ty, span: Span) -> TExpr {
    TExpr { kind, ty, loc: Loc(span) }
}

fn error_expr(span: Span) -> TExpr {
    texpr(TExprKind::Error, Ty::Error, span)
}

/// Whether `te` calls a function of an endpoint the checker could not identify (its results
/// are known only at run time).
fn is_dynamic_call(te: &TExpr) -> bool {
    te.ty == Ty::Any
        && matches!(&te.kind, TExprKind::Call(c, _) if matches!(**c, Callee::Endpoint { resolved: None, .. }))
}

/// A dynamic call whose results the caller takes back as values of types `tys`: the runtime
/// checks them, and the expression has those types from here on. Any other `te` as it is.
fn expect_results(mut te: TExpr, tys: &[Ty]) -> TExpr {
    if !is_dynamic_call(&te) {
        return te;
    }
    let tys: Vec<Ty> = tys.iter().map(|t| t.value().clone()).collect();
    if let TExprKind::Call(c, _) = &mut te.kind
        && let Callee::Endpoint { results, .. } = &mut **c
    {
        *results = Some(tys.clone());
    }
    te.ty = match tys.as_slice() {
        [] => Ty::Nothing,
        [one] => one.clone(),
        many => Ty::Tuple(many.to_vec()),
    };
    te
}

/// Whether `e` is an empty `[]` or `{}`, whose type must come from elsewhere.
fn is_empty_literal(e: &ast::Expr) -> bool {
    matches!(&e.kind, ExprKind::List(items) if items.is_empty())
        || matches!(&e.kind, ExprKind::Map(entries) if entries.is_empty())
}

impl<'a> Checker<'a> {
    fn new(ast: &'a ast::File) -> Self {
        Checker {
            file: ast.file,
            ast,
            diags: Vec::new(),
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

    // ------------------------------------------------------------------ diagnostics

    fn error(
        &mut self,
        code: &'static str,
        message: impl Into<String>,
        span: Span,
        label: impl Into<String>,
    ) -> &mut Diagnostic {
        self.diags.push(Diagnostic::error(code, message, self.file, Label::new(span, label)));
        self.diags.last_mut().expect("just pushed")
    }

    fn warning(
        &mut self,
        code: &'static str,
        message: impl Into<String>,
        span: Span,
        label: impl Into<String>,
    ) -> &mut Diagnostic {
        let mut d = Diagnostic::error(code, message, self.file, Label::new(span, label));
        d.severity = Severity::Warning;
        self.diags.push(d);
        self.diags.last_mut().expect("just pushed")
    }

    fn duplicate(&mut self, what: &str, name: &str, span: Span, previous: Span) {
        self.error(
            E_DUPLICATE,
            format!("`{name}` is declared twice"),
            span,
            format!("{what} declared again here"),
        )
        .secondary
        .push(Label::new(previous, format!("`{name}` is first declared here")));
        if let Some(d) = self.diags.last_mut() {
            d.help.push(
                "give one of them another name; names stay visible to the end of their scope".to_owned(),
            );
        }
    }

    /// Reports declaring a builtin name; returns whether it was one.
    fn builtin_declared(&mut self, name: &ast::Ident) -> bool {
        if BUILTINS.contains(&name.as_str()) {
            self.error(
                E_BUILTIN_DECLARED,
                format!("`{}` is a builtin name and cannot be declared", name.name),
                name.span,
                "builtin name",
            )
            .help
            .push("choose another name".into());
            true
        } else {
            false
        }
    }

    /// Reports using the result of a call on an endpoint the checker could not identify
    /// where its type must be known (a field, an index, a method, a call of it).
    fn unknown_result(&mut self, te: &TExpr, span: Span) {
        if te.ty == Ty::Any {
            self.error(
                E_CANNOT_INFER,
                "the type of this result cannot be known here",
                span,
                "a call on an endpoint the checker cannot identify",
            )
            .help
            .push("store it in a variable of the type you expect first (`Struct S s = e.f();`): the runtime checks it there".into());
        }
    }

    fn ty_name(&self, ty: &Ty) -> String {
        ty.name(&self.structs)
    }

    // ------------------------------------------------------------------ types

    /// Resolves a written type. `allow_nothing` admits `Nothing` (only in function types).
    fn resolve_ty(&mut self, ty: &ast::Type, allow_nothing: bool) -> Ty {
        match &ty.kind {
            TypeKind::Number => Ty::Number,
            TypeKind::Text => Ty::Text,
            TypeKind::TrueFalse => Ty::Bool,
            TypeKind::Endpoint => Ty::Endpoint,
            TypeKind::Nothing => {
                if !allow_nothing {
                    self.error(
                        E_BAD_TYPE_USE,
                        "`Nothing` is not a type of data",
                        ty.span,
                        "no value has this type",
                    )
                    .help
                    .push(
                        "`Nothing` only appears in Function types, as `in: Nothing` or `returns: Nothing`"
                            .into(),
                    );
                    return Ty::Error;
                }
                Ty::Nothing
            }
            TypeKind::List(elem) => Ty::List(Box::new(self.resolve_ty(elem, false))),
            TypeKind::Map(k, v) => {
                let key = self.resolve_ty(k, false);
                if !matches!(key, Ty::Number | Ty::Text | Ty::Bool | Ty::Error) {
                    let name = self.ty_name(&key);
                    self.error(
                        E_BAD_MAP_KEY,
                        format!("a Map cannot have keys of type {name}"),
                        k.span,
                        "not a key type",
                    )
                    .help
                    .push("Map keys are Number, Text or TrueFalse, so that they have an order".into());
                }
                Ty::Map(Box::new(key), Box::new(self.resolve_ty(v, false)))
            }
            TypeKind::Struct(name) => match self.struct_names.get(name.as_str()) {
                Some(&(id, _)) => Ty::Struct(id),
                None => {
                    self.error(
                        E_UNKNOWN_TYPE,
                        format!("no struct named `{}`", name.name),
                        name.span,
                        "not declared",
                    )
                    .help
                    .push(format!("declare it: `Struct {} {{ Number x; }}`", name.name));
                    Ty::Error
                }
            },
            TypeKind::Function { params, returns } => {
                let mut list = |types: &[ast::Type]| -> Vec<Ty> {
                    if let [only] = types
                        && only.kind == TypeKind::Nothing
                    {
                        return Vec::new();
                    }
                    types.iter().map(|t| self.resolve_ty(t, false)).collect()
                };
                let params = list(params);
                let returns = list(returns);
                Ty::Function(Box::new(FnSig { params, returns }))
            }
            TypeKind::External(inner) => {
                if matches!(inner.kind, TypeKind::External(_)) {
                    self.error(
                        E_BAD_TYPE_USE,
                        "an External cannot hold an External",
                        ty.span,
                        "nested External",
                    )
                    .help
                    .push("write `External T` once; a cell holds a value, not another cell".into());
                    return Ty::Error;
                }
                Ty::External(Box::new(self.resolve_ty(inner, false)))
            }
        }
    }

    // ------------------------------------------------------------------ first pass

    fn collect(&mut self) {
        self.collect_endpoints();
        self.collect_items();
        self.collect_struct_fields();
        self.collect_peered();
        self.collect_members();
        self.collect_sequences();
    }

    fn collect_endpoints(&mut self) {
        let names = self.ast.endpoints.names.clone();
        for name in names.iter().take(2) {
            self.builtin_declared(name);
            if let Some(previous) = self.endpoints.iter().find(|e| e.name == name.as_str()).map(|e| e.span) {
                self.duplicate("endpoint", &name.name, name.span, previous);
            }
            self.endpoints.push(EpInfo {
                name: name.name.to_string(),
                span: name.span,
                body: None,
                globals: Vec::new(),
                global_names: HashMap::new(),
                functions: Vec::new(),
                function_names: HashMap::new(),
                on_create: None,
            });
        }
    }

    fn endpoint_named(&self, name: &str) -> Option<EndpointId> {
        self.endpoints.iter().position(|e| e.name == name)
    }

    fn unknown_endpoint(&mut self, name: &ast::Ident) {
        let known: Vec<String> = self.endpoints.iter().map(|e| format!("`{}`", e.name)).collect();
        self.error(
            E_UNKNOWN_ENDPOINT,
            format!("`{}` is not an endpoint of this protocol", name.name),
            name.span,
            "unknown endpoint",
        )
        .help
        .push(format!("the endpoints are {}", known.join(" and ")));
    }

    /// Notes a `Sequences` or `Peered` section; reports it if one came before.
    fn section(&mut self, first: &mut Option<Span>, span: Span, name: &str, help: &str) {
        if let Some(first) = *first {
            self.error(E_DUPLICATE_SECTION, format!("a second `{name}` section"), span, "second section")
                .with_secondary_mut(Label::new(first, "first section"))
                .help
                .push(help.to_owned());
        }
        first.get_or_insert(span);
    }

    fn collect_items(&mut self) {
        let mut sequences_section: Option<Span> = None;
        let mut peered_section: Option<Span> = None;
        for item in &self.ast.items {
            match item {
                ast::Item::Sequences(s) => {
                    self.section(
                        &mut sequences_section,
                        s.span,
                        "Sequences",
                        "list every sequence in one `Sequences { ... }` section",
                    );
                }
                ast::Item::Peered(p) => {
                    self.section(
                        &mut peered_section,
                        p.span,
                        "Peered",
                        "declare all peered data in one `Peered { ... }` section",
                    );
                    self.peered_asts.extend(p.vars.iter());
                }
                ast::Item::Struct(s) => {
                    if self.builtin_declared(&s.name) {
                        continue;
                    }
                    if let Some(&(_, previous)) = self.struct_names.get(s.name.as_str()) {
                        self.duplicate("struct", &s.name.name, s.name.span, previous);
                        continue;
                    }
                    self.struct_names.insert(s.name.name.to_string(), (self.structs.len(), s.name.span));
                    self.structs.push(StructDef {
                        name: s.name.name.to_string(),
                        fields: Vec::new(),
                        loc: loc(s.span),
                    });
                    self.struct_asts.push(s);
                }
                ast::Item::Endpoint(body) => {
                    let Some(id) = self.endpoint_named(body.name.as_str()) else {
                        self.unknown_endpoint(&body.name);
                        continue;
                    };
                    if self.symmetric && id == 1 {
                        let first = self.endpoints[0].name.clone();
                        self.error(
                            E_MIRROR_BODY,
                            format!("`{}` mirrors `{first}` and has no body of its own", body.name.name),
                            body.name.span,
                            "body of the mirrored endpoint",
                        )
                        .help
                        .push(format!("under `Symmetric`, write only `{first} {{ ... }}`; the other endpoint gets a copy"));
                        continue;
                    }
                    if let Some(previous) = self.endpoints[id].body {
                        self.error(
                            E_DUPLICATE_BODY,
                            format!("`{}` has a second body", body.name.name),
                            body.name.span,
                            "second body",
                        )
                        .with_secondary_mut(Label::new(previous.name.span, "first body"))
                        .help
                        .push("put all of an endpoint's members in one body".into());
                        continue;
                    }
                    self.endpoints[id].body = Some(body);
                }
                ast::Item::Sequence(_) | ast::Item::Error(_) => {}
            }
        }
        if self.symmetric && self.endpoints.len() == 2 {
            self.endpoints[1].body = self.endpoints[0].body;
        }
        for id in 0..self.endpoints.len() {
            if self.endpoints[id].body.is_none() && !(self.symmetric && id == 1) {
                let name = self.endpoints[id].name.clone();
                let span = self.endpoints[id].span;
                self.error(E_MISSING_BODY, format!("endpoint `{name}` has no body"), span, "declared here")
                    .help
                    .push(format!("write its body, even if empty: `{name} {{ }}`"));
            }
        }
    }

    fn collect_struct_fields(&mut self) {
        for id in 0..self.struct_asts.len() {
            let decl = self.struct_asts[id];
            let mut seen: HashMap<&str, Span> = HashMap::new();
            let mut fields = Vec::new();
            for field in &decl.fields {
                if let Some(&previous) = seen.get(field.name.as_str()) {
                    self.duplicate("field", &field.name.name, field.name.span, previous);
                    continue;
                }
                seen.insert(field.name.as_str(), field.name.span);
                let ty = self.resolve_ty(&field.ty, false);
                fields.push(Field { name: field.name.name.to_string(), ty });
            }
            self.structs[id].fields = fields;
        }
        // A struct that holds itself (directly, not through a container) has no finite default.
        for id in 0..self.structs.len() {
            if self.contains_struct(id, id, &mut Vec::new()) {
                let decl = self.struct_asts[id];
                self.error(
                    E_RECURSIVE_STRUCT,
                    format!("struct `{}` contains itself", decl.name.name),
                    decl.name.span,
                    "recursive struct",
                )
                .help
                .push(
                    "hold the inner value in a List (`List(element: Struct S)`), which starts empty".into(),
                );
            }
        }
    }

    fn contains_struct(&self, outer: StructId, target: StructId, seen: &mut Vec<StructId>) -> bool {
        if seen.contains(&outer) {
            return false;
        }
        seen.push(outer);
        self.structs[outer].fields.iter().any(|f| match f.ty {
            Ty::Struct(inner) => inner == target || self.contains_struct(inner, target, seen),
            _ => false,
        })
    }

    fn collect_peered(&mut self) {
        for i in 0..self.peered_asts.len() {
            let pv = self.peered_asts[i];
            let name = &pv.decl.name;
            let ty = self.resolve_ty(&pv.decl.ty, false);
            if ty.host_bound(&self.structs) {
                let shown = self.ty_name(&ty);
                self.error(
                    E_HOST_TYPE_SHARED,
                    format!("peered data cannot hold {shown}"),
                    pv.decl.ty.span,
                    "only meaningful on one host",
                )
                .help
                .push("External cells, Function values and Endpoint references belong to one host; keep them in an endpoint's own data".into());
            }
            if self.symmetric
                && let Some(ast::Owner::Nothing(span)) = &pv.owner
            {
                self.error(
                    E_CONTROLS_IN_SYMMETRIC,
                    "`controls` in a symmetric protocol",
                    *span,
                    "the endpoints of a symmetric protocol are alike",
                )
                .help
                .push("remove `Nothing controls`: in a symmetric protocol either side may write".into());
            }
            let owner = match &pv.owner {
                Some(ast::Owner::Endpoint(e)) => {
                    if self.symmetric {
                        self.error(
                            E_CONTROLS_IN_SYMMETRIC,
                            "`controls` in a symmetric protocol",
                            e.span,
                            "the endpoints of a symmetric protocol are alike",
                        )
                        .help
                        .push("remove the owner: in a symmetric protocol either side may write".into());
                        None
                    } else {
                        let id = self.endpoint_named(e.as_str());
                        if id.is_none() {
                            self.unknown_endpoint(e);
                        }
                        id
                    }
                }
                Some(ast::Owner::Nothing(_)) | None => None,
            };
            if self.builtin_declared(name) {
                continue;
            }
            if let Some(&(_, previous)) = self.peered_names.get(name.as_str()) {
                self.duplicate("peered variable", &name.name, name.span, previous);
                continue;
            }
            self.peered_names.insert(name.name.to_string(), (self.peered.len(), name.span));
            self.peered.push(PeeredVar {
                var: Var { name: name.name.to_string(), ty, init: None, loc: loc(pv.span) },
                owner,
            });
        }
    }

    /// The span of a declaration of `name` visible to code on `endpoint` outside any local
    /// scope: peered data, the endpoint's globals and functions, sequences.
    fn visible_outside(&self, name: &str, endpoint: Option<EndpointId>) -> Option<Span> {
        if let Some(&(_, s)) = self.peered_names.get(name) {
            return Some(s);
        }
        if let Some(&(_, s)) = self.sequence_names.get(name) {
            return Some(s);
        }
        let eps: Vec<EndpointId> = match endpoint {
            Some(e) => vec![e],
            None => (0..self.endpoints.len()).collect(),
        };
        for e in eps {
            let ep = &self.endpoints[e];
            if let Some(&(_, s)) = ep.global_names.get(name) {
                return Some(s);
            }
            if let Some(&(_, s)) = ep.function_names.get(name) {
                return Some(s);
            }
        }
        None
    }

    fn resolve_params(&mut self, params: &[ast::Param]) -> Params {
        let mut out: Params = Vec::new();
        for p in params {
            if self.builtin_declared(&p.name) {
                continue;
            }
            if let Some((_, _, previous)) = out.iter().find(|(n, _, _)| n == p.name.as_str()) {
                let previous = *previous;
                self.duplicate("parameter", &p.name.name, p.name.span, previous);
                continue;
            }
            let ty = self.resolve_ty(&p.ty, false);
            out.push((p.name.name.to_string(), ty, p.name.span));
        }
        out
    }

    fn collect_members(&mut self) {
        let count = if self.symmetric { 1 } else { self.endpoints.len() };
        for id in 0..count {
            let Some(body) = self.endpoints[id].body else { continue };
            for member in &body.members {
                match member {
                    ast::Member::Global(decl) => {
                        if self.builtin_declared(&decl.name) {
                            continue;
                        }
                        if let Some(previous) = self.visible_outside(decl.name.as_str(), Some(id)) {
                            self.duplicate("global", &decl.name.name, decl.name.span, previous);
                            continue;
                        }
                        let ty = self.resolve_ty(&decl.ty, false);
                        let ep = &mut self.endpoints[id];
                        ep.global_names
                            .insert(decl.name.name.to_string(), (ep.globals.len(), decl.name.span));
                        ep.globals.push(Var {
                            name: decl.name.name.to_string(),
                            ty,
                            init: None,
                            loc: loc(decl.span),
                        });
                    }
                    ast::Member::Function(f) => {
                        if self.builtin_declared(&f.name) {
                            continue;
                        }
                        if let Some(previous) = self.visible_outside(f.name.as_str(), Some(id)) {
                            self.duplicate("function", &f.name.name, f.name.span, previous);
                            continue;
                        }
                        let params = self.resolve_params(&f.params);
                        // `returns Nothing` is the same as no `returns` clause.
                        let returns = match f.returns.as_slice() {
                            [only] if only.kind == TypeKind::Nothing => Vec::new(),
                            written => written.iter().map(|t| self.resolve_ty(t, false)).collect(),
                        };
                        let ep = &mut self.endpoints[id];
                        ep.function_names.insert(f.name.name.to_string(), (ep.functions.len(), f.name.span));
                        ep.functions.push(FnInfo {
                            public: f.visibility == ast::Visibility::Public,
                            params,
                            returns,
                            span: f.span,
                        });
                    }
                    ast::Member::OnCreate(oc) => {
                        if let Some((previous, _)) = &self.endpoints[id].on_create {
                            let previous = previous.keyword;
                            self.duplicate("`onCreate`", "onCreate", oc.keyword, previous);
                            continue;
                        }
                        let params = self.resolve_params(&oc.params);
                        self.endpoints[id].on_create = Some((oc, params));
                    }
                    ast::Member::Error(_) => {}
                }
            }
        }
    }

    fn collect_sequences(&mut self) {
        // Definitions.
        for item in &self.ast.items {
            let ast::Item::Sequence(def) = item else { continue };
            if self.builtin_declared(&def.name) {
                continue;
            }
            if let Some(previous) = self.visible_outside(def.name.as_str(), None) {
                self.duplicate("sequence", &def.name.name, def.name.span, previous);
                continue;
            }
            if self.endpoints.len() < 2 {
                self.error(
                    E_SEQUENCE_NEEDS_TWO,
                    "a sequence needs two endpoints",
                    def.name.span,
                    "this protocol has one endpoint",
                )
                .help
                .push("declare a second endpoint (`Endpoint A; Endpoint B;`), or use functions".into());
            }
            let info = self.collect_sequence(def);
            self.sequence_names.insert(def.name.name.to_string(), (self.sequences.len(), def.name.span));
            self.sequences.push(info);
        }
        // The `Sequences` section must agree with the definitions, and list each once.
        let mut entries: HashMap<&str, Span> = HashMap::new();
        for item in &self.ast.items {
            let ast::Item::Sequences(section) = item else { continue };
            for entry in &section.entries {
                if let Some(&previous) = entries.get(entry.name.as_str()) {
                    self.error(
                        E_DUPLICATE,
                        format!("sequence `{}` is listed twice in `Sequences`", entry.name.name),
                        entry.name.span,
                        "listed again here",
                    )
                    .with_secondary_mut(Label::new(previous, "first listed here"))
                    .help
                    .push("list each sequence once: remove this entry".into());
                    continue;
                }
                entries.insert(entry.name.as_str(), entry.name.span);
                let listed: Vec<(Option<EndpointId>, &str)> = entry
                    .blocks
                    .iter()
                    .map(|b| (self.endpoint_named(b.endpoint.as_str()), b.block.as_str()))
                    .collect();
                for b in &entry.blocks {
                    if self.endpoint_named(b.endpoint.as_str()).is_none() {
                        self.unknown_endpoint(&b.endpoint);
                    }
                }
                self.check_alternation(
                    entry.blocks.iter().map(|b| (self.endpoint_named(b.endpoint.as_str()), b.span)).collect(),
                );
                let Some(&(id, _)) = self.sequence_names.get(entry.name.as_str()) else {
                    self.error(
                        E_UNDEFINED_SEQUENCE,
                        format!("sequence `{}` is listed but not defined", entry.name.name),
                        entry.name.span,
                        "no definition",
                    )
                    .help
                    .push(format!(
                        "define it: `Sequence {}() {{ ... }}` with the listed blocks, or remove the entry",
                        entry.name.name
                    ));
                    continue;
                };
                let defined: Vec<(Option<EndpointId>, &str)> =
                    self.sequences[id].blocks.iter().map(|(e, n, _)| (Some(*e), n.as_str())).collect();
                if listed.iter().any(|(e, _)| e.is_none()) {
                    continue;
                }
                if listed != defined {
                    let shown = |v: &[(Option<EndpointId>, &str)]| {
                        v.iter()
                            .map(|(e, n)| {
                                format!("{}.{n}", e.map_or("?", |e| self.endpoints[e].name.as_str()))
                            })
                            .collect::<Vec<_>>()
                            .join(" -> ")
                    };
                    let (l, d) = (shown(&listed), shown(&defined));
                    let def_span = self.sequences[id].def.name.span;
                    self.error(
                        E_ORDER_MISMATCH,
                        format!("sequence `{}` is listed as `{l}` but defined as `{d}`", entry.name.name),
                        entry.span,
                        "listed here",
                    )
                    .with_secondary_mut(Label::new(def_span, "defined here"))
                    .help
                    .push("make the `Sequences` entry and the definition list the same blocks in the same order".into());
                }
            }
        }
    }

    fn check_alternation(&mut self, blocks: Vec<(Option<EndpointId>, Span)>) {
        for pair in blocks.windows(2) {
            if let [(Some(a), _), (Some(b), span)] = pair
                && a == b
            {
                let name = self.endpoints[*a].name.clone();
                self.error(
                    E_BLOCKS_DONT_ALTERNATE,
                    format!("two blocks in a row run on `{name}`"),
                    *span,
                    "same endpoint as the block before",
                )
                .help
                .push("each block runs on the other endpoint from the one before; merge the two blocks or put one on the other side".into());
            }
        }
    }

    fn collect_sequence(&mut self, def: &'a ast::SequenceDef) -> SeqInfo<'a> {
        let mut data: Vec<Var> = Vec::new();
        let mut data_names: HashMap<String, (usize, Span)> = HashMap::new();
        let mut add = |this: &mut Self, name: &ast::Ident, ty: &ast::Type, data: &mut Vec<Var>| {
            if this.builtin_declared(name) {
                return;
            }
            if let Some(&(_, previous)) = data_names.get(name.as_str()) {
                this.duplicate("sequence data", &name.name, name.span, previous);
                return;
            }
            if let Some(previous) = this.visible_outside(name.as_str(), None) {
                this.duplicate("sequence data", &name.name, name.span, previous);
                return;
            }
            let resolved = this.resolve_ty(ty, false);
            if resolved.host_bound(&this.structs) {
                let shown = this.ty_name(&resolved);
                this.error(E_HOST_TYPE_SHARED, format!("sequence-local data cannot hold {shown}"), ty.span, "only meaningful on one host")
                    .help
                    .push("sequence data travels between the endpoints; External cells, Function values and Endpoint references cannot".into());
            }
            data_names.insert(name.name.to_string(), (data.len(), name.span));
            data.push(Var { name: name.name.to_string(), ty: resolved, init: None, loc: loc(name.span) });
        };
        for p in &def.params {
            add(self, &p.name, &p.ty, &mut data);
        }
        let params = data.len();
        for r in def.returns.iter().flatten() {
            add(self, &r.name, &r.ty, &mut data);
        }
        let returns = data.len() - params;
        for l in &def.locals {
            add(self, &l.name, &l.ty, &mut data);
        }
        let mut blocks: Vec<(EndpointId, String, Span)> = Vec::new();
        let mut alternation = Vec::new();
        for b in &def.blocks {
            let endpoint = self.endpoint_named(b.endpoint.as_str());
            if endpoint.is_none() {
                self.unknown_endpoint(&b.endpoint);
            }
            alternation.push((endpoint, b.endpoint.span.to(b.name.span)));
            if let Some((_, _, previous)) = blocks.iter().find(|(_, n, _)| n == b.name.as_str()) {
                let previous = *previous;
                self.duplicate("block", &b.name.name, b.name.span, previous);
            }
            blocks.push((endpoint.unwrap_or(0), b.name.name.to_string(), b.name.span));
        }
        self.check_alternation(alternation);
        SeqInfo { def, data, params, returns, data_names, blocks }
    }

    // ------------------------------------------------------------------ second pass

    fn check_bodies(&mut self) -> Protocol {
        // Peered initializers see earlier peered data and builtins only.
        for i in 0..self.peered.len() {
            let Some(init) = self
                .peered_asts
                .iter()
                .find(|p| p.decl.name.as_str() == self.peered[i].var.name)
                .and_then(|p| p.decl.init.as_ref())
            else {
                continue;
            };
            let mut cx = Cx::new(0);
            cx.peered_visible = i;
            cx.globals_visible = 0;
            cx.code_visible = false;
            let ty = self.peered[i].var.ty.clone();
            let value = self.expr_expect(&mut cx, init, &ty);
            self.peered[i].var.init = Some(value);
        }

        let count = if self.symmetric { 1 } else { self.endpoints.len() };
        let mut endpoints = Vec::new();
        for id in 0..count {
            endpoints.push(self.check_endpoint(id));
        }
        if self.symmetric && self.endpoints.len() == 2 {
            let mut mirror = endpoints[0].clone();
            mirror.name = self.endpoints[1].name.clone();
            endpoints.push(mirror);
        }

        let mut sequences = Vec::new();
        for s in 0..self.sequences.len() {
            sequences.push(self.check_sequence(s));
        }

        Protocol {
            name: self.ast.protocol.name.to_string(),
            endpoints,
            symmetric: self.symmetric,
            structs: self.structs.clone(),
            peered: self.peered.clone(),
            sequences,
        }
    }

    fn check_endpoint(&mut self, id: EndpointId) -> Endpoint {
        let name = self.endpoints[id].name.clone();
        let Some(body) = self.endpoints[id].body else {
            return Endpoint { name, globals: Vec::new(), on_create: None, functions: Vec::new() };
        };
        // Globals, each seeing the ones before it.
        let mut globals = self.endpoints[id].globals.clone();
        for member in &body.members {
            let ast::Member::Global(decl) = member else { continue };
            let Some(&(gi, span)) = self.endpoints[id].global_names.get(decl.name.as_str()) else { continue };
            if span != decl.name.span {
                continue; // a duplicate, already reported
            }
            if let Some(init) = &decl.init {
                let mut cx = Cx::new(id);
                cx.globals_visible = gi;
                let ty = globals[gi].ty.clone();
                globals[gi].init = Some(self.expr_expect(&mut cx, init, &ty));
            }
        }
        // Functions.
        let mut functions = Vec::new();
        let mut on_create = None;
        for member in &body.members {
            match member {
                ast::Member::Function(f) => {
                    let Some(&(fi, span)) = self.endpoints[id].function_names.get(f.name.as_str()) else {
                        continue;
                    };
                    if span != f.name.span {
                        continue;
                    }
                    let info = &self.endpoints[id].functions[fi];
                    let params = info.params.clone();
                    let returns = info.returns.clone();
                    let public = info.public;
                    let function =
                        self.check_function(id, &f.name.name, public, &params, returns, &f.body, f.span);
                    functions.push(function);
                }
                ast::Member::OnCreate(oc) => {
                    if let Some((first, params)) = &self.endpoints[id].on_create
                        && std::ptr::eq(*first, &**oc)
                    {
                        let params = params.clone();
                        on_create = Some(self.check_function(
                            id,
                            "onCreate",
                            false,
                            &params,
                            Vec::new(),
                            &oc.body,
                            oc.span,
                        ));
                    }
                }
                _ => {}
            }
        }
        Endpoint { name, globals, on_create, functions }
    }

    #[allow(clippy::too_many_arguments)]
    fn check_function(
        &mut self,
        endpoint: EndpointId,
        name: &str,
        public: bool,
        params: &[(String, Ty, Span)],
        returns: Vec<Ty>,
        body: &ast::Block,
        span: Span,
    ) -> Function {
        let mut cx = Cx::new(endpoint);
        for (pname, ty, pspan) in params {
            if let Some(previous) = self.visible_outside(pname, Some(endpoint)) {
                self.duplicate("parameter", pname, *pspan, previous);
            }
            let id = cx.add_local(pname, ty.clone(), *pspan);
            cx.used[id] = true; // parameters are part of the signature; unused ones are fine
        }
        cx.returns = Some(returns.clone());
        let stmts = self.block(&mut cx, &body.stmts);
        if !returns.is_empty() && !always_returns(&body.stmts) {
            let end = Span::new(body.span.hi().saturating_sub(1), body.span.hi());
            let shown = returns.iter().map(|t| self.ty_name(t)).collect::<Vec<_>>().join(", ");
            self.error(
                E_MISSING_RETURN,
                format!("function `{name}` can end without returning {shown}"),
                end,
                "this end of the function can be reached",
            )
            .help
            .push("return a value on every path, e.g. add a `return` before the closing `}`".into());
        }
        self.unused_locals(&cx, params.len());
        Function {
            name: name.to_owned(),
            public,
            params: params.len(),
            returns,
            locals: cx.locals,
            body: stmts,
            loc: loc(span),
        }
    }

    fn unused_locals(&mut self, cx: &Cx, skip: usize) {
        for (i, var) in cx.locals.iter().enumerate().skip(skip) {
            if !cx.used[i] && !var.name.starts_with('_') {
                self.warning(
                    W_UNUSED_VARIABLE,
                    format!("`{}` is never read", var.name),
                    var.loc.0,
                    "declared here",
                )
                .help
                .push(format!("remove it, or name it `_{}` to keep it", var.name));
            }
        }
    }

    fn check_sequence(&mut self, s: SequenceId) -> Sequence {
        let def = self.sequences[s].def;
        let mut data = self.sequences[s].data.clone();
        // Initializers of sequence-local declarations run on the starter before the first block.
        for decl in &def.locals {
            let Some(&(i, span)) = self.sequences[s].data_names.get(decl.name.as_str()) else { continue };
            if span != decl.name.span {
                continue;
            }
            if let Some(init) = &decl.init {
                let starter = self.sequences[s].blocks.first().map_or(0, |b| b.0);
                let mut cx = Cx::new(starter);
                cx.sequence = Some(s);
                cx.globals_visible = 0;
                let ty = data[i].ty.clone();
                data[i].init = Some(self.expr_expect(&mut cx, init, &ty));
            }
        }
        let mut blocks = Vec::new();
        for (b, block) in def.blocks.iter().enumerate() {
            let endpoint = self.sequences[s].blocks[b].0;
            let mut cx = Cx::new(endpoint);
            cx.sequence = Some(s);
            let body = self.block(&mut cx, &block.body.stmts);
            self.unused_locals(&cx, 0);
            blocks.push(SeqBlock {
                endpoint,
                name: block.name.name.to_string(),
                locals: cx.locals,
                body,
                loc: loc(block.span),
            });
        }
        let info = &self.sequences[s];
        Sequence {
            name: def.name.name.to_string(),
            data,
            params: info.params,
            returns: info.returns,
            blocks,
            loc: loc(def.span),
        }
    }

    // ------------------------------------------------------------------ names

    fn lookup(&self, cx: &Cx, name: &str) -> Option<Binding> {
        if let Some(&id) = cx.scope.get(name) {
            return Some(Binding::Var(VarRef::Local(id)));
        }
        if let Some(s) = cx.sequence
            && let Some(&(i, _)) = self.sequences[s].data_names.get(name)
        {
            return Some(Binding::Var(VarRef::SeqData(i)));
        }
        let ep = (cx.endpoint < self.endpoints.len()).then(|| self.ep(cx.endpoint));
        if let Some(ep) = ep
            && let Some(&(i, _)) = ep.global_names.get(name)
            && i < cx.globals_visible
        {
            return Some(Binding::Var(VarRef::Global(i)));
        }
        if let Some(&(i, _)) = self.peered_names.get(name)
            && i < cx.peered_visible
        {
            return Some(Binding::Var(VarRef::Peered(i)));
        }
        if cx.code_visible {
            if let Some(ep) = ep {
                if let Some(&(i, _)) = ep.function_names.get(name) {
                    return Some(Binding::Function(i));
                }
                if name == "onCreate" && ep.on_create.is_some() {
                    return Some(Binding::OnCreate);
                }
            }
            if let Some(&(i, _)) = self.sequence_names.get(name) {
                return Some(Binding::Sequence(i));
            }
        }
        match name {
            "len" => Some(Binding::Builtin(Builtin::Len)),
            "range" => Some(Binding::Builtin(Builtin::Range)),
            "toText" => Some(Binding::Builtin(Builtin::ToText)),
            "print" => Some(Binding::Builtin(Builtin::Print)),
            "signal" => Some(Binding::Builtin(Builtin::Signal)),
            "id" => Some(Binding::Builtin(Builtin::Id)),
            "ApplicationException" | "NetworkException" | "Exception" => Some(Binding::Exception),
            _ => None,
        }
    }

    /// The member set of endpoint `id` (under `Symmetric`, the written one).
    fn ep(&self, id: EndpointId) -> &EpInfo<'a> {
        if self.symmetric { &self.endpoints[0] } else { &self.endpoints[id] }
    }

    fn var_ty(&self, cx: &Cx, var: VarRef) -> Ty {
        match var {
            VarRef::Local(i) => cx.locals[i].ty.clone(),
            VarRef::SeqData(i) => cx.sequence.map_or(Ty::Error, |s| self.sequences[s].data[i].ty.clone()),
            VarRef::Global(i) => self.ep(cx.endpoint).globals.get(i).map_or(Ty::Error, |g| g.ty.clone()),
            VarRef::Peered(i) => self.peered[i].var.ty.clone(),
        }
    }

    fn unknown_name(&mut self, cx: &Cx, name: &ast::Ident) {
        let wanted = name.as_str();
        // A member of the other endpoint is not visible here: say where it is.
        let elsewhere = (0..self.endpoints.len()).filter(|&e| e != cx.endpoint).find_map(|e| {
            let ep = self.ep(e);
            let what = if ep.function_names.contains_key(wanted) {
                "a function"
            } else if ep.global_names.contains_key(wanted) {
                "data"
            } else {
                return None;
            };
            Some((what, self.endpoints[e].name.clone()))
        });
        let help = match elsewhere {
            Some((what, owner)) => format!(
                "`{wanted}` is {what} of `{owner}`, and this code runs on `{}`: reach the other side with a sequence, or declare the data as Peered",
                self.endpoints.get(cx.endpoint).map_or("", |e| e.name.as_str())
            ),
            None if cx.endpoint < self.endpoints.len() && self.ep(cx.endpoint).global_names.contains_key(wanted) => {
                format!(
                    "`{wanted}` is declared further down: an initializer can use only the data declared before it"
                )
            }
            None => match self.similar_name(cx, wanted) {
                Some(similar) => format!("a name with a similar spelling is visible here: `{similar}`"),
                None => "declare it before this use (locals are visible from their declaration to the end of the function)".to_owned(),
            },
        };
        self.error(E_UNKNOWN_NAME, format!("cannot find `{}`", name.name), name.span, "not declared here")
            .help
            .push(help);
    }

    /// A visible name within a small edit distance of `wanted`.
    fn similar_name(&self, cx: &Cx, wanted: &str) -> Option<String> {
        let mut names: Vec<&str> = cx.scope.keys().map(String::as_str).collect();
        if let Some(s) = cx.sequence {
            names.extend(self.sequences[s].data_names.keys().map(String::as_str));
        }
        if cx.endpoint < self.endpoints.len() {
            let ep = self.ep(cx.endpoint);
            names.extend(ep.global_names.keys().map(String::as_str));
            names.extend(ep.function_names.keys().map(String::as_str));
        }
        names.extend(self.peered_names.keys().map(String::as_str));
        names.extend(self.sequence_names.keys().map(String::as_str));
        names.extend(BUILTINS.iter().copied());
        let limit = (wanted.chars().count() / 3).max(1);
        names
            .into_iter()
            .map(|n| (edit_distance(wanted, n), n))
            .filter(|&(d, _)| d <= limit)
            .min()
            .map(|(_, n)| n.to_owned())
    }

    /// Declares a local, reporting a clash with any visible name.
    fn declare_local(&mut self, cx: &mut Cx, name: &ast::Ident, ty: Ty, in_for: bool) -> LocalId {
        if self.builtin_declared(name) {
            // Later uses of the name mean this variable: no follow-on errors.
            return cx.add_local(&name.name, ty, name.span);
        }
        let previous = if let Some(&id) = cx.scope.get(name.as_str()) {
            cx.used[id] = true; // the clash is the error; "unused" would only repeat it
            Some(cx.locals[id].loc.0)
        } else if let Some(s) = cx.sequence
            && let Some(&(_, span)) = self.sequences[s].data_names.get(name.as_str())
        {
            Some(span)
        } else {
            self.visible_outside(name.as_str(), Some(cx.endpoint))
        };
        if let Some(previous) = previous {
            self.duplicate("variable", &name.name, name.span, previous);
            if in_for && let Some(d) = self.diags.last_mut() {
                d.help = vec![format!(
                    "to loop with the existing variable, write `for ({} in ...)` without a type",
                    name.name
                )];
            }
        }
        cx.add_local(&name.name, ty, name.span)
    }

    // ------------------------------------------------------------------ statements

    fn block(&mut self, cx: &mut Cx, stmts: &[ast::Stmt]) -> Vec<TStmt> {
        let mut out = Vec::with_capacity(stmts.len());
        let mut left_at: Option<Span> = None;
        let mut warned = false;
        for stmt in stmts {
            if let Some(end) = left_at
                && !warned
            {
                warned = true;
                self.warning(W_UNREACHABLE, "unreachable code", stmt.span, "this never runs")
                    .with_secondary_mut(Label::new(end, "because control leaves here"))
                    .help
                    .push("remove it, or move it before the statement that leaves".into());
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
                        let shown = self.ty_name(other);
                        self.error(
                            E_NOT_ITERABLE,
                            format!("cannot loop over {shown}"),
                            iter.span,
                            "not a List, Map or Text",
                        )
                        .help
                        .push(
                            "`for` iterates List elements, Map keys, Text characters, or `range(a, b)`"
                                .into(),
                        );
                        Ty::Error
                    }
                };
                let iter_t = self.deref(iter_t);
                let var_ref = match (ty, declared) {
                    (Some(t), Some(declared)) => {
                        if !elem.fits(&declared) {
                            let (e, d) = (self.ty_name(&elem), self.ty_name(&declared));
                            self.error(
                                E_MISMATCHED_TYPES,
                                format!("mismatched types: the loop yields {e}, the variable is {d}"),
                                t.span,
                                format!("expected {e}"),
                            )
                            .help
                            .push(format!("declare the loop variable as {e}"));
                        }
                        let id = self.declare_local(cx, var, declared, true);
                        cx.used[id] = true;
                        VarRef::Local(id)
                    }
                    _ => match self.lookup(cx, var.as_str()) {
                        Some(Binding::Var(v)) => {
                            let vt = self.var_ty(cx, v);
                            if !elem.fits(&vt) {
                                let (e, d) = (self.ty_name(&elem), self.ty_name(&vt));
                                self.error(
                                    E_MISMATCHED_TYPES,
                                    format!("mismatched types: the loop yields {e}, `{}` is {d}", var.name),
                                    var.span,
                                    format!("expected {e}"),
                                )
                                .help
                                .push(format!(
                                    "loop with a new variable of that type instead: `for ({e} item in ...)`"
                                ));
                            }
                            self.check_write(cx, v, var.span);
                            v
                        }
                        _ => {
                            let shown = self.ty_name(&elem);
                            self.error(
                                E_UNKNOWN_NAME,
                                format!("cannot find `{}`", var.name),
                                var.span,
                                "not declared",
                            )
                            .help
                            .push(format!("declare it in the loop: `for ({shown} {} in ...)`", var.name));
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
                    self.error(
                        E_BREAK_OUTSIDE_LOOP,
                        format!("`{word}` outside a loop"),
                        stmt.span,
                        "not inside `while` or `for`",
                    )
                    .help
                    .push("use `return` to leave a function early".into());
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
                        self.warning(
                            W_UNREACHABLE_CATCH,
                            format!("this `catch ({} ...)` never runs", c.kind_name.name),
                            c.kind_name.span,
                            "never reached",
                        )
                        .with_secondary_mut(Label::new(
                            earlier.kind_name.span,
                            "this earlier clause catches it first",
                        ))
                        .help
                        .push("remove it, or move it before the clause that catches more".into());
                    }
                    // The caught message is visible only inside its clause; like any
                    // variable, it may not redeclare a name that is visible there.
                    let shadowed = cx.scope.get(c.var.as_str()).copied();
                    let id = self.declare_local(cx, &c.var, Ty::Text, false);
                    cx.used[id] = true;
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
                    let shown = self.ty_name(&src.ty);
                    self.error(
                        E_NOT_EXTERNAL,
                        format!("`extAssign` needs an External to share, found {shown}"),
                        source.span,
                        "not an External",
                    )
                    .help
                    .push("to store a value in the cell, write `extCopy value to x;`".into());
                } else if !src.ty.fits(&tgt.ty) {
                    let (s, t) = (self.ty_name(&src.ty), self.ty_name(&tgt.ty));
                    self.error(
                        E_MISMATCHED_TYPES,
                        format!("mismatched types: {s} shared into {t}"),
                        source.span,
                        format!("expected {t}"),
                    );
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

    /// Reports an `extAssign`/`extCopy` target that is not an External place (calls report
    /// this themselves in `place`).
    fn external_target(&mut self, target: &TExpr, statement: &str, span: Span) {
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

    fn condition(&mut self, cx: &mut Cx, e: &ast::Expr) -> TExpr {
        let te = self.expr(cx, e, Some(&Ty::Bool));
        let te = self.deref(te);
        if !te.ty.fits(&Ty::Bool) {
            let shown = self.ty_name(&te.ty);
            self.error(
                E_CONDITION_NOT_BOOL,
                format!("a condition must be TrueFalse, found {shown}"),
                e.span,
                "not TrueFalse",
            )
            .help
            .push("compare explicitly, e.g. `x != 0` or `len(l) > 0`".into());
        }
        te
    }

    fn ret(&mut self, cx: &mut Cx, values: &[ast::Expr], span: Span) -> TStmtKind {
        let Some(expected) = cx.returns.clone() else {
            if !values.is_empty() {
                let where_ = if cx.sequence.is_some() { "a sequence block" } else { "`onCreate`" };
                self.error(E_RETURN_VALUE_NOT_ALLOWED, format!("`return` with a value in {where_}"), span, "nothing receives this value")
                    .help
                    .push(if cx.sequence.is_some() {
                        "assign the sequence's named results instead; they reach the starter when the sequence ends".to_owned()
                    } else {
                        "`onCreate` returns nothing; write `return;`".to_owned()
                    });
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
            let what = if expected.is_empty() {
                "this function returns nothing".to_owned()
            } else {
                format!(
                    "this function returns {} value{}",
                    expected.len(),
                    if expected.len() == 1 { "" } else { "s" }
                )
            };
            self.error(
                E_VALUE_COUNT,
                format!("`return` gives {count} value{}, {what}", if count == 1 { "" } else { "s" }),
                span,
                format!("expected {}", expected.len()),
            )
            .help
            .push("return exactly the values in the function's `returns` list".into());
            return TStmtKind::Return(checked);
        }
        let mut out = Vec::new();
        let mut slot = 0;
        for te in checked {
            if let Ty::Tuple(ts) = &te.ty {
                for (i, t) in ts.iter().enumerate() {
                    if !t.value().fits(&expected[slot + i]) {
                        let (f, e) = (self.ty_name(t), self.ty_name(&expected[slot + i]));
                        self.error(
                            E_MISMATCHED_TYPES,
                            format!("mismatched types: returns {f} where {e} is expected"),
                            te.loc.0,
                            format!("value {} should be {e}", slot + i + 1),
                        );
                    }
                }
                slot += ts.len();
                out.push(te);
            } else {
                let e = expected[slot].clone();
                out.push(self.coerce(te, &e, "returned"));
                slot += 1;
            }
        }
        TStmtKind::Return(out)
    }

    fn assign(&mut self, cx: &mut Cx, targets: &[ast::Expr], op: AssignOp, value: &ast::Expr) -> TStmtKind {
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

    /// Checks that code on `cx.endpoint` may write `var`.
    fn check_write(&mut self, cx: &Cx, var: VarRef, span: Span) {
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

    /// Checks an assignment target; `external` admits calls yielding External places.
    fn place(&mut self, cx: &mut Cx, e: &ast::Expr, external: bool) -> TExpr {
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

    // ------------------------------------------------------------------ expressions

    /// Reads an External as its value.
    fn deref(&mut self, te: TExpr) -> TExpr {
        match &te.ty {
            Ty::External(inner) => {
                let ty = (**inner).clone();
                let span = te.loc.0;
                texpr(TExprKind::Deref(Box::new(te)), ty, span)
            }
            _ => te,
        }
    }

    /// Adapts `te` to `expected` (reading Externals as values) or reports a mismatch.
    fn coerce(&mut self, te: TExpr, expected: &Ty, what: &str) -> TExpr {
        let te = if matches!(expected, Ty::External(_)) { te } else { self.deref(te) };
        let te = match expected {
            Ty::External(_) | Ty::Error | Ty::Any => te,
            _ => expect_results(te, std::slice::from_ref(expected)),
        };
        if matches!(te.ty, Ty::Nothing) {
            self.error(E_NO_VALUE, "this call returns nothing", te.loc.0, "no value")
                .help
                .push("use the call as a statement on its own".into());
            return te;
        }
        if let Ty::Tuple(ts) = &te.ty {
            let n = ts.len();
            self.error(
                E_VALUE_COUNT,
                format!("this call returns {n} values where one is {what}"),
                te.loc.0,
                format!("{n} values"),
            )
            .help
            .push("destructure it first: `a, b = f();`".into());
            return te;
        }
        if !te.ty.fits(expected) {
            let (f, e) = (self.ty_name(&te.ty), self.ty_name(expected));
            let mut hint = format!("a value of type {e} is {what} here");
            if matches!(expected, Ty::External(_)) {
                hint = "an External is needed here: pass an External variable, not a value".to_owned();
            } else if *expected == Ty::Text && matches!(te.ty, Ty::Number | Ty::Bool) {
                hint = "convert it with `toText(...)`".to_owned();
            }
            self.error(
                E_MISMATCHED_TYPES,
                format!("mismatched types: expected {e}, found {f}"),
                te.loc.0,
                format!("expected {e}"),
            )
            .help
            .push(hint);
        }
        te
    }

    fn expr_expect(&mut self, cx: &mut Cx, e: &ast::Expr, expected: &Ty) -> TExpr {
        let te = self.expr(cx, e, Some(expected));
        self.coerce(te, expected, "expected")
    }

    /// Types an expression; `hint` is the type the context expects (it types `[]` and `{}`).
    fn expr(&mut self, cx: &mut Cx, e: &ast::Expr, hint: Option<&Ty>) -> TExpr {
        let span = e.span;
        match &e.kind {
            ExprKind::Number(n) => texpr(TExprKind::Number(Num(*n)), Ty::Number, span),
            ExprKind::Text(t) => texpr(TExprKind::Text(t.clone()), Ty::Text, span),
            ExprKind::Bool(b) => texpr(TExprKind::Bool(*b), Ty::Bool, span),
            ExprKind::SelfRef => texpr(TExprKind::SelfRef, Ty::Endpoint, span),
            ExprKind::Error => error_expr(span),
            ExprKind::Name(name) => match self.lookup(cx, name.as_str()) {
                Some(Binding::Var(v)) => {
                    if let VarRef::Local(i) = v {
                        cx.used[i] = true;
                    }
                    let ty = self.var_ty(cx, v);
                    texpr(TExprKind::Var(v), ty, span)
                }
                Some(Binding::Exception) => {
                    self.error(
                        E_NOT_A_VALUE,
                        format!("`{}` names exceptions, not a value", name.name),
                        span,
                        "not a value",
                    )
                    .help
                    .push("exception kinds appear only in `catch (Kind as e)`".into());
                    error_expr(span)
                }
                Some(_) => {
                    self.error(
                        E_NOT_A_VALUE,
                        format!("`{}` is a function, not a value", name.name),
                        span,
                        "not a value",
                    )
                    .help
                    .push(format!("call it: `{}(...)`; Function values come from the host", name.name));
                    error_expr(span)
                }
                None => {
                    self.unknown_name(cx, name);
                    error_expr(span)
                }
            },
            ExprKind::List(items) => {
                let elem_hint = match hint.map(Ty::value) {
                    Some(Ty::List(t)) => Some((**t).clone()),
                    _ => None,
                };
                if items.is_empty() {
                    return match elem_hint {
                        Some(t) => texpr(TExprKind::List(Vec::new()), Ty::List(Box::new(t)), span),
                        None => {
                            self.error(
                                E_CANNOT_INFER,
                                "the element type of `[]` cannot be known here",
                                span,
                                "empty list",
                            )
                            .help
                            .push(
                                "declare a variable with its type first: `List(element: Number) l = [];`"
                                    .into(),
                            );
                            error_expr(span)
                        }
                    };
                }
                let first = self.expr(cx, &items[0], elem_hint.as_ref());
                let first = self.deref(first);
                let elem = elem_hint.unwrap_or_else(|| first.ty.clone());
                let mut out = vec![self.coerce(first, &elem, "expected in this list")];
                for item in &items[1..] {
                    out.push(self.expr_expect(cx, item, &elem));
                }
                texpr(TExprKind::List(out), Ty::List(Box::new(elem)), span)
            }
            ExprKind::Map(entries) => {
                let (kh, vh) = match hint.map(Ty::value) {
                    Some(Ty::Map(k, v)) => (Some((**k).clone()), Some((**v).clone())),
                    _ => (None, None),
                };
                if entries.is_empty() {
                    return match (kh, vh) {
                        (Some(k), Some(v)) => {
                            texpr(TExprKind::Map(Vec::new()), Ty::Map(Box::new(k), Box::new(v)), span)
                        }
                        _ => {
                            self.error(E_CANNOT_INFER, "the key and value types of `{}` cannot be known here", span, "empty map")
                                .help
                                .push("declare a variable with its type first: `Map(from: Text, to: Number) m = {};`".into());
                            error_expr(span)
                        }
                    };
                }
                let k0 = self.expr(cx, &entries[0].0, kh.as_ref());
                let k0 = self.deref(k0);
                let v0 = self.expr(cx, &entries[0].1, vh.as_ref());
                let v0 = self.deref(v0);
                let kt = kh.unwrap_or_else(|| k0.ty.clone());
                let vt = vh.unwrap_or_else(|| v0.ty.clone());
                if !matches!(kt, Ty::Number | Ty::Text | Ty::Bool | Ty::Error | Ty::Any) {
                    let shown = self.ty_name(&kt);
                    self.error(
                        E_BAD_MAP_KEY,
                        format!("a Map cannot have keys of type {shown}"),
                        entries[0].0.span,
                        "not a key type",
                    );
                }
                let mut out = vec![(
                    self.coerce(k0, &kt, "expected as a key"),
                    self.coerce(v0, &vt, "expected as a value"),
                )];
                for (k, v) in &entries[1..] {
                    out.push((self.expr_expect(cx, k, &kt), self.expr_expect(cx, v, &vt)));
                }
                texpr(TExprKind::Map(out), Ty::Map(Box::new(kt), Box::new(vt)), span)
            }
            ExprKind::Unary { op, operand } => {
                let want = if *op == UnaryOp::Neg { Ty::Number } else { Ty::Bool };
                let inner = self.expr(cx, operand, Some(&want));
                let inner = self.deref(inner);
                if !inner.ty.fits(&want) {
                    let (f, w) = (self.ty_name(&inner.ty), self.ty_name(&want));
                    self.error(
                        E_BAD_OPERANDS,
                        format!("`{}` needs {w}, found {f}", op.as_str()),
                        operand.span,
                        format!("not {w}"),
                    )
                    .help
                    .push(if *op == UnaryOp::Neg {
                        "negate Numbers only".to_owned()
                    } else {
                        "`not` takes a TrueFalse; compare first".to_owned()
                    });
                }
                texpr(TExprKind::Unary(*op, Box::new(inner)), want, span)
            }
            ExprKind::Binary { op, op_span, lhs, rhs } => {
                let membership = matches!(op, BinOp::In | BinOp::NotIn);
                // An empty `[]` or `{}` takes its type from the other operand, on either side.
                let (l, r) = if is_empty_literal(lhs) && !is_empty_literal(rhs) && !membership {
                    let r = self.expr(cx, rhs, None);
                    let r = self.deref(r);
                    let l = self.expr(cx, lhs, Some(&r.ty));
                    (l, r)
                } else {
                    let l = self.expr(cx, lhs, None);
                    let l = self.deref(l);
                    let rhint = match (&rhs.kind, membership) {
                        (_, false) => Some(l.ty.clone()),
                        (ExprKind::List(_), true) => Some(Ty::List(Box::new(l.ty.clone()))),
                        (ExprKind::Map(_), true) => Some(Ty::Map(Box::new(l.ty.clone()), Box::new(Ty::Any))),
                        (_, true) => None,
                    };
                    let r = self.expr(cx, rhs, rhint.as_ref());
                    (l, r)
                };
                let r = self.deref(r);
                let ty = self.binary_type(*op, &l.ty, &r.ty, *op_span, span);
                texpr(TExprKind::Binary(*op, Box::new(l), Box::new(r)), ty, span)
            }
            ExprKind::Field { base, name } => {
                let b = self.expr(cx, base, None);
                let b = self.deref(b);
                match b.ty.clone() {
                    Ty::Struct(id) => {
                        match self.structs[id].fields.iter().position(|f| f.name == name.as_str()) {
                            Some(i) => {
                                let ty = self.structs[id].fields[i].ty.clone();
                                texpr(TExprKind::Field(Box::new(b), i), ty, span)
                            }
                            None => {
                                let fields: Vec<String> =
                                    self.structs[id].fields.iter().map(|f| format!("`{}`", f.name)).collect();
                                let sname = self.structs[id].name.clone();
                                self.error(
                                    E_UNKNOWN_FIELD,
                                    format!("struct `{sname}` has no field `{}`", name.name),
                                    name.span,
                                    "unknown field",
                                )
                                .help
                                .push(format!("its fields are {}", fields.join(", ")));
                                error_expr(span)
                            }
                        }
                    }
                    Ty::Error | Ty::Any => {
                        self.unknown_result(&b, base.span);
                        error_expr(span)
                    }
                    other => {
                        let shown = self.ty_name(&other);
                        self.error(E_UNKNOWN_FIELD, format!("{shown} has no field `{}`", name.name), name.span, "no such field")
                            .help
                            .push("fields belong to structs; methods are called with parentheses, e.g. `l.append(x)`".into());
                        error_expr(span)
                    }
                }
            }
            ExprKind::Index { base, index } => {
                let b = self.expr(cx, base, None);
                let (key, result) = match b.ty.value() {
                    Ty::List(t) => (Ty::Number, (**t).clone()),
                    Ty::Map(k, v) => ((**k).clone(), (**v).clone()),
                    Ty::Text => (Ty::Number, Ty::Text),
                    Ty::Error | Ty::Any => {
                        self.unknown_result(&b, base.span);
                        (Ty::Error, Ty::Error)
                    }
                    other => {
                        let shown = self.ty_name(other);
                        self.error(
                            E_NOT_INDEXABLE,
                            format!("{shown} cannot be indexed"),
                            base.span,
                            "not a List, Map or Text",
                        )
                        .help
                        .push("`x[i]` reads a List element, a Map value or a Text character".into());
                        (Ty::Error, Ty::Error)
                    }
                };
                let b = self.deref(b);
                let i = self.expr_expect(cx, index, &key);
                texpr(TExprKind::Index(Box::new(b), Box::new(i)), result, span)
            }
            ExprKind::Call { callee, args } => self.call(cx, callee, args, span),
        }
    }

    /// The result type of `l op r`, reporting operands the operator does not take.
    fn binary_type(&mut self, op: BinOp, l: &Ty, r: &Ty, op_span: Span, span: Span) -> Ty {
        let unknown = |t: &Ty| matches!(t, Ty::Error | Ty::Any);
        let bad = |this: &mut Self, help: &str| {
            let (ls, rs) = (this.ty_name(l), this.ty_name(r));
            let _ = span;
            this.error(
                E_BAD_OPERANDS,
                format!("`{}` cannot be applied to {ls} and {rs}", op.as_str()),
                op_span,
                format!("{ls} {} {rs}", op.as_str()),
            )
            .help
            .push(help.to_owned());
        };
        match op {
            BinOp::Add => {
                if unknown(l) || unknown(r) {
                    return if unknown(l) { r.clone() } else { l.clone() };
                }
                match (l, r) {
                    (Ty::Number, Ty::Number) => Ty::Number,
                    (Ty::Text, Ty::Text) => Ty::Text,
                    _ => {
                        let help = if matches!(
                            (l, r),
                            (Ty::Text, Ty::Number | Ty::Bool) | (Ty::Number | Ty::Bool, Ty::Text)
                        ) {
                            "convert the other side with `toText(...)`"
                        } else {
                            "`+` adds two Numbers or joins two Texts"
                        };
                        bad(self, help);
                        Ty::Error
                    }
                }
            }
            BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Rem => {
                if !(l.fits(&Ty::Number) && r.fits(&Ty::Number)) {
                    bad(self, "arithmetic takes Numbers");
                    return Ty::Error;
                }
                Ty::Number
            }
            BinOp::And | BinOp::Or => {
                if !(l.fits(&Ty::Bool) && r.fits(&Ty::Bool)) {
                    bad(self, "`and` and `or` take TrueFalse values; compare first");
                    return Ty::Error;
                }
                Ty::Bool
            }
            BinOp::Eq | BinOp::Ne => {
                if !l.fits(r) || matches!(l, Ty::Nothing | Ty::Tuple(_)) {
                    bad(self, "`==` and `!=` compare two values of the same type");
                }
                Ty::Bool
            }
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                let ok = unknown(l) && unknown(r)
                    || matches!((l, r), (Ty::Number, Ty::Number) | (Ty::Text, Ty::Text))
                    || unknown(l) && matches!(r, Ty::Number | Ty::Text)
                    || unknown(r) && matches!(l, Ty::Number | Ty::Text);
                if !ok {
                    bad(self, "ordering compares two Numbers or two Texts");
                }
                Ty::Bool
            }
            BinOp::In | BinOp::NotIn => {
                let ok = match r {
                    Ty::List(t) => l.fits(t),
                    Ty::Map(k, _) => l.fits(k),
                    Ty::Text => l.fits(&Ty::Text),
                    t => unknown(t),
                };
                if !ok {
                    bad(
                        self,
                        "`x in c` looks for an element of a List, a key of a Map, or a Text inside a Text",
                    );
                }
                Ty::Bool
            }
        }
    }

    /// Checks arguments against parameter types.
    fn args(&mut self, cx: &mut Cx, args: &[ast::Expr], params: &[Ty], what: &str, span: Span) -> Vec<TExpr> {
        if args.len() != params.len() {
            self.error(
                E_ARG_COUNT,
                format!(
                    "{what} takes {} argument{}, {} given",
                    params.len(),
                    if params.len() == 1 { "" } else { "s" },
                    args.len()
                ),
                span,
                format!("expected {}", params.len()),
            )
            .help
            .push("pass one argument per parameter, in order".into());
            return args.iter().map(|a| self.expr(cx, a, None)).collect();
        }
        args.iter().zip(params).map(|(a, p)| self.expr_expect(cx, a, p)).collect()
    }

    fn result_ty(returns: &[Ty]) -> Ty {
        match returns {
            [] => Ty::Nothing,
            [one] => one.clone(),
            many => Ty::Tuple(many.to_vec()),
        }
    }

    fn call(&mut self, cx: &mut Cx, callee: &ast::Expr, args: &[ast::Expr], span: Span) -> TExpr {
        match &callee.kind {
            ExprKind::Name(name) => match self.lookup(cx, name.as_str()) {
                Some(Binding::Function(f)) => {
                    let info = &self.ep(cx.endpoint).functions[f];
                    let params: Vec<Ty> = info.params.iter().map(|p| p.1.clone()).collect();
                    let ret = Self::result_ty(&info.returns);
                    let what = format!("function `{}`", name.name);
                    let args = self.args(cx, args, &params, &what, span);
                    texpr(TExprKind::Call(Box::new(Callee::Function(f)), args), ret, span)
                }
                Some(Binding::Sequence(s)) => {
                    let info = &self.sequences[s];
                    let starter = info.blocks.first().map(|b| b.0);
                    let params: Vec<Ty> = info.data[..info.params].iter().map(|v| v.ty.clone()).collect();
                    let ret = Self::result_ty(
                        &info.data[info.params..info.params + info.returns]
                            .iter()
                            .map(|v| v.ty.clone())
                            .collect::<Vec<_>>(),
                    );
                    if !self.symmetric
                        && let Some(starter) = starter
                        && starter != cx.endpoint
                        && self.endpoints.len() == 2
                    {
                        let (here, there) =
                            (self.endpoints[cx.endpoint].name.clone(), self.endpoints[starter].name.clone());
                        let first_block = self.sequences[s].blocks[0].2;
                        self.error(E_WRONG_STARTER, format!("sequence `{}` starts on `{there}` but is started from `{here}`", name.name), callee.span, format!("started on `{here}`"))
                            .with_secondary_mut(Label::new(first_block, format!("its first block runs on `{there}`")))
                            .help
                            .push(format!("start it from code that runs on `{there}`, or begin the sequence with a block on `{here}`"));
                    }
                    let what = format!("sequence `{}`", name.name);
                    let args = self.args(cx, args, &params, &what, span);
                    texpr(TExprKind::Call(Box::new(Callee::Sequence(s)), args), ret, span)
                }
                Some(Binding::OnCreate) => {
                    self.error(E_ONCREATE_CALLED, "`onCreate` cannot be called", callee.span, "called here")
                        .help
                        .push("`onCreate` runs once when the endpoint is created; move the shared code into a Private Function and call that".into());
                    error_expr(span)
                }
                Some(Binding::Builtin(b)) => self.builtin(cx, b, args, span),
                Some(Binding::Var(v)) => {
                    let target = self.expr(cx, callee, None);
                    let _ = v;
                    self.call_value(cx, target, args, span)
                }
                Some(Binding::Exception) => {
                    self.error(
                        E_NOT_CALLABLE,
                        format!("`{}` cannot be called", name.name),
                        callee.span,
                        "an exception kind",
                    )
                    .help
                    .push("exception kinds appear only in `catch (Kind as e)`".into());
                    error_expr(span)
                }
                None => {
                    if name.as_str() == "onCreate" {
                        self.error(E_ONCREATE_CALLED, "`onCreate` cannot be called", callee.span, "called here")
                            .help
                            .push("`onCreate` runs once when the endpoint is created; move the shared code into a Private Function and call that".into());
                    } else {
                        self.unknown_name(cx, name);
                    }
                    for a in args {
                        self.expr(cx, a, None);
                    }
                    error_expr(span)
                }
            },
            ExprKind::Field { base, name } => {
                let b = self.expr(cx, base, None);
                self.method_call(cx, b, name, args, span)
            }
            _ => {
                let target = self.expr(cx, callee, None);
                self.call_value(cx, target, args, span)
            }
        }
    }

    fn call_value(&mut self, cx: &mut Cx, target: TExpr, args: &[ast::Expr], span: Span) -> TExpr {
        match target.ty.value().clone() {
            Ty::Function(sig) => {
                let target = self.deref(target);
                let args = self.args(cx, args, &sig.params, "this function", span);
                let ret = Self::result_ty(&sig.returns);
                texpr(TExprKind::Call(Box::new(Callee::Value(target)), args), ret, span)
            }
            Ty::Error | Ty::Any => {
                self.unknown_result(&target, target.loc.0);
                for a in args {
                    self.expr(cx, a, None);
                }
                error_expr(span)
            }
            other => {
                let shown = self.ty_name(&other);
                self.error(
                    E_NOT_CALLABLE,
                    format!("{shown} is not a function"),
                    target.loc.0,
                    "cannot be called",
                )
                .help
                .push("only functions, sequences, builtins and Function values can be called".into());
                error_expr(span)
            }
        }
    }

    fn method_call(
        &mut self,
        cx: &mut Cx,
        recv: TExpr,
        name: &ast::Ident,
        args: &[ast::Expr],
        span: Span,
    ) -> TExpr {
        let method = |m| Box::new(Callee::Method(recv.clone(), m));
        match recv.ty.value().clone() {
            Ty::Endpoint => {
                if name.as_str() == "id" {
                    self.args(cx, args, &[], "`id`", span);
                    return texpr(TExprKind::Call(method(Method::Id), Vec::new()), Ty::Text, span);
                }
                self.endpoint_call(cx, recv, name, args, span)
            }
            Ty::List(elem) => match name.as_str() {
                "append" => {
                    let args = self.args(cx, args, &[(*elem).clone()], "`append`", span);
                    self.container_write(cx, &recv);
                    texpr(TExprKind::Call(method(Method::Append), args), Ty::Nothing, span)
                }
                "insert" => {
                    let args = self.args(cx, args, &[Ty::Number, (*elem).clone()], "`insert`", span);
                    self.container_write(cx, &recv);
                    texpr(TExprKind::Call(method(Method::Insert), args), Ty::Nothing, span)
                }
                "remove" => {
                    let args = self.args(cx, args, &[Ty::Number], "`remove`", span);
                    self.container_write(cx, &recv);
                    texpr(TExprKind::Call(method(Method::RemoveIndex), args), Ty::Nothing, span)
                }
                _ => self.no_method(cx, &recv.ty, name, args, span, "Lists have `append(x)`, `insert(i, x)` and `remove(i)`"),
            },
            Ty::Map(key, _) => match name.as_str() {
                "remove" => {
                    let args = self.args(cx, args, &[(*key).clone()], "`remove`", span);
                    self.container_write(cx, &recv);
                    texpr(TExprKind::Call(method(Method::RemoveKey), args), Ty::Nothing, span)
                }
                _ => self.no_method(cx, &recv.ty, name, args, span, "Maps have `remove(k)`; assign `m[k] = v` to add"),
            },
            Ty::Struct(id) => {
                // A field of Function type, called.
                match self.structs[id].fields.iter().position(|f| f.name == name.as_str()) {
                    Some(i) => {
                        let fty = self.structs[id].fields[i].ty.clone();
                        let recv = self.deref(recv);
                        let field = texpr(TExprKind::Field(Box::new(recv), i), fty, name.span);
                        self.call_value(cx, field, args, span)
                    }
                    None => {
                        let sname = self.structs[id].name.clone();
                        self.error(E_UNKNOWN_FIELD, format!("struct `{sname}` has no field `{}`", name.name), name.span, "unknown field");
                        error_expr(span)
                    }
                }
            }
            Ty::Error | Ty::Any => {
                self.unknown_result(&recv, recv.loc.0);
                for a in args {
                    self.expr(cx, a, None);
                }
                error_expr(span)
            }
            other => self.no_method(cx, &other, name, args, span, "methods exist on Lists (`append`, `insert`, `remove`), Maps (`remove`) and Endpoints (`id`, public functions)"),
        }
    }

    fn no_method(
        &mut self,
        cx: &mut Cx,
        ty: &Ty,
        name: &ast::Ident,
        args: &[ast::Expr],
        span: Span,
        help: &str,
    ) -> TExpr {
        let shown = self.ty_name(ty);
        self.error(
            E_UNKNOWN_FIELD,
            format!("{shown} has no method `{}`", name.name),
            name.span,
            "unknown method",
        )
        .help
        .push(help.to_owned());
        for a in args {
            self.expr(cx, a, None);
        }
        error_expr(span)
    }

    /// A container method writes its receiver: `controls` applies to the root variable.
    fn container_write(&mut self, cx: &Cx, recv: &TExpr) {
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

    fn endpoint_call(
        &mut self,
        cx: &mut Cx,
        target: TExpr,
        name: &ast::Ident,
        args: &[ast::Expr],
        span: Span,
    ) -> TExpr {
        let target = self.deref(target);
        // `self.f()` targets this endpoint; otherwise, look for a unique public function of
        // that name in the protocol (an Endpoint may also be of another protocol, so an
        // unknown name is left to the runtime).
        let known: Option<EndpointId> = matches!(target.kind, TExprKind::SelfRef).then_some(cx.endpoint);
        let candidates: Vec<EndpointId> = match known {
            Some(e) => vec![e],
            None => (0..self.endpoints.len()).collect(),
        };
        let mut found: Vec<(EndpointId, FunctionId)> = Vec::new();
        for e in candidates {
            if let Some(&(f, _)) = self.ep(e).function_names.get(name.as_str()) {
                found.push((e, f));
            }
        }
        if let Some(e) = known {
            match found.first() {
                Some(&(e, f)) if self.ep(e).functions[f].public => {}
                Some(&(e, f)) => {
                    let fspan = self.ep(e).functions[f].span;
                    self.error(
                        E_NOT_PUBLIC,
                        format!("`{}` is private to `{}`", name.name, self.endpoints[e].name),
                        name.span,
                        "not public",
                    )
                    .with_secondary_mut(Label::new(fspan, "declared Private here"))
                    .help
                    .push(format!("call it directly as `{}(...)`, or make it `Public`", name.name));
                    return error_expr(span);
                }
                None => {
                    let ename = self.endpoints[e].name.clone();
                    self.error(
                        E_NOT_PUBLIC,
                        format!("`{ename}` has no public function `{}`", name.name),
                        name.span,
                        "unknown function",
                    )
                    .help
                    .push("call one of the endpoint's public functions".into());
                    for a in args {
                        self.expr(cx, a, None);
                    }
                    return error_expr(span);
                }
            }
        }
        let public: Vec<(EndpointId, FunctionId)> =
            found.into_iter().filter(|&(e, f)| self.ep(e).functions[f].public).collect();
        let signatures: Vec<(Vec<Ty>, Vec<Ty>)> = public
            .iter()
            .map(|&(e, f)| {
                let info = &self.ep(e).functions[f];
                (info.params.iter().map(|p| p.1.clone()).collect(), info.returns.clone())
            })
            .collect();
        let same = signatures.windows(2).all(|w| w[0] == w[1]);
        if let (Some((params, returns)), true) = (signatures.first().cloned(), same) {
            let resolved = (public.len() == 1).then(|| public[0]);
            let what = format!("`{}`", name.name);
            let args = self.args(cx, args, &params, &what, span);
            let callee =
                Callee::Endpoint { target, function: name.name.to_string(), resolved, results: None };
            return texpr(TExprKind::Call(Box::new(callee), args), Self::result_ty(&returns), span);
        }
        // Unknown here: the runtime checks the function and its arguments (an empty `[]` or
        // `{}` goes as an empty container of any element type).
        let args = args
            .iter()
            .map(|a| {
                let hint = match &a.kind {
                    ExprKind::List(items) if items.is_empty() => Some(Ty::List(Box::new(Ty::Any))),
                    ExprKind::Map(entries) if entries.is_empty() => {
                        Some(Ty::Map(Box::new(Ty::Any), Box::new(Ty::Any)))
                    }
                    _ => None,
                };
                let t = self.expr(cx, a, hint.as_ref());
                self.deref(t)
            })
            .collect();
        let callee =
            Callee::Endpoint { target, function: name.name.to_string(), resolved: None, results: None };
        texpr(TExprKind::Call(Box::new(callee), args), Ty::Any, span)
    }

    fn builtin(&mut self, cx: &mut Cx, b: Builtin, args: &[ast::Expr], span: Span) -> TExpr {
        let call = |kind_args: Vec<TExpr>, ty: Ty| {
            texpr(TExprKind::Call(Box::new(Callee::Builtin(b)), kind_args), ty, span)
        };
        match b {
            Builtin::Len => {
                let [arg] = args else {
                    let out = self.args(cx, args, &[Ty::Error], "`len`", span);
                    return call(out, Ty::Number);
                };
                let t = self.expr(cx, arg, None);
                let t = self.deref(t);
                if !matches!(t.ty, Ty::List(_) | Ty::Map(..) | Ty::Text | Ty::Error | Ty::Any) {
                    let shown = self.ty_name(&t.ty);
                    self.error(
                        E_MISMATCHED_TYPES,
                        format!("`len` takes a List, Map or Text, found {shown}"),
                        arg.span,
                        "no length",
                    )
                    .help
                    .push("`len(x)` counts List elements, Map entries or Text characters".into());
                }
                call(vec![t], Ty::Number)
            }
            Builtin::Range => {
                let params = if args.len() == 3 { vec![Ty::Number; 3] } else { vec![Ty::Number; 2] };
                let out = self.args(cx, args, &params, "`range`", span);
                call(out, Ty::List(Box::new(Ty::Number)))
            }
            Builtin::ToText => {
                let [arg] = args else {
                    let out = self.args(cx, args, &[Ty::Error], "`toText`", span);
                    return call(out, Ty::Text);
                };
                let t = self.expr(cx, arg, None);
                let t = self.deref(t);
                if !matches!(t.ty, Ty::Number | Ty::Text | Ty::Bool | Ty::Error | Ty::Any) {
                    let shown = self.ty_name(&t.ty);
                    self.error(
                        E_MISMATCHED_TYPES,
                        format!("`toText` converts Number, Text or TrueFalse, found {shown}"),
                        arg.span,
                        "cannot convert",
                    )
                    .help
                    .push("convert the parts one by one and join them with `+`".into());
                }
                call(vec![t], Ty::Text)
            }
            Builtin::Print => {
                let [arg] = args else {
                    let out = self.args(cx, args, &[Ty::Error], "`print`", span);
                    return call(out, Ty::Nothing);
                };
                let t = self.expr(cx, arg, None);
                let t = self.deref(t);
                if matches!(t.ty, Ty::Nothing | Ty::Tuple(_)) {
                    self.error(E_NO_VALUE, "`print` needs a value", arg.span, "no single value")
                        .help
                        .push("print a Number, a Text or a TrueFalse".into());
                }
                call(vec![t], Ty::Nothing)
            }
            Builtin::Id => {
                let out = self.args(cx, args, &[], "`id`", span);
                call(out, Ty::Text)
            }
            Builtin::Signal => {
                let Some((first, rest)) = args.split_first() else {
                    self.error(
                        E_ARG_COUNT,
                        "`signal` needs a Function and its arguments",
                        span,
                        "no function given",
                    )
                    .help
                    .push("write `signal(f, args...)` with `f` a Function value from the host".into());
                    return call(Vec::new(), Ty::Nothing);
                };
                let f = self.expr(cx, first, None);
                let f = self.deref(f);
                let mut out = Vec::new();
                match f.ty.clone() {
                    Ty::Function(sig) => {
                        out.push(f);
                        out.extend(self.args(cx, rest, &sig.params, "the signalled function", span));
                    }
                    Ty::Error | Ty::Any => {
                        self.unknown_result(&f, first.span);
                        out.push(f);
                        for a in rest {
                            out.push(self.expr(cx, a, None));
                        }
                    }
                    other => {
                        let shown = self.ty_name(&other);
                        self.error(
                            E_MISMATCHED_TYPES,
                            format!("`signal` needs a Function, found {shown}"),
                            first.span,
                            "not a Function",
                        )
                        .help
                        .push(
                            "pass a Function value given by the host (for example through `onCreate`)".into(),
                        );
                        out.push(f);
                    }
                }
                call(out, Ty::Nothing)
            }
        }
    }
}

/// Levenshtein distance between two names, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The variable at the root of a place like `a.b[c].d`.
fn root_name(e: &ast::Expr) -> Option<&ast::Ident> {
    match &e.kind {
        ExprKind::Name(n) => Some(n),
        ExprKind::Field { base, .. } | ExprKind::Index { base, .. } => root_name(base),
        _ => None,
    }
}

/// Whether running these statements always ends in `return` (or an endless loop).
fn always_returns(stmts: &[ast::Stmt]) -> bool {
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
        _ => false,
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
        _ => false,
    }
}
