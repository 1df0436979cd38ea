//! One endpoint's module: its typed handle (see `host_api`), the static `Code` table the
//! runtime's shell runs (the variable slots with their defaults and `controls` marks, the
//! public functions by name, the blocks by number), and the lowered bodies: peered
//! initializers, `onCreate`, functions and blocks, each a `fn` taking the running endpoint
//! `ep` and the transaction. A function or block that may wait (for a lock, the partner,
//! another endpoint, or a function that may) is an `async fn`, which the table boxes
//! (`rt::call!`, `rt::step!`); a function that calls itself returns the boxed future itself,
//! since an `async fn` cannot. One that cannot wait is a plain `fn` returning its result,
//! which is cheaper to run and much cheaper for rustc.

use proc_macro2::{Ident, TokenStream};
use quote::quote;

use super::Gen;
use super::body::{BodyKind, Lower, default_value, kind_of, number, rt, start_value};
use crate::ir::{EndpointId, Function, FunctionId, Sequence, SequenceId, TExpr, TExprKind};

impl Gen<'_> {
    /// Endpoint `e`'s module with only its `use` inside, and an empty `mod` named
    /// [`body_marker`] where the rest goes: the generation puts the printed parts of the
    /// module there (see the `shards` module), in this order: [`Gen::api`],
    /// [`Gen::function_table`], [`Gen::endpoint_head`], [`Gen::endpoint_functions`],
    /// [`Gen::endpoint_blocks`].
    pub(super) fn endpoint_module(&self, e: EndpointId) -> TokenStream {
        let ep = &self.p.endpoints[e];
        let module = &self.modules[e.index()];
        let doc = format!(" The `{}` endpoint of protocol `{}`.", ep.name, self.p.name);
        let marker = quote::format_ident!("{}", body_marker(e));
        // The typed handle's methods return `impl Call<..>` (see `Gen::api`).
        let call = self
            .public_functions(e)
            .into_iter()
            .any(|f| ep.functions[f].returns.len() <= 8)
            .then(|| quote!(Call,));
        quote! {
            #[doc = #doc]
            pub mod #module {
                use ::waldo::{#call Result, __rt as rt};

                mod #marker {}
            }
        }
    }

    /// What follows the typed handle ([`Gen::api`]) in endpoint `e`'s module: its `Code`
    /// table (which needs `block_runs`, how each of its blocks runs, in order), its
    /// initializers and `onCreate`.
    pub(super) fn endpoint_head(&self, e: EndpointId, a: &Analysis, block_runs: &[BlockRun]) -> TokenStream {
        let early = self.globals_early(e, &a.waits);
        let on_create =
            if self.has_on_create(e, early) { self.on_create(e, &a.waits, early) } else { quote!() };
        let init = if self.has_init(e, early) { self.init(e, &a.waits, early) } else { quote!() };
        let code = self.code_table(e, block_runs, early);
        quote!(#code #init #on_create)
    }

    /// The functions `functions` of endpoint `e` (reachable ones, in order), each from its
    /// first lowering in `first` where that still holds.
    pub(super) fn endpoint_functions(
        &self,
        e: EndpointId,
        a: &Analysis,
        functions: &[FunctionId],
        first: &mut Vec<(FunctionId, Lowered)>,
    ) -> TokenStream {
        let ep = &self.p.endpoints[e];
        functions
            .iter()
            .map(|&f| {
                let body = match first.iter().position(|(g, _)| *g == f) {
                    Some(i) if a.keep[f.index()] => Some(first.swap_remove(i).1),
                    _ => None,
                };
                let name = &self.functions[e.index()][f.index()];
                self.function(e, &ep.functions[f], name, &a.waits, a.recursive[f.index()], body)
            })
            .collect()
    }

    /// How many blocks endpoint `e` runs (of a pair: a lone endpoint runs none).
    pub(super) fn block_count(&self, e: EndpointId) -> usize {
        if self.pair() { self.blocks[e.index()].len() } else { 0 }
    }

    /// Which block of which sequence is block `i` of endpoint `e`.
    pub(super) fn block_key(&self, e: EndpointId, i: usize) -> (SequenceId, usize) {
        self.blocks[e.index()][i].0
    }

    /// Blocks `range` of endpoint `e` (in the order of its `Code` table), and how each runs.
    pub(super) fn endpoint_blocks(
        &self,
        e: EndpointId,
        a: &Analysis,
        range: std::ops::Range<usize>,
    ) -> (TokenStream, Vec<BlockRun>) {
        let mut fns = TokenStream::new();
        let mut runs = Vec::new();
        for ((s, b), name) in &self.blocks[e.index()][range] {
            let (code, run) = self.block(e, &self.p.sequences[*s], *b, name, &a.waits);
            fns.extend(code);
            runs.push(run);
        }
        (fns, runs)
    }

    /// Which globals of `e` are initialized before the endpoint is connected (with the
    /// peered variables' initializers), so that the partner's first blocks see them: those
    /// before the returned index. From the first whose initializer needs the endpoint created
    /// and connected ([`Facts::needs_created`]: a sequence, another endpoint, a host function,
    /// `print` or `signal`) on, they are initialized at the start of `onCreate`'s
    /// transaction instead, in order.
    fn globals_early(&self, e: EndpointId, waits: &Waits) -> usize {
        let ep = &self.p.endpoints[e];
        let folded = literal_prefix(ep.globals.iter().map(|g| g.init.as_ref()));
        let mut end = folded;
        for g in &ep.globals[folded..] {
            if let Some(init) = &g.init {
                let mut lower = self.init_lower(e, waits);
                let code = lower.expr(init);
                if facts(&code).needs_created() || lower.called.iter().any(|f| waits.late[f.index()]) {
                    break;
                }
            }
            end += 1;
        }
        end
    }

    /// Whether endpoint `e` has anything to run with `onCreate`: the initializers of the
    /// globals from `early` on, or an `onCreate`.
    fn has_on_create(&self, e: EndpointId, early: usize) -> bool {
        let ep = &self.p.endpoints[e];
        ep.on_create.is_some() || ep.globals[early..].iter().any(|g| g.init.is_some())
    }

    /// Whether endpoint `e` has initializers to run before it is connected: a peered
    /// variable's (one not folded into the slots), or a global's before `early`.
    fn has_init(&self, e: EndpointId, early: usize) -> bool {
        let ep = &self.p.endpoints[e];
        let folded = literal_prefix(ep.globals.iter().map(|g| g.init.as_ref()));
        self.p.peered.iter().skip(self.peered_folded()).any(|v| v.var.init.is_some())
            || ep.globals[folded.min(early)..early].iter().any(|g| g.init.is_some())
    }

    /// How many peered variables, from the first, start with their initializer's value.
    fn peered_folded(&self) -> usize {
        literal_prefix(self.p.peered.iter().map(|v| v.var.init.as_ref()))
    }

    /// The public functions of endpoint `e`, in the order of its `Code` table (by name): a
    /// host call names a function by its position here.
    pub(super) fn public_functions(&self, e: EndpointId) -> Vec<FunctionId> {
        let ep = &self.p.endpoints[e];
        let reachable = self.reachable(e);
        let mut public: Vec<FunctionId> = (0..ep.functions.len())
            .map(FunctionId)
            .filter(|&f| ep.functions[f].public && reachable.contains(&f))
            .collect();
        public.sort_by(|&a, &b| ep.functions[a].name.as_bytes().cmp(ep.functions[b].name.as_bytes()));
        public
    }

    /// Function `f` of endpoint `e` lowered assuming that every function it calls is a
    /// plain `fn`, and what that lowering says about it (see [`Gen::analysis`]).
    pub(super) fn first_lowering(&self, e: EndpointId, f: FunctionId) -> (Known, Lowered) {
        let ep = &self.p.endpoints[e];
        let n = ep.functions.len();
        let none = Waits { waits: vec![false; n], bare: vec![false; n], late: vec![false; n] };
        let (body, called) = self.function_body(e, &ep.functions[f], &none, |_| TokenStream::new());
        (Known { waits: body.waits, late: body.created, called }, body)
    }

    /// Which functions of endpoint `e` may wait: those whose own code waits, and those that
    /// call one that may; which call themselves, directly or through others; which need the
    /// endpoint created and connected (see [`Facts::needs_created`]); and whose first lowering
    /// ([`Gen::first_lowering`]) holds, because it calls no function that waits. `facts` has the facts
    /// of each function of `reachable`, by function index.
    pub(super) fn analysis(
        &self,
        e: EndpointId,
        reachable: &[FunctionId],
        known: &[Option<&Known>],
    ) -> Analysis {
        let ep = &self.p.endpoints[e];
        let n = ep.functions.len();
        let mut waits = vec![false; n];
        let mut late = vec![false; n];
        let mut calls: Vec<Vec<FunctionId>> = vec![Vec::new(); n];
        for &f in reachable {
            if let Some(known) = known[f.index()] {
                waits[f.index()] = known.waits;
                late[f.index()] = known.late;
                calls[f.index()] = known.called.clone();
            }
        }
        // Waiting, and needing a created endpoint, spread from callee to caller.
        let mut changed = true;
        while changed {
            changed = false;
            for &f in reachable {
                if !waits[f.index()] && calls[f.index()].iter().any(|g| waits[g.index()]) {
                    waits[f.index()] = true;
                    changed = true;
                }
                if !late[f.index()] && calls[f.index()].iter().any(|g| late[g.index()]) {
                    late[f.index()] = true;
                    changed = true;
                }
            }
        }
        let keep = (0..n).map(|f| !calls[f].iter().any(|g| waits[g.index()])).collect();
        let recursive: Vec<bool> = (0..n).map(|f| reaches(&calls, FunctionId(f))).collect();
        // A function that waits, does not call itself and takes no parameters is called
        // without the (empty) arguments.
        let bare =
            (0..n).map(|f| waits[f] && !recursive[f] && ep.functions[FunctionId(f)].params == 0).collect();
        Analysis { waits: Waits { waits, bare, late }, recursive, keep }
    }

    /// `static FUNCTIONS`: the public functions of endpoint `e` for its `Code` table, sorted by
    /// name (a host call names one by its position); nothing when it has none. Apart from the
    /// table, since it does not depend on how the blocks run (see the `shards` module).
    pub(super) fn function_table(&self, e: EndpointId, a: &Analysis) -> TokenStream {
        let rt = rt();
        let ep = &self.p.endpoints[e];
        let functions: Vec<TokenStream> = self
            .public_functions(e)
            .into_iter()
            .map(|f| {
                let func = &ep.functions[f];
                let name = &func.name;
                let run = &self.functions[e.index()][f.index()];
                let kinds: Vec<TokenStream> =
                    func.locals[..func.params].iter().map(|v| kind_of(&v.ty)).collect();
                match (a.waits.waits[f.index()], a.recursive[f.index()]) {
                    (false, _) => quote!(#rt::Function::now(#name, &[#(#rt::Kind::#kinds),*], #run)),
                    (true, false) if func.params == 0 => quote!(#rt::function!(#name, #run)),
                    (true, false) => quote!(#rt::function!(#name, [#(#kinds),*], #run)),
                    (true, true) => quote!(#rt::Function::new(#name, &[#(#rt::Kind::#kinds),*], #run)),
                }
            })
            .collect();
        if functions.is_empty() {
            return TokenStream::new();
        }
        let doc = format!(" The public functions of `{}`, by name, for its `Code` table.", ep.name);
        quote! {
            #[doc = #doc]
            static FUNCTIONS: &[#rt::Function] = &[#(#functions),*];
        }
    }

    /// `static CODE`: what the runtime's shell runs of endpoint `e`.
    fn code_table(&self, e: EndpointId, block_runs: &[BlockRun], early: usize) -> TokenStream {
        let rt = rt();
        let ep = &self.p.endpoints[e];
        let name = &ep.name;
        let mut fields = TokenStream::new();
        if !self.file.is_empty() {
            let file = &self.file;
            fields.extend(quote!(file: #file,));
        }
        if self.pair() {
            let side = e.index() as u8;
            fields.extend(quote!(pair: Some((&super::PAIR, #side)),));
        }
        let peered = self.p.peered.len();
        // A variable whose initializer is a literal, with only such initializers before it,
        // starts with that value: nothing can read it before its initializer would run.
        let peered_folded = self.peered_folded();
        let globals_folded = literal_prefix(ep.globals.iter().map(|g| g.init.as_ref()));
        let first = |i: usize, folded: usize, init: Option<&TExpr>, ty| match init.and_then(literal) {
            Some(value) if i < folded => value,
            _ => default_value(self.p, &self.structs, ty),
        };
        let mut defaults: Vec<TokenStream> = self
            .p
            .peered
            .iter()
            .enumerate()
            .map(|(i, v)| first(i, peered_folded, v.var.init.as_ref(), &v.var.ty))
            .collect();
        defaults.extend(
            ep.globals.iter().enumerate().map(|(i, g)| first(i, globals_folded, g.init.as_ref(), &g.ty)),
        );
        if !defaults.is_empty() {
            fields.extend(quote!(slots: || Vec::from([#(#defaults),*]),));
        }
        if peered > 0 {
            fields.extend(quote!(peered: #peered,));
        }
        // Peered variables the other endpoint controls: the runtime refuses writes to them
        // through any reference (the checker refuses the direct ones).
        let controlled: Vec<TokenStream> = self
            .p
            .peered
            .iter()
            .enumerate()
            .filter_map(|(slot, v)| {
                let owner = v.owner.filter(|&o| o != e)?;
                let (name, owner) = (&v.var.name, &self.p.endpoints[owner].name);
                Some(quote!((#slot, #name, #owner)))
            })
            .collect();
        if !controlled.is_empty() {
            fields.extend(quote!(controlled: &[#(#controlled),*],));
        }
        if self.has_init(e, early) {
            fields.extend(quote!(init: Some(#rt::call!(init)),));
        }
        if self.has_on_create(e, early) {
            fields.extend(quote!(on_create: Some(#rt::call!(on_create)),));
        }
        let create_params = ep.on_create.as_ref().map_or(0, |f| f.params);
        if create_params > 0 {
            fields.extend(quote!(create_params: #create_params,));
        }
        if !self.public_functions(e).is_empty() {
            fields.extend(quote!(functions: FUNCTIONS,));
        }
        let mut blocks: Vec<(u32, u32, &Ident, BlockRun)> = if self.pair() {
            self.blocks[e.index()]
                .iter()
                .zip(block_runs)
                .map(|(((s, b), name), &r)| (s.index() as u32, *b as u32, name, r))
                .collect()
        } else {
            Vec::new()
        };
        blocks.sort_by_key(|&(s, b, _, _)| (s, b));
        if !blocks.is_empty() {
            let blocks = blocks.iter().map(|(seq, block, run, how)| match how {
                BlockRun::Wait => quote!(#rt::Block::new(#seq, #block, #rt::step!(#run))),
                BlockRun::Restart => quote!(#rt::Block::restart(#seq, #block, #run)),
                BlockRun::Now => quote!(#rt::Block::now(#seq, #block, #run)),
            });
            fields.extend(quote!(blocks: &[#(#blocks),*],));
        }
        let doc = format!(" What the runtime runs of `{name}`.");
        quote! {
            #[doc = #doc]
            static CODE: #rt::Code = #rt::Code { #fields ..#rt::Code::named(#name) };
        }
    }

    /// A function's lowering: `fn f_name(ep, tx, args) -> Call` when it may wait (`body`:
    /// its lowering, when already made with the final `waits`), a plain `fn` returning its
    /// results when it cannot.
    fn function(
        &self,
        e: EndpointId,
        f: &Function,
        name: &Ident,
        waits: &Waits,
        recursive: bool,
        body: Option<Lowered>,
    ) -> TokenStream {
        let rt = rt();
        let Lowered { ep, tx, args: args_param, code, waits: body_waits, .. } = match body {
            Some(body) => body,
            None => self.function_body(e, f, waits, |_| TokenStream::new()).0,
        };
        let doc = format!(" `{}`", self.signature(f));
        if !body_waits {
            return quote! {
                #[doc = #doc]
                fn #name(#ep: &#rt::Ep, #tx: &#rt::Tx, #args_param: #rt::Args) -> #rt::Returns {
                    #code
                }
            };
        }
        if !recursive {
            let args = if f.params == 0 { quote!() } else { quote!(, #args_param: #rt::Args) };
            return quote! {
                #[doc = #doc]
                async fn #name(#ep: &#rt::Ep, #tx: &#rt::Tx #args) -> #rt::Returns {
                    #code
                }
            };
        }
        // A function that calls itself returns a boxed future (an `async fn` cannot).
        quote! {
            #[doc = #doc]
            fn #name<'a>(#ep: &'a #rt::Ep, #tx: &'a #rt::Tx, #args_param: #rt::Args) -> #rt::Call<'a> {
                Box::pin(async move { #code })
            }
        }
    }

    /// The body of a function (or `onCreate`): its parameters taken from `args`, `before`
    /// (code to run first, lowered in the body's context), its hoisted locals and its
    /// statements. Returns the names to give `ep`, `tx` and `args` (`_`-prefixed when unused).
    fn function_body(
        &self,
        e: EndpointId,
        f: &Function,
        waits: &Waits,
        before: impl FnOnce(&mut Lower<'_>) -> TokenStream,
    ) -> (Lowered, Vec<FunctionId>) {
        let mut lower = Lower::new(
            self.p,
            &self.functions[e.index()],
            &waits.waits,
            BodyKind::Function,
            &f.locals,
            &f.body,
            f.params,
        )
        .with_structs(&self.structs)
        .with_bare(&waits.bare);
        let params = if f.params > 0 { lower.params(f.params) } else { TokenStream::new() };
        let first = before(&mut lower);
        let hoisted = lower.hoisted();
        let body = lower.tail(&f.body, quote!(Ok(Vec::new())));
        let args_param = if f.params > 0 { quote!(args) } else { quote!(_args) };
        let code = quote!(#params #first #hoisted #body);
        let facts = facts(&code);
        let (ep, tx) = used_names(facts);
        let created = facts.needs_created();
        (Lowered { ep, tx, args: args_param, code, waits: facts.waits, created }, lower.called)
    }

    /// `onCreate`: the initializers of the globals from `early` on, in order, then the body.
    fn on_create(&self, e: EndpointId, waits: &Waits, early: usize) -> TokenStream {
        let rt = rt();
        let ep = &self.p.endpoints[e];
        let empty = Function {
            name: "onCreate".into(),
            public: false,
            params: 0,
            returns: Vec::new(),
            locals: Vec::new(),
            body: Vec::new(),
            loc: crate::ir::Loc(waldo_grammar::Span::new(0, 0)),
        };
        let f = ep.on_create.as_ref().unwrap_or(&empty);
        let (Lowered { ep: ep_name, tx, args: args_param, code, .. }, _) =
            self.function_body(e, f, waits, |lower| self.global_inits(e, lower, early..ep.globals.len()));
        let doc = if ep.globals[early..].iter().all(|g| g.init.is_none()) {
            quote!(#[doc = " `onCreate`."])
        } else {
            quote!(#[doc = " The globals' initializers, then `onCreate`."])
        };
        quote! {
            #doc
            async fn on_create(#ep_name: &#rt::Ep, #tx: &#rt::Tx, #args_param: #rt::Args) -> #rt::Returns {
                #code
            }
        }
    }

    /// The writes of the initializers of the globals in `range` that are not folded into the
    /// slots, in order.
    fn global_inits(
        &self,
        e: EndpointId,
        lower: &mut Lower<'_>,
        range: std::ops::Range<usize>,
    ) -> TokenStream {
        let ep = &self.p.endpoints[e];
        let peered = self.p.peered.len();
        let folded = literal_prefix(ep.globals.iter().map(|g| g.init.as_ref()));
        let mut inits = TokenStream::new();
        for (i, g) in ep.globals.iter().enumerate().take(range.end).skip(folded.max(range.start)) {
            if let Some(init) = &g.init {
                let v = lower.expr(init);
                let slot = peered + i;
                inits.extend(quote!(tx.write(&ep.core, #slot, #v).await?;));
            }
        }
        inits
    }

    /// A lowering context for initializers (no locals).
    fn init_lower<'a>(&'a self, e: EndpointId, waits: &'a Waits) -> Lower<'a> {
        Lower::new(self.p, &self.functions[e.index()], &waits.waits, BodyKind::Function, &[], &[], 0)
            .with_structs(&self.structs)
            .with_bare(&waits.bare)
    }

    /// The initializers that run before the endpoint is connected: the peered variables'
    /// (on each replica), then the globals' before `early`.
    fn init(&self, e: EndpointId, waits: &Waits, early: usize) -> TokenStream {
        let rt = rt();
        let mut lower = self.init_lower(e, waits);
        let mut code = TokenStream::new();
        for (i, v) in self.p.peered.iter().enumerate().skip(self.peered_folded()) {
            if let Some(init) = &v.var.init {
                let x = lower.expr(init);
                code.extend(quote!(tx.write_initial(&ep.core, #i, #x).await?;));
            }
        }
        code.extend(self.global_inits(e, &mut lower, 0..early));
        let (ep, tx) = used_names(facts(&code));
        quote! {
            /// The initializers that run before the endpoint is connected.
            async fn init(#ep: &#rt::Ep, #tx: &#rt::Tx, _args: #rt::Args) -> #rt::Returns {
                #code
                Ok(Vec::new())
            }
        }
    }

    /// The blocks this endpoint runs, and how the runtime runs each (in the order of
    /// `self.blocks`).
    fn block(
        &self,
        e: EndpointId,
        seq: &Sequence,
        b: usize,
        name: &Ident,
        waits: &Waits,
    ) -> (TokenStream, BlockRun) {
        let rt = rt();
        let block = &seq.blocks[b];
        let mut lower = Lower::new(
            self.p,
            &self.functions[e.index()],
            &waits.waits,
            BodyKind::Block,
            &block.locals,
            &block.body,
            0,
        )
        .with_structs(&self.structs)
        .with_bare(&waits.bare);
        // The sequence's returns and declarations get their starting values where it
        // starts (they arrive as Nothing).
        // Those that start with a literal or their type's starting value, from the first, go
        // in one `rt::ops::fill`; the others in order after them.
        let mut inits = TokenStream::new();
        if b == 0 {
            let mut fill = Vec::new();
            for (i, v) in seq.data.iter().enumerate().skip(seq.params) {
                let (x, literal) = match &v.init {
                    Some(init) => (lower.element(init), literal(init).is_some()),
                    None => (start_value(self.p, &self.structs, &v.ty), true),
                };
                if literal && fill.len() == i - seq.params {
                    fill.push(x);
                } else {
                    inits.extend(quote!(data[#i] = #x;));
                }
            }
            let first = seq.params;
            inits = match fill.as_slice() {
                [] => inits,
                [x] => quote!(data[#first] = #x; #inits),
                _ => quote!(#rt::ops::fill(data, #first, [#(#fill),*]); #inits),
            };
        }
        let hoisted = lower.hoisted();
        let body = lower.tail(&block.body, quote!(Ok(())));
        let mut code = quote!(#inits #hoisted #body);
        let mut facts = facts(&code);
        // A block that waits only for locks is a plain `fn`, restarted rather than suspended
        // when it must wait (it starts no sequence and calls nothing that waits).
        let mut run = if facts.waits { BlockRun::Wait } else { BlockRun::Now };
        if facts.waits && !lower.called.iter().any(|f| waits.waits[f.index()]) && !facts.elsewhere {
            let restarted = now_for_await(&code);
            let restarted_facts = self::facts(&restarted);
            if !restarted_facts.waits {
                (code, facts, run) = (restarted, restarted_facts, BlockRun::Restart);
            }
        }
        let (ep, tx) = used_names(facts);
        let data = if facts.data { quote!(data) } else { quote!(_data) };
        let doc = format!(
            " Block `{}.{}` of sequence `{}`.",
            self.p.endpoints[block.endpoint].name, block.name, seq.name
        );
        if run != BlockRun::Wait {
            let item = quote! {
                #[doc = #doc]
                fn #name(#ep: &#rt::Ep, #tx: &#rt::Tx, #data: #rt::Data<'_>) -> #rt::Flow<()> {
                    #code
                }
            };
            return (item, run);
        }
        let item = quote! {
            #[doc = #doc]
            async fn #name(#ep: &#rt::Ep, #tx: &#rt::Tx, #data: #rt::Data<'_>) -> #rt::Flow<()> {
                #code
            }
        };
        (item, run)
    }
}

/// How the runtime runs a block.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum BlockRun {
    /// A plain `fn`: it never waits.
    Now,
    /// A plain `fn` whose lock operations go through `rt::now`: when one must wait, the
    /// runtime undoes the block and runs it again once the lock may be free.
    Restart,
    /// An `async fn`.
    Wait,
}

/// Lowered code with each `operation.await` written `rt::now(operation)` (the operation: the
/// path, calls, method calls and indexing just before the `.await`). An `.await` whose
/// operation is not of that shape (an `async` block, a chain after a `?`) is left as it is,
/// and the caller then keeps the code `async`.
fn now_for_await(code: &TokenStream) -> TokenStream {
    use proc_macro2::{Delimiter, Group, Spacing, TokenTree};
    const KEYWORDS: [&str; 16] = [
        "in", "let", "if", "else", "match", "return", "while", "for", "mut", "ref", "loop", "break",
        "continue", "as", "move", "async",
    ];
    // Where the operation ending at `end` (exclusive) starts: back over names, `::`, `.`,
    // and argument or index groups.
    fn operation_start(tokens: &[TokenTree], end: usize) -> usize {
        let mut i = end;
        while i > 0 {
            let part = match &tokens[i - 1] {
                TokenTree::Ident(name) => !KEYWORDS.iter().any(|k| name == k),
                TokenTree::Group(g) => matches!(g.delimiter(), Delimiter::Parenthesis | Delimiter::Bracket),
                TokenTree::Punct(p) if p.as_char() == '.' => true,
                // Only a path's `::` (a joint `:` and the one after it), never a lone `:`.
                TokenTree::Punct(p) if p.as_char() == ':' => {
                    p.spacing() == Spacing::Joint
                        || (i >= 2
                            && matches!(&tokens[i - 2], TokenTree::Punct(q)
                                if q.as_char() == ':' && q.spacing() == Spacing::Joint))
                }
                _ => false,
            };
            if !part {
                break;
            }
            i -= 1;
        }
        i
    }
    let rt = rt();
    let mut out: Vec<TokenTree> = Vec::new();
    for t in code.clone() {
        let t = match t {
            TokenTree::Group(g) => {
                let mut inner = Group::new(g.delimiter(), now_for_await(&g.stream()));
                inner.set_span(g.span());
                TokenTree::Group(inner)
            }
            other => other,
        };
        if let TokenTree::Ident(i) = &t
            && i == "await"
            && matches!(out.last(), Some(TokenTree::Punct(p)) if p.as_char() == '.')
        {
            let dot = out.len() - 1;
            let start = operation_start(&out, dot);
            // An operation starts with a name or a path (`::`), not with a `.`.
            if start < dot && !matches!(&out[start], TokenTree::Punct(p) if p.as_char() == '.') {
                out.pop();
                let operation: TokenStream = out.drain(start..).collect();
                out.extend(quote!(#rt::now(#operation)));
                continue;
            }
        }
        out.push(t);
    }
    out.into_iter().collect()
}

/// Which functions of an endpoint may wait, and which of those are called without arguments
/// (`async fn f(ep, tx)`: they take none and do not call themselves).
pub(super) struct Waits {
    waits: Vec<bool>,
    bare: Vec<bool>,
    /// Functions that need the endpoint created and connected ([`Facts::needs_created`]).
    late: Vec<bool>,
}

/// What the first lowering of a function says about it ([`Gen::first_lowering`]): whether its own
/// code waits, whether it needs the endpoint created, and which functions it calls.
pub(super) struct Known {
    waits: bool,
    late: bool,
    called: Vec<FunctionId>,
}

/// What is known of an endpoint's functions once every one has been lowered once
/// ([`Gen::analysis`]), by function index.
pub(super) struct Analysis {
    waits: Waits,
    recursive: Vec<bool>,
    /// Whether the function's first lowering holds (it calls no function that waits).
    keep: Vec<bool>,
}

/// The name of the empty module that stands for the body of endpoint `e`'s module until the
/// printed parts replace it.
pub(super) fn body_marker(e: EndpointId) -> String {
    format!("__waldo_body_{}", e.index())
}

/// Whether function `f` calls itself, directly or through the functions it calls (`calls`:
/// the functions each one calls).
fn reaches(calls: &[Vec<FunctionId>], f: FunctionId) -> bool {
    let mut seen = vec![false; calls.len()];
    let mut todo: Vec<FunctionId> = calls[f.index()].clone();
    while let Some(g) = todo.pop() {
        if g == f {
            return true;
        }
        if !std::mem::replace(&mut seen[g.index()], true) {
            todo.extend(calls[g.index()].iter().copied());
        }
    }
    false
}

/// A lowered function body: the names of its `ep`, `tx` and `args` parameters, and its code.
pub(super) struct Lowered {
    ep: TokenStream,
    tx: TokenStream,
    args: TokenStream,
    code: TokenStream,
    /// Whether the code waits (has an `.await`).
    waits: bool,
    /// Whether the code needs the endpoint created ([`Facts::needs_created`]).
    created: bool,
}

/// How many of the variables with `inits`, from the first, have a literal initializer or none.
fn literal_prefix<'a>(inits: impl Iterator<Item = Option<&'a TExpr>>) -> usize {
    inits.take_while(|init| init.is_none_or(|x| literal(x).is_some())).count()
}

/// The value of a literal expression.
fn literal(x: &TExpr) -> Option<TokenStream> {
    let rt = rt();
    match &x.kind {
        TExprKind::Number(n) => Some(number(n.0)),
        TExprKind::Text(t) => Some(quote!(#rt::Value::text(#t))),
        TExprKind::Bool(b) => Some(quote!(#rt::Value::Bool(#b))),
        _ => None,
    }
}

/// The names to give a body's `ep` and `tx` parameters: `_`-prefixed when the body does not
/// use them.
fn used_names(facts: Facts) -> (TokenStream, TokenStream) {
    let ep = if facts.ep { quote!(ep) } else { quote!(_ep) };
    let tx = if facts.tx { quote!(tx) } else { quote!(_tx) };
    (ep, tx)
}

/// What a body's lowered code uses, found in one pass over its tokens (each pass copies
/// them).
#[derive(Clone, Copy, Default)]
struct Facts {
    ep: bool,
    tx: bool,
    data: bool,
    waits: bool,
    /// It waits for something other than a lock: a sequence, or a call that may go to
    /// another endpoint or to the host.
    elsewhere: bool,
    /// It has an effect (`print`, `signal`).
    effects: bool,
}

impl Facts {
    /// Whether the code needs its endpoint created and connected, so that it cannot run
    /// among the initializers before the connection: it starts a sequence, calls another
    /// endpoint or a host function, or has an effect that must commit with `onCreate` or not
    /// at all.
    fn needs_created(self) -> bool {
        self.elsewhere || self.effects
    }
}

fn facts(code: &TokenStream) -> Facts {
    fn scan(tokens: &TokenStream, f: &mut Facts) {
        for t in tokens.clone() {
            match t {
                proc_macro2::TokenTree::Ident(i) => {
                    if i == "ep" {
                        f.ep = true;
                    } else if i == "tx" {
                        f.tx = true;
                    } else if i == "data" {
                        f.data = true;
                    } else if i == "await" || i == "async" {
                        f.waits = true;
                    } else if i == "sequence" || i == "call_endpoint" || i == "call_function" {
                        f.elsewhere = true;
                    } else if i == "print" || i == "signal" {
                        f.effects = true;
                    }
                }
                proc_macro2::TokenTree::Group(g) => scan(&g.stream(), f),
                proc_macro2::TokenTree::Punct(_) | proc_macro2::TokenTree::Literal(_) => {}
            }
        }
    }
    let mut f = Facts::default();
    scan(code, &mut f);
    f
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::now_for_await;

    #[test]
    fn awaits_of_operations_become_rt_now() {
        let code = quote! {
            let x = ep.num(tx, 0).await? + rt::ops::len(tx, &ep.get(tx, 1).await?).await?;
            for item in rt::ops::iteration(tx, &xs).await? { data[0] = item; }
        };
        assert_eq!(
            now_for_await(&code).to_string(),
            quote! {
                let x = rt::now(ep.num(tx, 0))? + rt::now(rt::ops::len(tx, &rt::now(ep.get(tx, 1))?))?;
                for item in rt::now(rt::ops::iteration(tx, &xs))? { data[0] = item; }
            }
            .to_string()
        );
    }

    #[test]
    fn other_awaits_are_left_as_they_are() {
        // An async block, and a chain after a `?`: left for the caller to keep `async`.
        let block = quote!(let done = async { x }.await;);
        assert_eq!(now_for_await(&block).to_string(), block.to_string());
        let chain = now_for_await(&quote!(let y = f(tx).await?.g().await?;)).to_string();
        assert_eq!(chain, quote!(let y = rt::now(f(tx))?.g().await?;).to_string());
        // A lone `:` (a field) is no part of a path.
        let field = now_for_await(&quote!(S { field: f(tx).await? })).to_string();
        assert_eq!(field, quote!(S { field: rt::now(f(tx))? }).to_string());
    }
}
