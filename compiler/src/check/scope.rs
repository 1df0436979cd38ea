//! Names and scopes: where the code being checked runs and what it can see ([`Cx`]), what a
//! name refers to there ([`Binding`]), and declaring locals without clashing with a visible
//! name.

use std::collections::HashMap;

use waldo_grammar as ast;
use waldo_grammar::Span;

use super::Checker;
use super::error::{CheckError, Declared};
use crate::ir::*;

/// What a name refers to where it is used.
#[derive(Clone, Copy, Debug)]
pub(super) enum Binding {
    Var(VarRef),
    Function(FunctionId),
    OnCreate,
    Sequence(SequenceId),
    Builtin(Builtin),
    Exception,
}

/// Where the code being checked runs, and what it can see.
pub(super) struct Cx {
    /// The endpoint running the code.
    pub(super) endpoint: EndpointId,
    /// The sequence whose block is being checked.
    pub(super) sequence: Option<SequenceId>,
    /// Locals (parameters first), by `LocalId`.
    pub(super) locals: Vec<Var>,
    /// Whether each local has been read.
    pub(super) used: Vec<bool>,
    /// Visible locals by name.
    pub(super) scope: HashMap<String, LocalId>,
    /// How many globals of the endpoint are visible (initializers see earlier ones only).
    pub(super) globals_visible: usize,
    /// How many peered variables are visible.
    pub(super) peered_visible: usize,
    /// Whether functions and sequences are visible (not in peered initializers).
    pub(super) code_visible: bool,
    /// Result types of the enclosing function; `None` where `return` takes no value.
    pub(super) returns: Option<Vec<Ty>>,
    /// Nesting of loops around the current statement.
    pub(super) loops: u32,
}

impl Cx {
    pub(super) fn new(endpoint: EndpointId) -> Self {
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

    pub(super) fn add_local(&mut self, name: &str, ty: Ty, span: Span) -> LocalId {
        let id = LocalId(self.locals.len());
        self.locals.push(Var { name: name.to_owned(), ty, init: None, loc: Loc(span) });
        self.used.push(false);
        self.scope.insert(name.to_owned(), id);
        id
    }

    /// Notes that local `id` is read (or needs no "unused" warning).
    pub(super) fn mark_used(&mut self, id: LocalId) {
        self.used[id.index()] = true;
    }
}

impl Checker<'_> {
    /// The span of a declaration of `name` visible to code on `endpoint` outside any local
    /// scope: peered data, the endpoint's globals and functions, sequences.
    pub(super) fn visible_outside(&self, name: &str, endpoint: Option<EndpointId>) -> Option<Span> {
        if let Some(&(_, s)) = self.peered_names.get(name) {
            return Some(s);
        }
        if let Some(&(_, s)) = self.sequence_names.get(name) {
            return Some(s);
        }
        let eps: Vec<EndpointId> = match endpoint {
            Some(e) => vec![e],
            None => self.endpoint_ids().collect(),
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

    pub(super) fn lookup(&self, cx: &Cx, name: &str) -> Option<Binding> {
        if let Some(&id) = cx.scope.get(name) {
            return Some(Binding::Var(VarRef::Local(id)));
        }
        if let Some(s) = cx.sequence
            && let Some(&(i, _)) = self.sequences[s].data_names.get(name)
        {
            return Some(Binding::Var(VarRef::SeqData(i)));
        }
        let ep = (cx.endpoint.index() < self.endpoints.len()).then(|| self.ep(cx.endpoint));
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

    pub(super) fn var_ty(&self, cx: &Cx, var: VarRef) -> Ty {
        match var {
            VarRef::Local(i) => cx.locals[i].ty.clone(),
            VarRef::SeqData(i) => cx.sequence.map_or(Ty::Error, |s| self.sequences[s].data[i].ty.clone()),
            VarRef::Global(i) => self.ep(cx.endpoint).globals.get(i).map_or(Ty::Error, |g| g.ty.clone()),
            VarRef::Peered(i) => self.peered[i].var.ty.clone(),
        }
    }

    /// Declares a local, reporting a clash with any visible name.
    pub(super) fn declare_local(&mut self, cx: &mut Cx, name: &ast::Ident, ty: Ty, in_for: bool) -> LocalId {
        if self.builtin_declared(name) {
            // Later uses of the name mean this variable: no follow-on errors.
            return cx.add_local(&name.name, ty, name.span);
        }
        let previous = if let Some(&id) = cx.scope.get(name.as_str()) {
            cx.mark_used(id); // the clash is the error; "unused" would only repeat it
            Some(cx.locals[id].loc.0)
        } else if let Some(s) = cx.sequence
            && let Some(&(_, span)) = self.sequences[s].data_names.get(name.as_str())
        {
            Some(span)
        } else {
            self.visible_outside(name.as_str(), Some(cx.endpoint))
        };
        if let Some(previous) = previous {
            let (name, span) = (name.name.to_string(), name.span);
            self.report(if in_for {
                CheckError::LoopVariableDeclaredTwice { name, span, previous }
            } else {
                CheckError::Duplicate { what: Declared::Variable, name, span, previous }
            });
        }
        cx.add_local(&name.name, ty, name.span)
    }
}
