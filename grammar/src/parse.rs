//! The parse facade: the only place that knows lalrpop exists.
//!
//! [`parse`] lexes the whole source, runs the generated parser with error recovery, and turns
//! every lalrpop error into a [`ParseError`] in exactly one function ([`from_lalrpop`]). The
//! "expected ..." lists are rewritten for people: terminal names lose their quotes, and a set
//! of tokens that together mean "an expression", "a type", "a statement" or "an operator" is
//! said that way.

use lalrpop_util::{ErrorRecovery, lalrpop_mod};

use crate::ast::{
    BinOp, Block, Expr, ExprKind, FileId, Ident, IfBranch, Span, Stmt, StmtKind, Type, TypeKind,
};
use crate::error::{MAX_SOURCE_LEN, ParseError, ParseErrorKind};
use crate::lexer::{self, LexError, Token};

lalrpop_mod!(
    #[allow(clippy::all, clippy::pedantic, unused_qualifications, unreachable_pub, rust_2018_idioms)]
    grammar
);

/// Parses one `.wld` source into a syntax tree.
///
/// Never panics and never stops at the first mistake: the tree contains `Error` nodes where
/// recovery skipped source, and every syntax error is returned, in source order, each with its
/// exact span. When the errors list is empty the tree is complete.
pub fn parse(source: &str, file: FileId) -> (crate::File, Vec<ParseError>) {
    let empty = |span: Span| crate::File {
        file,
        protocol: Ident::new("", 0, 0),
        endpoints: crate::EndpointDecl {
            kind: crate::EndpointDeclKind::Plain,
            names: Vec::new(),
            span: Span::new(0, 0),
        },
        items: Vec::new(),
        span,
    };
    if source.len() > MAX_SOURCE_LEN {
        let err = ParseError {
            kind: ParseErrorKind::FileTooLarge { len: source.len() },
            file,
            span: Span::new(0, 0),
        };
        return (empty(Span::new(0, 0)), vec![err]);
    }

    let (tokens, lex_errors) = lexer::lex(source);
    let errors: Vec<ParseError> = lex_errors
        .into_iter()
        .map(|(err, span)| ParseError { kind: ParseErrorKind::Lex(err), file, span })
        .collect();
    let mut ctx = Ctx::new(source, file, errors);
    let result = grammar::FileParser::new().parse(&mut ctx, tokens.into_iter().map(Ok::<_, LexError>));
    let mut errors = ctx.errors;
    let tree = match result {
        Ok(tree) => *tree,
        Err(err) => {
            if let Some(err) = from_lalrpop(source, file, err) {
                errors.push(err);
            }
            empty(Span::new(0, source.len()))
        }
    };
    errors.sort_by_key(|e| (e.span.start, e.span.end));
    errors.dedup();
    (tree, drop_cascades(source, errors))
}

/// Drops errors that are most likely consequences of an earlier one: an unexpected token, a
/// missing `;` or an early end of file on a line that already has an error. Errors the grammar
/// detects on purpose (a chained comparison, a bad escape...) are always kept.
fn drop_cascades(source: &str, errors: Vec<ParseError>) -> Vec<ParseError> {
    // Errors are sorted by offset, so lines are counted incrementally.
    let (mut line, mut counted_to) = (0, 0);
    let mut last_line = None;
    let mut kept = Vec::with_capacity(errors.len());
    for err in errors {
        let offset = err.span.lo().clamp(counted_to, source.len());
        line += source.as_bytes()[counted_to..offset].iter().filter(|&&b| b == b'\n').count();
        counted_to = offset;
        let is_recovery = matches!(
            err.kind,
            ParseErrorKind::UnexpectedToken { .. }
                | ParseErrorKind::MissingSemicolon { .. }
                | ParseErrorKind::UnexpectedEof { .. }
        );
        if is_recovery && last_line == Some(line) {
            continue;
        }
        last_line = Some(line);
        kept.push(err);
    }
    kept
}

type LalrpopError<'a> = lalrpop_util::ParseError<usize, Token<'a>, LexError>;

/// What the grammar's actions see: the source, the file id, the error sink, and the depth
/// of the nodes built so far.
///
/// Depth is bounded ([`MAX_DEPTH`]) so that no consumer of the tree — its `Drop` included,
/// which recurses — can overflow the stack on hostile input such as `1+1+...+1` with a
/// million terms. Depths live in a side table so the tree stays plain. The table relies on
/// a property of LR parsing: a node is built when its last token has just been read, so nodes
/// are built in non-decreasing order of their end offset, and two nodes ending at the same
/// offset are nested (one contains the other). The table therefore maps each end offset, in
/// increasing order, to the greatest depth of a node ending there, and a child's depth is
/// found by binary search on its end.
pub(crate) struct Ctx<'a> {
    pub(crate) src: &'a str,
    pub(crate) file: FileId,
    pub(crate) errors: Vec<ParseError>,
    depths: Vec<(u32, u32)>,
    too_deep_reported: bool,
}

/// The deepest nesting of expressions, statements and types accepted.
pub const MAX_DEPTH: u32 = 256;

impl<'a> Ctx<'a> {
    fn new(src: &'a str, file: FileId, errors: Vec<ParseError>) -> Self {
        Ctx { src, file, errors, depths: Vec::new(), too_deep_reported: false }
    }

    /// The depth of the node spanning `span` (an upper bound, which is all the limit needs).
    fn depth(&self, span: Span) -> u32 {
        // The child just built is the usual case.
        if let Some(&(end, depth)) = self.depths.last()
            && end == span.end
        {
            return depth;
        }
        match self.depths.binary_search_by_key(&span.end, |&(end, _)| end) {
            Ok(i) => self.depths[i].1,
            Err(_) => 1,
        }
    }

    /// Records the depth of a node whose children have depths `children`; `false` if it is
    /// too deep (then the error is reported once and the caller builds an `Error` node).
    fn admit(&mut self, span: Span, children: impl Iterator<Item = u32>) -> bool {
        let depth = 1 + children.max().unwrap_or(0);
        if depth > MAX_DEPTH {
            if !self.too_deep_reported {
                self.too_deep_reported = true;
                self.error(ParseErrorKind::TooDeep { limit: MAX_DEPTH }, span);
            }
            return false;
        }
        match self.depths.last_mut() {
            Some((end, d)) if *end == span.end => *d = (*d).max(depth),
            Some((end, _)) if *end > span.end => {
                // Not expected from an LR parse; keep the table sorted regardless.
                let i = self.depths.partition_point(|&(e, _)| e < span.end);
                match self.depths.get_mut(i) {
                    Some((e, d)) if *e == span.end => *d = (*d).max(depth),
                    _ => self.depths.insert(i, (span.end, depth)),
                }
            }
            _ => self.depths.push((span.end, depth)),
        }
        true
    }

    /// Builds an expression with children, bounded in depth.
    pub(crate) fn expr(&mut self, kind: ExprKind, span: Span) -> Expr {
        let d = |e: &Expr| self.depth(e.span);
        let deepest = match &kind {
            ExprKind::Unary { operand, .. } => d(operand),
            ExprKind::Binary { lhs, rhs, .. } => d(lhs).max(d(rhs)),
            ExprKind::Call { callee, args } => args.iter().map(d).fold(d(callee), u32::max),
            ExprKind::Field { base, .. } => d(base),
            ExprKind::Index { base, index } => d(base).max(d(index)),
            ExprKind::List(items) => items.iter().map(d).max().unwrap_or(0),
            ExprKind::Map(entries) => entries.iter().map(|(k, v)| d(k).max(d(v))).max().unwrap_or(0),
            _ => 0,
        };
        if self.admit(span, std::iter::once(deepest)) {
            Expr { kind, span }
        } else {
            Expr { kind: ExprKind::Error, span }
        }
    }

    /// Builds `lhs op rhs`.
    pub(crate) fn mk_bin(&mut self, op: BinOp, op_span: Span, lhs: Expr, rhs: Expr) -> Expr {
        let span = lhs.span.to(rhs.span);
        self.expr(ExprKind::Binary { op, op_span, lhs: Box::new(lhs), rhs: Box::new(rhs) }, span)
    }

    /// Builds a statement, bounded in depth (its expressions count).
    pub(crate) fn stmt(&mut self, kind: StmtKind, span: Span) -> Stmt {
        let d = |span: Span| self.depth(span);
        let deepest = match &kind {
            StmtKind::Decl(decl) => decl.init.as_ref().map_or(0, |e| d(e.span)),
            StmtKind::Assign { targets, value, .. } => {
                targets.iter().map(|t| d(t.span)).fold(d(value.span), u32::max)
            }
            StmtKind::Expr(e) => d(e.span),
            StmtKind::If { branches, else_branch } => branches
                .iter()
                .map(|b| d(b.cond.span).max(d(b.body.span)))
                .fold(else_branch.as_ref().map_or(0, |s| d(s.span)), u32::max),
            StmtKind::While { cond, body } => d(cond.span).max(d(body.span)),
            StmtKind::For { iter, body, .. } => d(iter.span).max(d(body.span)),
            StmtKind::Return(values) => values.iter().map(|v| d(v.span)).max().unwrap_or(0),
            StmtKind::Try { body, catches, finally } => catches
                .iter()
                .map(|c| d(c.body.span))
                .fold(d(body.span).max(finally.as_ref().map_or(0, |f| d(f.span))), u32::max),
            StmtKind::ExtAssign { source, target } | StmtKind::ExtCopy { source, target } => {
                d(source.span).max(d(target.span))
            }
            StmtKind::Block(b) => d(b.span),
            StmtKind::Break | StmtKind::Continue | StmtKind::Error => 0,
        };
        if self.admit(span, std::iter::once(deepest)) {
            Stmt { kind, span }
        } else {
            Stmt { kind: StmtKind::Error, span }
        }
    }

    /// Builds a block, bounded in depth.
    pub(crate) fn block(&mut self, stmts: Vec<Stmt>, span: Span) -> Block {
        let deepest = stmts.iter().map(|s| self.depth(s.span)).max().unwrap_or(0);
        if self.admit(span, std::iter::once(deepest)) {
            Block { stmts, span }
        } else {
            Block { stmts: Vec::new(), span }
        }
    }

    /// Builds a type, bounded in depth.
    pub(crate) fn ty(&mut self, kind: TypeKind, span: Span) -> Type {
        let d = |t: &Type| self.depth(t.span);
        let deepest = match &kind {
            TypeKind::List(t) | TypeKind::External(t) => d(t),
            TypeKind::Map(k, v) => d(k).max(d(v)),
            TypeKind::Function { params, returns } => params.iter().chain(returns).map(d).max().unwrap_or(0),
            _ => 0,
        };
        if self.admit(span, std::iter::once(deepest)) {
            Type { kind, span }
        } else {
            Type { kind: TypeKind::Nothing, span }
        }
    }

    /// Builds an `if` statement from its first branch and its tail.
    pub(crate) fn mk_if(&mut self, l: usize, cond: Expr, then: Stmt, tail: IfTail, r: usize) -> Stmt {
        let first = IfBranch { span: Span::new(l, then.span.hi()), cond, body: then };
        let mut branches = vec![first];
        branches.extend(tail.branches);
        self.stmt(StmtKind::If { branches, else_branch: tail.else_branch }, Span::new(l, r))
    }

    /// Records a mistake the grammar tolerates on purpose.
    pub(crate) fn error(&mut self, kind: ParseErrorKind, span: Span) {
        self.errors.push(ParseError { kind, file: self.file, span });
    }

    /// Records an error the parser recovered from. An error on a lexer failure token is not
    /// recorded again: the lexer already reported it.
    pub(crate) fn recovered(&mut self, recovery: ErrorRecovery<usize, Token<'_>, LexError>) {
        self.errors.extend(from_lalrpop(self.src, self.file, recovery.error));
    }

    /// Records an error found right after a complete statement or declaration ending at
    /// `after`. When `;` would have fitted there and the next token is on a later line (or
    /// closes the block), it is reported as a missing `;` at that point, the usual mistake;
    /// otherwise as the error it is.
    pub(crate) fn missing_semicolon(
        &mut self,
        after: usize,
        recovery: ErrorRecovery<usize, Token<'_>, LexError>,
    ) {
        let found = match &recovery.error {
            lalrpop_util::ParseError::UnrecognizedToken { token: (l, token, r), expected }
                if expected.iter().any(|e| e == "\";\"")
                    && !matches!(token, Token::Error(_))
                    && (matches!(token, Token::RBrace)
                        || self.src.get(after..*l).is_some_and(|gap| gap.contains('\n'))) =>
            {
                token.describe(self.src.get(*l..*r).unwrap_or(""))
            }
            lalrpop_util::ParseError::UnrecognizedEof { expected, .. }
                if expected.iter().any(|e| e == "\";\"") =>
            {
                "the end of the file".to_owned()
            }
            _ => return self.recovered(recovery),
        };
        self.error(ParseErrorKind::MissingSemicolon { found }, Span::new(after, after));
    }
}

/// The one conversion from lalrpop's error type. Returns `None` for an error on a lexer
/// failure token, which the lexer has already reported.
fn from_lalrpop(source: &str, file: FileId, err: LalrpopError<'_>) -> Option<ParseError> {
    let (kind, span) = match err {
        lalrpop_util::ParseError::InvalidToken { location } => {
            (ParseErrorKind::Lex(LexError::UnexpectedChar), Span::new(location, location + 1))
        }
        lalrpop_util::ParseError::UnrecognizedEof { location, expected } => (
            ParseErrorKind::UnexpectedEof { expected: readable_expected(&expected) },
            Span::new(location, location),
        ),
        lalrpop_util::ParseError::UnrecognizedToken { token: (l, token, r), expected } => {
            if let Token::Error(_) = token {
                return None;
            }
            let found = token.describe(source.get(l..r).unwrap_or(""));
            (
                ParseErrorKind::UnexpectedToken { found, expected: readable_expected(&expected) },
                Span::new(l, r),
            )
        }
        lalrpop_util::ParseError::ExtraToken { token: (l, token, r) } => {
            if let Token::Error(_) = token {
                return None;
            }
            let found = token.describe(source.get(l..r).unwrap_or(""));
            (
                ParseErrorKind::UnexpectedToken { found, expected: vec!["the end of the file".into()] },
                Span::new(l, r),
            )
        }
        lalrpop_util::ParseError::User { error } => (ParseErrorKind::Lex(error), Span::new(0, 0)),
    };
    Some(ParseError { kind, file, span })
}

/// Tokens that can start an expression (besides `{`, `not`, `-` and `onCreate`, which are
/// folded in).
const EXPR_START: &[&str] =
    &["an identifier", "a number", "a text literal", "True", "False", "self", "(", "["];
const TYPE_START: &[&str] =
    &["Number", "Text", "TrueFalse", "Nothing", "List", "Map", "Struct", "Function", "Endpoint", "External"];
const STMT_START: &[&str] =
    &["if", "while", "for", "break", "continue", "return", "try", "extAssign", "extCopy"];
const ASSIGN_OPS: &[&str] = &["=", "+=", "-=", "*=", "/=", "%="];
const OPERATORS: &[&str] =
    &["or", "and", "==", "!=", "<", "<=", ">", ">=", "+", "*", "/", "%", "(", "[", "."];

/// Rewrites lalrpop's expected-terminal list into words: `";"` becomes "`;`", and groups
/// that together mean "an expression" (and so on) are named that way.
fn readable_expected(expected: &[String]) -> Vec<String> {
    let mut names: Vec<String> = expected
        .iter()
        .map(|e| e.trim_matches('"').replace("\\\"", "\""))
        .filter(|e| e != "a character that is not valid here")
        .collect();
    let has_all = |names: &[String], group: &[&str]| group.iter().all(|g| names.iter().any(|n| n == g));
    let mut groups = Vec::new();
    if has_all(&names, STMT_START) && has_all(&names, EXPR_START) {
        groups.push("a statement");
        names.retain(|n| {
            !STMT_START.contains(&n.as_str())
                && !EXPR_START.contains(&n.as_str())
                && !TYPE_START.contains(&n.as_str())
                && !["{", "not", "-", "onCreate"].contains(&n.as_str())
        });
    }
    if has_all(&names, EXPR_START) {
        groups.push("an expression");
        names.retain(|n| {
            !EXPR_START.contains(&n.as_str()) && !["{", "not", "-", "onCreate"].contains(&n.as_str())
        });
    }
    if has_all(&names, TYPE_START) {
        groups.push("a type");
        names.retain(|n| !TYPE_START.contains(&n.as_str()));
    }
    if has_all(&names, OPERATORS) {
        groups.push("an operator");
        names.retain(|n| !OPERATORS.contains(&n.as_str()) && !["-", "in", "not"].contains(&n.as_str()));
    }
    if has_all(&names, ASSIGN_OPS) {
        groups.push("an assignment");
        names.retain(|n| !ASSIGN_OPS.contains(&n.as_str()));
    }
    let mut out: Vec<String> =
        names.into_iter().map(|n| if n.contains(' ') { n } else { format!("`{n}`") }).collect();
    out.extend(groups.into_iter().map(str::to_owned));
    out
}

/// The `elseIf`/`else` part of an `if`, built right to left by the grammar.
#[derive(Default)]
pub(crate) struct IfTail {
    pub(crate) branches: Vec<IfBranch>,
    pub(crate) else_branch: Option<Box<Stmt>>,
}

impl IfTail {
    /// Adds `elseIf (cond) body` (spanning `l..r`) in front of the tail.
    pub(crate) fn prepend(mut self, l: usize, cond: Expr, body: Stmt, r: usize) -> IfTail {
        self.branches.insert(0, IfBranch { cond, body, span: Span::new(l, r) });
        self
    }
}
#[cfg(test)]
mod tests {
    use std::mem::size_of;

    use crate::{Catch, Expr, Ident, Param, Span, Stmt, Type};

    /// The parser moves every node through its value stack, whose slots are as large as the
    /// largest node type; parse speed depends on keeping them small (LR moves dominate the
    /// profile). Grow one of these only with a reason.
    #[test]
    fn syntax_nodes_stay_small() {
        assert_eq!(size_of::<Span>(), 8);
        assert_eq!(size_of::<Ident>(), 24);
        assert!(size_of::<Expr>() <= 48, "Expr is {} bytes", size_of::<Expr>());
        assert!(size_of::<Type>() <= 56, "Type is {} bytes", size_of::<Type>());
        assert!(size_of::<Stmt>() <= 88, "Stmt is {} bytes", size_of::<Stmt>());
        assert!(size_of::<Param>() <= 88, "Param is {} bytes", size_of::<Param>());
        assert!(size_of::<Catch>() <= 96, "Catch is {} bytes", size_of::<Catch>());
    }
}
