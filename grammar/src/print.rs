//! `Display` for expressions and types, fully parenthesised, so that the grouping the parser
//! chose is visible (`a or (b and c)`). Used by tests and by diagnostics that quote code.

use std::fmt;

use crate::ast::{Expr, ExprKind, Type, TypeKind};

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ExprKind::Number(n) => write!(f, "{n}"),
            ExprKind::Text(t) => write!(f, "{t:?}"),
            ExprKind::Bool(true) => write!(f, "True"),
            ExprKind::Bool(false) => write!(f, "False"),
            ExprKind::Name(name) => write!(f, "{}", name.name),
            ExprKind::SelfRef => write!(f, "self"),
            ExprKind::List(items) => {
                write!(f, "[")?;
                comma_list(f, items)?;
                write!(f, "]")
            }
            ExprKind::Map(entries) => {
                write!(f, "{{")?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                write!(f, "}}")
            }
            ExprKind::Unary { op, operand } => match op {
                crate::UnaryOp::Neg => write!(f, "(-{operand})"),
                crate::UnaryOp::Not => write!(f, "(not {operand})"),
            },
            ExprKind::Binary { op, lhs, rhs, .. } => write!(f, "({lhs} {} {rhs})", op.as_str()),
            ExprKind::Call { callee, args } => {
                write!(f, "{callee}(")?;
                comma_list(f, args)?;
                write!(f, ")")
            }
            ExprKind::Field { base, name } => write!(f, "{base}.{}", name.name),
            ExprKind::Index { base, index } => write!(f, "{base}[{index}]"),
            ExprKind::Error => write!(f, "<error>"),
        }
    }
}

fn comma_list<T: fmt::Display>(f: &mut fmt::Formatter<'_>, items: &[T]) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            write!(f, ", ")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            TypeKind::Number => write!(f, "Number"),
            TypeKind::Text => write!(f, "Text"),
            TypeKind::TrueFalse => write!(f, "TrueFalse"),
            TypeKind::Nothing => write!(f, "Nothing"),
            TypeKind::Endpoint => write!(f, "Endpoint"),
            TypeKind::List(t) => write!(f, "List(element: {t})"),
            TypeKind::Map(k, v) => write!(f, "Map(from: {k}, to: {v})"),
            TypeKind::Struct(name) => write!(f, "Struct {}", name.name),
            TypeKind::Function { params, returns } => {
                write!(f, "Function(in: ")?;
                if params.is_empty() {
                    write!(f, "Nothing")?;
                } else {
                    comma_list(f, params)?;
                }
                write!(f, "; returns: ")?;
                if returns.is_empty() {
                    write!(f, "Nothing")?;
                } else {
                    comma_list(f, returns)?;
                }
                write!(f, ")")
            }
            TypeKind::External(t) => write!(f, "External {t}"),
        }
    }
}
