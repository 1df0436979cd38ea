//! Pass 2, per body: the initializers of peered data, globals and sequence data (each seeing
//! only what is declared before it), every function, `onCreate` and sequence block, and the
//! warnings about locals never read. Assembles the checked [`Protocol`].

use waldo_grammar as ast;
use waldo_grammar::Span;

use super::error::{CheckError, Declared};
use super::flow::always_returns;
use super::scope::Cx;
use super::{Checker, loc};
use crate::ir::*;

impl Checker<'_> {
    pub(super) fn check_bodies(&mut self) -> Protocol {
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
            let mut cx = Cx::new(EndpointId(0));
            cx.peered_visible = i;
            cx.globals_visible = 0;
            cx.code_visible = false;
            let ty = self.peered[i].var.ty.clone();
            let value = self.expr_expect(&mut cx, init, &ty);
            self.peered[i].var.init = Some(value);
        }

        let count = if self.symmetric { 1 } else { self.endpoints.len() };
        let mut endpoints = Vec::new();
        for id in self.endpoint_ids().take(count) {
            endpoints.push(self.check_endpoint(id));
        }
        if self.symmetric && self.endpoints.len() == 2 {
            let mut mirror = endpoints[0].clone();
            mirror.name = self.endpoints[1].name.clone();
            endpoints.push(mirror);
        }

        let mut sequences = Vec::new();
        for s in (0..self.sequences.len()).map(SequenceId) {
            sequences.push(self.check_sequence(s));
        }

        Protocol {
            name: self.ast.protocol.name.to_string(),
            endpoints,
            symmetric: self.symmetric,
            structs: self.structs.clone(),
            peered: self.peered.clone(),
            sequences,
            lines: Default::default(),
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
                // Globals are checked above; a member that did not parse has been reported.
                ast::Member::Global(_) | ast::Member::Error(_) => {}
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
                self.report(CheckError::Duplicate {
                    what: Declared::Parameter,
                    name: pname.clone(),
                    span: *pspan,
                    previous,
                });
            }
            let id = cx.add_local(pname, ty.clone(), *pspan);
            cx.mark_used(id); // parameters are part of the signature; unused ones are fine
        }
        // `onCreate` returns nothing, like a block: `return 1;` there is E0131, whose help
        // speaks of `onCreate` (not of a `returns` list it cannot have).
        cx.returns = if name == "onCreate" { None } else { Some(returns.clone()) };
        let stmts = self.block(&mut cx, &body.stmts);
        if !returns.is_empty() && !always_returns(&body.stmts) {
            let end = Span::new(body.span.hi().saturating_sub(1), body.span.hi());
            self.report(CheckError::MissingReturn {
                function: name.to_owned(),
                returns: returns.clone(),
                span: end,
            });
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
                self.report(CheckError::UnusedVariable { name: var.name.clone(), span: var.loc.0 });
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
                let starter = self.sequences[s].blocks.first().map_or(EndpointId(0), |b| b.0);
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
}
