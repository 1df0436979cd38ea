//! The builtins: `len`, `range`, `toText`, `print`, `id` and `signal`, each with the argument
//! types it takes.

use waldo_grammar as ast;
use waldo_grammar::Span;

use super::error::{Called, CheckError};
use super::scope::Cx;
use super::{Checker, texpr};
use crate::ir::*;

impl Checker<'_> {
    pub(super) fn builtin(&mut self, cx: &mut Cx, b: Builtin, args: &[ast::Expr], span: Span) -> TExpr {
        let call = |kind_args: Vec<TExpr>, ty: Ty| {
            texpr(TExprKind::Call(Box::new(Callee::Builtin(b)), kind_args), ty, span)
        };
        match b {
            Builtin::Len => {
                let [arg] = args else {
                    let out = self.args(cx, args, &[Ty::Error], Called::Builtin("len"), span);
                    return call(out, Ty::Number);
                };
                let t = self.expr(cx, arg, None);
                let t = self.deref(t);
                if !matches!(t.ty, Ty::List(_) | Ty::Map(..) | Ty::Text | Ty::Error | Ty::Any) {
                    self.report(CheckError::LenArgument { ty: t.ty.clone(), span: arg.span });
                }
                call(vec![t], Ty::Number)
            }
            Builtin::Range => {
                let params = if args.len() == 3 { vec![Ty::Number; 3] } else { vec![Ty::Number; 2] };
                let out = self.args(cx, args, &params, Called::Builtin("range"), span);
                call(out, Ty::List(Box::new(Ty::Number)))
            }
            Builtin::ToText => {
                let [arg] = args else {
                    let out = self.args(cx, args, &[Ty::Error], Called::Builtin("toText"), span);
                    return call(out, Ty::Text);
                };
                let t = self.expr(cx, arg, None);
                let t = self.deref(t);
                if !matches!(t.ty, Ty::Number | Ty::Text | Ty::Bool | Ty::Error | Ty::Any) {
                    self.report(CheckError::ToTextArgument { ty: t.ty.clone(), span: arg.span });
                }
                call(vec![t], Ty::Text)
            }
            Builtin::Print => {
                let [arg] = args else {
                    let out = self.args(cx, args, &[Ty::Error], Called::Builtin("print"), span);
                    return call(out, Ty::Nothing);
                };
                let t = self.expr(cx, arg, None);
                let t = self.deref(t);
                if matches!(t.ty, Ty::Nothing | Ty::Tuple(_)) {
                    self.report(CheckError::PrintNoValue { span: arg.span });
                }
                call(vec![t], Ty::Nothing)
            }
            Builtin::Id => {
                if !cx.code_visible {
                    self.report(CheckError::IdInPeered { span });
                }
                let out = self.args(cx, args, &[], Called::Builtin("id"), span);
                call(out, Ty::Text)
            }
            Builtin::Signal => {
                let Some((first, rest)) = args.split_first() else {
                    self.report(CheckError::SignalWithoutFunction { span });
                    return call(Vec::new(), Ty::Nothing);
                };
                let f = self.expr(cx, first, None);
                let f = self.deref(f);
                let mut out = Vec::new();
                match f.ty.clone() {
                    Ty::Function(sig) => {
                        out.push(f);
                        out.extend(self.args(cx, rest, &sig.params, Called::Signalled, span));
                    }
                    Ty::Error | Ty::Any => {
                        self.unknown_result(&f, first.span);
                        out.push(f);
                        for a in rest {
                            out.push(self.expr(cx, a, None));
                        }
                    }
                    other => {
                        self.report(CheckError::SignalNotFunction { ty: other, span: first.span });
                        out.push(f);
                    }
                }
                call(out, Ty::Nothing)
            }
        }
    }
}
