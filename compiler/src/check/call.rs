//! Calls: of functions, sequences (started from their first block's endpoint) and Function
//! values; methods of Lists, Maps and Endpoints; calls of another endpoint's public functions,
//! resolved when the checker can tell which function it is and left to the runtime otherwise.

use waldo_grammar as ast;
use waldo_grammar::{ExprKind, Span};

use super::scope::{Binding, Cx};
use super::{Checker, error_expr, texpr};
use crate::codes::*;
use crate::diagnostics::Label;
use crate::ir::*;

impl Checker<'_> {
    /// Checks arguments against parameter types.
    pub(super) fn args(
        &mut self,
        cx: &mut Cx,
        args: &[ast::Expr],
        params: &[Ty],
        what: &str,
        span: Span,
    ) -> Vec<TExpr> {
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

    pub(super) fn call(&mut self, cx: &mut Cx, callee: &ast::Expr, args: &[ast::Expr], span: Span) -> TExpr {
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
            None => self.endpoint_ids().collect(),
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
}
