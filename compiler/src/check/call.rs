//! Calls: of functions, sequences (started from their first block's endpoint) and Function
//! values; methods of Lists, Maps and Endpoints; calls of another endpoint's public functions,
//! resolved when the checker can tell which function it is and left to the runtime otherwise.

use waldo_grammar as ast;
use waldo_grammar::{ExprKind, Span};

use super::error::{Called, CheckError};
use super::scope::{Binding, Cx};
use super::{Checker, error_expr, texpr};
use crate::ir::*;

impl Checker<'_> {
    /// Checks arguments against parameter types.
    pub(super) fn args(
        &mut self,
        cx: &mut Cx,
        args: &[ast::Expr],
        params: &[Ty],
        callee: Called,
        span: Span,
    ) -> Vec<TExpr> {
        if args.len() != params.len() {
            self.report(CheckError::ArgCount { callee, expected: params.len(), given: args.len(), span });
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
                    let args = self.args(cx, args, &params, Called::Function(name.name.to_string()), span);
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
                        self.report(CheckError::WrongStarter {
                            sequence: name.name.to_string(),
                            starter: self.endpoints[starter].name.clone(),
                            here: self.endpoints[cx.endpoint].name.clone(),
                            span: callee.span,
                            first_block: self.sequences[s].blocks[0].2,
                        });
                    }
                    let args = self.args(cx, args, &params, Called::Sequence(name.name.to_string()), span);
                    texpr(TExprKind::Call(Box::new(Callee::Sequence(s)), args), ret, span)
                }
                Some(Binding::OnCreate) => {
                    self.report(CheckError::OnCreateCalled { span: callee.span });
                    error_expr(span)
                }
                Some(Binding::Builtin(b)) => self.builtin(cx, b, args, span),
                Some(Binding::Var(v)) => {
                    let target = self.expr(cx, callee, None);
                    let _ = v;
                    self.call_value(cx, target, args, span)
                }
                Some(Binding::Exception) => {
                    self.report(CheckError::ExceptionCalled {
                        name: name.name.to_string(),
                        span: callee.span,
                    });
                    error_expr(span)
                }
                None => {
                    if name.as_str() == "onCreate" {
                        self.report(CheckError::OnCreateCalled { span: callee.span });
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
                let args = self.args(cx, args, &sig.params, Called::FunctionValue, span);
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
                self.report(CheckError::NotCallable { ty: other, span: target.loc.0 });
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
                    if !cx.code_visible {
                        self.report(CheckError::IdInPeered { span });
                    }
                    self.args(cx, args, &[], Called::Method("id"), span);
                    return texpr(TExprKind::Call(method(Method::Id), Vec::new()), Ty::Text, span);
                }
                self.endpoint_call(cx, recv, name, args, span)
            }
            Ty::List(elem) => match name.as_str() {
                "append" => {
                    let args = self.args(cx, args, &[(*elem).clone()], Called::Method("append"), span);
                    self.container_write(cx, &recv);
                    texpr(TExprKind::Call(method(Method::Append), args), Ty::Nothing, span)
                }
                "insert" => {
                    let args =
                        self.args(cx, args, &[Ty::Number, (*elem).clone()], Called::Method("insert"), span);
                    self.container_write(cx, &recv);
                    texpr(TExprKind::Call(method(Method::Insert), args), Ty::Nothing, span)
                }
                "remove" => {
                    let args = self.args(cx, args, &[Ty::Number], Called::Method("remove"), span);
                    self.container_write(cx, &recv);
                    texpr(TExprKind::Call(method(Method::RemoveIndex), args), Ty::Nothing, span)
                }
                _ => self.no_method(cx, &recv.ty, name, args, span),
            },
            Ty::Map(key, _) => match name.as_str() {
                "remove" => {
                    let args = self.args(cx, args, &[(*key).clone()], Called::Method("remove"), span);
                    self.container_write(cx, &recv);
                    texpr(TExprKind::Call(method(Method::RemoveKey), args), Ty::Nothing, span)
                }
                _ => self.no_method(cx, &recv.ty, name, args, span),
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
                        self.report(CheckError::UnknownFieldCalled {
                            struct_name: self.structs[id].name.clone(),
                            field: name.name.to_string(),
                            span: name.span,
                        });
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
            other => self.no_method(cx, &other, name, args, span),
        }
    }

    /// Reports a method that values of type `ty` do not have (the help line depends on the
    /// type: Lists, Maps or anything else).
    fn no_method(
        &mut self,
        cx: &mut Cx,
        ty: &Ty,
        name: &ast::Ident,
        args: &[ast::Expr],
        span: Span,
    ) -> TExpr {
        self.report(CheckError::NoMethod { ty: ty.clone(), method: name.name.to_string(), span: name.span });
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
                    self.report(CheckError::PrivateFunction {
                        name: name.name.to_string(),
                        endpoint: self.endpoints[e].name.clone(),
                        span: name.span,
                        declared: self.ep(e).functions[f].span,
                    });
                    return error_expr(span);
                }
                None => {
                    self.report(CheckError::NoPublicFunction {
                        name: name.name.to_string(),
                        endpoint: self.endpoints[e].name.clone(),
                        span: name.span,
                    });
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
            let args = self.args(cx, args, &params, Called::EndpointFunction(name.name.to_string()), span);
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
