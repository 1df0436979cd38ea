//! The builtins: `len`, `range`, `toText`, `print`, `id` and `signal`, each with the argument
//! types it takes.

use waldo_grammar as ast;
use waldo_grammar::Span;

use super::scope::Cx;
use super::{Checker, texpr};
use crate::codes::*;
use crate::ir::*;

impl Checker<'_> {
    pub(super) fn builtin(&mut self, cx: &mut Cx, b: Builtin, args: &[ast::Expr], span: Span) -> TExpr {
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
