//! Pass 1: every declaration and the protocol's shape. Endpoints and their bodies, structs
//! and their fields, peered data and who controls it, each endpoint's globals, functions and
//! `onCreate`, and the sequences: their data, their blocks (which must alternate between the
//! endpoints) and their agreement with the `Sequences` section.

use std::collections::HashMap;

use waldo_grammar as ast;
use waldo_grammar::{Span, TypeKind};

use super::{Checker, EpInfo, FnInfo, Params, SeqInfo, loc};
use crate::codes::*;
use crate::diagnostics::Label;
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
        self.endpoints.iter().position(|e| e.name == name).map(EndpointId)
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
        for id in self.endpoint_ids() {
            if self.endpoints[id].body.is_none() && !(self.symmetric && id == EndpointId(1)) {
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
        for id in (0..self.structs.len()).map(StructId) {
            if self.contains_struct(id, id, &mut Vec::new()) {
                let decl = self.struct_asts[id.index()];
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
        for id in self.endpoint_ids().take(count) {
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
            blocks.push((endpoint.unwrap_or(EndpointId(0)), b.name.name.to_string(), b.name.span));
        }
        self.check_alternation(alternation);
        SeqInfo { def, data, params, returns, data_names, blocks }
    }
}
