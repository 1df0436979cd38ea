//! Pass 1: every declaration and the protocol's shape. Endpoints and their bodies, structs
//! and their fields, peered data and who controls it, each endpoint's globals, functions and
//! `onCreate`, and the sequences: their data, their blocks (which must alternate between the
//! endpoints) and their agreement with the `Sequences` section.

use std::collections::HashMap;

use waldo_grammar as ast;
use waldo_grammar::{Span, TypeKind};

use super::error::{CheckError, Declared, Section};
use super::{Checker, EpInfo, FnInfo, Params, SeqInfo, loc};
use crate::ir::*;

impl<'a> Checker<'a> {
    pub(super) fn collect(&mut self) {
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
                self.report(CheckError::Duplicate {
                    what: Declared::Endpoint,
                    name: name.name.to_string(),
                    span: name.span,
                    previous,
                });
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
        self.endpoints.iter().position(|e| e.name == name).map(EndpointId)
    }

    fn unknown_endpoint(&mut self, name: &ast::Ident) {
        let endpoints = self.endpoints.iter().map(|e| e.name.clone()).collect();
        self.report(CheckError::UnknownEndpoint { name: name.name.to_string(), span: name.span, endpoints });
    }

    /// Notes a `Sequences` or `Peered` section; reports it if one came before.
    fn section(&mut self, first: &mut Option<Span>, span: Span, section: Section) {
        if let Some(first) = *first {
            self.report(CheckError::DuplicateSection { section, span, first });
        }
        first.get_or_insert(span);
    }

    fn collect_items(&mut self) {
        let mut sequences_section: Option<Span> = None;
        let mut peered_section: Option<Span> = None;
        for item in &self.ast.items {
            match item {
                ast::Item::Sequences(s) => {
                    self.section(&mut sequences_section, s.span, Section::Sequences);
                }
                ast::Item::Peered(p) => {
                    self.section(&mut peered_section, p.span, Section::Peered);
                    self.peered_asts.extend(p.vars.iter());
                }
                ast::Item::Struct(s) => {
                    if self.builtin_declared(&s.name) {
                        continue;
                    }
                    if let Some(&(_, previous)) = self.struct_names.get(s.name.as_str()) {
                        self.report(CheckError::Duplicate {
                            what: Declared::Struct,
                            name: s.name.name.to_string(),
                            span: s.name.span,
                            previous,
                        });
                        continue;
                    }
                    self.struct_names
                        .insert(s.name.name.to_string(), (StructId(self.structs.len()), s.name.span));
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
                    if self.symmetric && id == EndpointId(1) {
                        self.report(CheckError::MirrorBody {
                            name: body.name.name.to_string(),
                            span: body.name.span,
                            first: self.endpoints[0].name.clone(),
                        });
                        continue;
                    }
                    if let Some(previous) = self.endpoints[id].body {
                        self.report(CheckError::DuplicateBody {
                            name: body.name.name.to_string(),
                            span: body.name.span,
                            first: previous.name.span,
                        });
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
        for id in self.endpoint_ids() {
            if self.endpoints[id].body.is_none() && !(self.symmetric && id == EndpointId(1)) {
                let name = self.endpoints[id].name.clone();
                let span = self.endpoints[id].span;
                self.report(CheckError::MissingBody { name, span });
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
                    self.report(CheckError::Duplicate {
                        what: Declared::Field,
                        name: field.name.name.to_string(),
                        span: field.name.span,
                        previous,
                    });
                    continue;
                }
                seen.insert(field.name.as_str(), field.name.span);
                let ty = self.resolve_ty(&field.ty, false);
                fields.push(Field { name: field.name.name.to_string(), ty });
            }
            self.structs[id].fields = fields;
        }
        // A struct that holds itself (directly, not through a container) has no finite default.
        for id in (0..self.structs.len()).map(StructId) {
            if self.contains_struct(id, id, &mut Vec::new()) {
                let decl = self.struct_asts[id.index()];
                self.report(CheckError::RecursiveStruct {
                    name: decl.name.name.to_string(),
                    span: decl.name.span,
                });
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
                self.report(CheckError::HostTypeInPeered { ty: ty.clone(), span: pv.decl.ty.span });
            }
            if self.symmetric
                && let Some(ast::Owner::Nothing(span)) = &pv.owner
            {
                self.report(CheckError::ControlsInSymmetric { span: *span, nothing: true });
            }
            let owner = match &pv.owner {
                Some(ast::Owner::Endpoint(e)) => {
                    if self.symmetric {
                        self.report(CheckError::ControlsInSymmetric { span: e.span, nothing: false });
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
                self.report(CheckError::Duplicate {
                    what: Declared::PeeredVariable,
                    name: name.name.to_string(),
                    span: name.span,
                    previous,
                });
                continue;
            }
            self.peered_names.insert(name.name.to_string(), (self.peered.len(), name.span));
            self.peered.push(PeeredVar {
                var: Var { name: name.name.to_string(), ty, init: None, loc: loc(pv.span) },
                owner,
            });
        }
    }

    fn resolve_params(&mut self, params: &[ast::Param]) -> Params {
        let mut out: Params = Vec::new();
        for p in params {
            let mut name = p.name.name.to_string();
            if self.builtin_declared(&p.name) {
                name = unnameable(&name, out.len());
            } else if let Some((_, _, previous)) = out.iter().find(|(n, _, _)| n == p.name.as_str()) {
                let previous = *previous;
                self.report(CheckError::Duplicate {
                    what: Declared::Parameter,
                    name: p.name.name.to_string(),
                    span: p.name.span,
                    previous,
                });
                name = unnameable(&name, out.len());
            }
            // A parameter reported above still counts, so that calls are not also reported for
            // passing one argument too many.
            let ty = self.resolve_ty(&p.ty, false);
            out.push((name, ty, p.name.span));
        }
        out
    }

    fn collect_members(&mut self) {
        let count = if self.symmetric { 1 } else { self.endpoints.len() };
        for id in self.endpoint_ids().take(count) {
            let Some(body) = self.endpoints[id].body else { continue };
            for member in &body.members {
                match member {
                    ast::Member::Global(decl) => {
                        if self.builtin_declared(&decl.name) {
                            continue;
                        }
                        if let Some(previous) = self.visible_outside(decl.name.as_str(), Some(id)) {
                            self.report(CheckError::Duplicate {
                                what: Declared::Global,
                                name: decl.name.name.to_string(),
                                span: decl.name.span,
                                previous,
                            });
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
                            self.report(CheckError::Duplicate {
                                what: Declared::Function,
                                name: f.name.name.to_string(),
                                span: f.name.span,
                                previous,
                            });
                            continue;
                        }
                        let params = self.resolve_params(&f.params);
                        // `returns Nothing` is the same as no `returns` clause.
                        let returns = match f.returns.as_slice() {
                            [only] if only.kind == TypeKind::Nothing => Vec::new(),
                            written => written.iter().map(|t| self.resolve_ty(t, false)).collect(),
                        };
                        let ep = &mut self.endpoints[id];
                        ep.function_names
                            .insert(f.name.name.to_string(), (FunctionId(ep.functions.len()), f.name.span));
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
                            self.report(CheckError::Duplicate {
                                what: Declared::OnCreate,
                                name: "onCreate".to_owned(),
                                span: oc.keyword,
                                previous,
                            });
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
                self.report(CheckError::Duplicate {
                    what: Declared::Sequence,
                    name: def.name.name.to_string(),
                    span: def.name.span,
                    previous,
                });
                continue;
            }
            if self.endpoints.len() < 2 {
                self.report(CheckError::SequenceNeedsTwo { span: def.name.span });
            }
            let info = self.collect_sequence(def);
            self.sequence_names
                .insert(def.name.name.to_string(), (SequenceId(self.sequences.len()), def.name.span));
            self.sequences.push(info);
        }
        // The `Sequences` section must agree with the definitions, and list each once.
        let mut entries: HashMap<&str, Span> = HashMap::new();
        for item in &self.ast.items {
            let ast::Item::Sequences(section) = item else { continue };
            for entry in &section.entries {
                if let Some(&previous) = entries.get(entry.name.as_str()) {
                    self.report(CheckError::SequenceListedTwice {
                        name: entry.name.name.to_string(),
                        span: entry.name.span,
                        previous,
                    });
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
                    self.report(CheckError::UndefinedSequence {
                        name: entry.name.name.to_string(),
                        span: entry.name.span,
                    });
                    continue;
                };
                let defined: Vec<(Option<EndpointId>, &str)> =
                    self.sequences[id].blocks.iter().map(|(e, n, _)| (Some(*e), n.as_str())).collect();
                if listed.iter().any(|(e, _)| e.is_none()) {
                    continue;
                }
                if listed != defined {
                    let named = |v: &[(Option<EndpointId>, &str)]| {
                        v.iter()
                            .map(|(e, n)| {
                                (
                                    e.map_or("?", |e| self.endpoints[e].name.as_str()).to_owned(),
                                    (*n).to_owned(),
                                )
                            })
                            .collect()
                    };
                    let (listed, defined) = (named(&listed), named(&defined));
                    let definition = self.sequences[id].def.name.span;
                    self.report(CheckError::OrderMismatch {
                        name: entry.name.name.to_string(),
                        span: entry.span,
                        listed,
                        defined,
                        definition,
                    });
                }
            }
        }
    }

    fn check_alternation(&mut self, blocks: Vec<(Option<EndpointId>, Span)>) {
        for pair in blocks.windows(2) {
            if let [(Some(a), _), (Some(b), span)] = pair
                && a == b
            {
                let endpoint = self.endpoints[*a].name.clone();
                self.report(CheckError::BlocksDontAlternate { endpoint, span: *span });
            }
        }
    }

    fn collect_sequence(&mut self, def: &'a ast::SequenceDef) -> SeqInfo<'a> {
        let mut data: Vec<Var> = Vec::new();
        let mut data_names: HashMap<String, (usize, Span)> = HashMap::new();
        // A parameter or result reported here still counts (under a name no code can write),
        // so that calls are not also reported for their number of arguments or results; one
        // whose type is refused takes any value.
        let mut add = |this: &mut Self, name: &ast::Ident, ty: &ast::Type, data: &mut Vec<Var>| {
            let mut named = !this.builtin_declared(name);
            if named && let Some(&(_, previous)) = data_names.get(name.as_str()) {
                this.report(CheckError::Duplicate {
                    what: Declared::SequenceData,
                    name: name.name.to_string(),
                    span: name.span,
                    previous,
                });
                named = false;
            }
            if named && let Some(previous) = this.visible_outside(name.as_str(), None) {
                this.report(CheckError::Duplicate {
                    what: Declared::SequenceData,
                    name: name.name.to_string(),
                    span: name.span,
                    previous,
                });
                named = false;
            }
            let mut resolved = this.resolve_ty(ty, false);
            if resolved.host_bound(&this.structs) {
                this.report(CheckError::HostTypeInSequenceData { ty: resolved.clone(), span: ty.span });
                resolved = Ty::Error;
            }
            let span = name.span;
            let name = if named {
                data_names.insert(name.name.to_string(), (data.len(), span));
                name.name.to_string()
            } else {
                unnameable(name.as_str(), data.len())
            };
            data.push(Var { name, ty: resolved, init: None, loc: loc(span) });
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
            // A block is named by its endpoint and its name (`A.a`, `B.a`).
            let here = endpoint.unwrap_or(EndpointId(0));
            if let Some((_, _, previous)) = blocks.iter().find(|(e, n, _)| *e == here && n == b.name.as_str())
            {
                let previous = *previous;
                self.report(CheckError::Duplicate {
                    what: Declared::Block,
                    name: b.name.name.to_string(),
                    span: b.name.span,
                    previous,
                });
            }
            blocks.push((here, b.name.name.to_string(), b.name.span));
        }
        self.check_alternation(alternation);
        SeqInfo { def, data, params, returns, data_names, blocks }
    }
}

/// A name for a parameter or sequence datum that was reported (named like a builtin, or
/// twice): no code can write it (`#` is no part of a name), so it is never found.
fn unnameable(name: &str, index: usize) -> String {
    format!("{name}#{index}")
}
