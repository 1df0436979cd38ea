//! Syntax errors as data: a kind, a file and a span. Rendering (codes, colours, snippets)
//! happens at the edge, in `waldo-compiler`.

use std::fmt;

use crate::ast::{FileId, Span};
use crate::lexer::{Legacy, LexError};

/// One syntax error.
#[derive(Clone, Debug, PartialEq)]
pub struct ParseError {
    /// What is wrong.
    pub kind: ParseErrorKind,
    /// The file it is in.
    pub file: FileId,
    /// Exactly where.
    pub span: Span,
}

/// Every syntax mistake the front end reports.
#[derive(Clone, Debug, PartialEq)]
pub enum ParseErrorKind {
    /// A token that cannot come here.
    UnexpectedToken {
        /// The token found, described for people ("keyword `if`", "`;`").
        found: String,
        /// What could have come instead, in readable terms.
        expected: Vec<String>,
    },
    /// The file ends before the construct does.
    UnexpectedEof {
        /// What could have come instead, in readable terms.
        expected: Vec<String>,
    },
    /// A statement or declaration not ended by `;` (the span is where `;` belongs).
    MissingSemicolon {
        /// The token found instead, described for people.
        found: String,
    },
    /// A lexing failure: a bad character, an unterminated literal or comment, a bad escape.
    Lex(LexError),
    /// Syntax of Waldo 2013 that this language does not have.
    Legacy(Legacy),
    /// The file does not start with the protocol's name.
    MissingProtocolName,
    /// More than two `Endpoint` declarations.
    TooManyEndpoints {
        /// How many were declared.
        count: usize,
    },
    /// `Function f(...)` in an endpoint body without `Public` or `Private`.
    MissingVisibility,
    /// The left of an assignment is not a place (a name, field, index or call).
    InvalidAssignTarget,
    /// `a, b += e;`: only `=` can assign several targets.
    CompoundMultiAssign,
    /// `a < b < c`: comparisons do not chain.
    ChainedComparison,
    /// `catch (X as e)` where `X` is not an exception kind.
    UnknownExceptionKind {
        /// The name written.
        name: String,
    },
    /// `try { }` with neither `catch` nor `finally`.
    TryWithoutHandler,
    /// `Struct S { }` with no field.
    EmptyStruct,
    /// Expressions, statements or types nested deeper than the front end accepts.
    TooDeep {
        /// The deepest nesting accepted.
        limit: u32,
    },
    /// The source is larger than the front end accepts.
    FileTooLarge {
        /// The size of the source, in bytes.
        len: usize,
    },
}

/// The largest source accepted, in bytes (spans and line tables stay far from overflow).
pub const MAX_SOURCE_LEN: usize = 64 << 20;

impl fmt::Display for ParseErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseErrorKind::UnexpectedToken { found, expected } => {
                write!(f, "unexpected {found}")?;
                if !expected.is_empty() {
                    write!(f, ", expected {}", one_of(expected))?;
                }
                Ok(())
            }
            ParseErrorKind::UnexpectedEof { expected } => {
                write!(f, "unexpected end of file")?;
                if !expected.is_empty() {
                    write!(f, ", expected {}", one_of(expected))?;
                }
                Ok(())
            }
            ParseErrorKind::MissingSemicolon { found } => write!(f, "expected `;`, found {found}"),
            ParseErrorKind::Lex(err) => match err {
                LexError::UnexpectedChar => write!(f, "unexpected character"),
                LexError::UnterminatedText => write!(f, "unterminated text literal"),
                LexError::BadEscape { escaped, .. } => {
                    write!(f, "unknown escape `\\{escaped}` in text literal")
                }
                LexError::UnterminatedComment => write!(f, "unterminated `/*` comment"),
                LexError::NumberTooLarge => write!(f, "number literal is too large"),
                LexError::Legacy(legacy) => {
                    write!(f, "`{}` is legacy Waldo syntax and is not supported", legacy.as_str())
                }
            },
            ParseErrorKind::Legacy(legacy) => {
                write!(f, "`{}` is legacy Waldo syntax and is not supported", legacy.as_str())
            }
            ParseErrorKind::MissingProtocolName => write!(f, "missing protocol name"),
            ParseErrorKind::TooManyEndpoints { count } => {
                write!(f, "a protocol has one or two endpoints, this one declares {count}")
            }
            ParseErrorKind::MissingVisibility => write!(f, "function without `Public` or `Private`"),
            ParseErrorKind::InvalidAssignTarget => write!(f, "cannot assign to this expression"),
            ParseErrorKind::CompoundMultiAssign => {
                write!(f, "only `=` can assign to several targets at once")
            }
            ParseErrorKind::ChainedComparison => write!(f, "comparison operators cannot be chained"),
            ParseErrorKind::UnknownExceptionKind { name } => {
                write!(f, "`{name}` is not an exception kind")
            }
            ParseErrorKind::TryWithoutHandler => write!(f, "`try` without `catch` or `finally`"),
            ParseErrorKind::EmptyStruct => write!(f, "a struct needs at least one field"),
            ParseErrorKind::TooDeep { limit } => {
                write!(f, "nested too deeply (the limit is {limit} levels)")
            }
            ParseErrorKind::FileTooLarge { len } => {
                write!(f, "file is too large ({len} bytes, the limit is {MAX_SOURCE_LEN})")
            }
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.kind.fmt(f)
    }
}

impl std::error::Error for ParseError {}

/// "`a`", "`a` or `b`", "`a`, `b` or `c`" (and "one of ..." beyond that).
fn one_of(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] if items.len() <= 3 => format!("{} or {last}", init.join(", ")),
        _ => format!("one of {}", items.join(", ")),
    }
}
