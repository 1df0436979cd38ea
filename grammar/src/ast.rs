//! The syntax tree of one `.wld` file.
//!
//! The tree mirrors the source: it keeps every item in the order written, every name with its
//! span, and no resolution or typing (the checker in `waldo-compiler` adds those). Every node
//! carries the byte range it was parsed from, so any later diagnostic can point at the exact
//! source text. Nodes produced by error recovery are explicit `Error` variants, never guesses.

use std::fmt;

/// Identifies one source file among those a compiler session has loaded.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct FileId(pub u32);

/// A half-open byte range `start..end` in one source file.
///
/// Offsets are `u32`: sources are limited to [`crate::MAX_SOURCE_LEN`] bytes, and small spans
/// keep every node (and the parser's value stack) small.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Span {
    /// Offset of the first byte.
    pub start: u32,
    /// Offset one past the last byte.
    pub end: u32,
}

impl Span {
    /// The span `start..end`. Offsets beyond `u32::MAX` saturate; the parser never makes
    /// them, as it refuses larger sources.
    pub fn new(start: usize, end: usize) -> Self {
        let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Span { start: clamp(start), end: clamp(end) }
    }

    /// The smallest span covering both `self` and `other`.
    pub fn to(self, other: Span) -> Span {
        Span { start: self.start.min(other.start), end: self.end.max(other.end) }
    }

    /// The span as a `Range` of byte offsets, for slicing the source.
    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }

    /// Offset of the first byte, as a `usize`.
    pub fn lo(self) -> usize {
        self.start as usize
    }

    /// Offset one past the last byte, as a `usize`.
    pub fn hi(self) -> usize {
        self.end as usize
    }
}

impl fmt::Debug for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

/// A name as written, with where it was written.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Ident {
    /// The name itself.
    pub name: Box<str>,
    /// Where the name is in the source.
    pub span: Span,
}

impl Ident {
    /// A name spanning `start..end`.
    pub fn new(name: &str, start: usize, end: usize) -> Self {
        Ident { name: name.into(), span: Span::new(start, end) }
    }

    /// The name itself.
    pub fn as_str(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}@{:?}", self.name, self.span)
    }
}

/// A whole `.wld` file: one protocol.
#[derive(Clone, Debug, PartialEq)]
pub struct File {
    /// The file this tree was parsed from.
    pub file: FileId,
    /// The protocol's name, the first token of the file.
    pub protocol: Ident,
    /// The `Endpoint` or `Symmetric` declaration.
    pub endpoints: EndpointDecl,
    /// Top items and endpoint bodies, in source order.
    pub items: Vec<Item>,
    /// The whole file.
    pub span: Span,
}

/// How the endpoints were declared.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum EndpointDeclKind {
    /// `Endpoint A;` or `Endpoint A; Endpoint B;`.
    Plain,
    /// `Symmetric A, B;`: two endpoints sharing one body, mirrored.
    Symmetric,
}

/// The endpoint declaration that follows the protocol name.
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointDecl {
    /// Plain or symmetric.
    pub kind: EndpointDeclKind,
    /// One or two endpoint names, in declaration order.
    pub names: Vec<Ident>,
    /// The whole declaration.
    pub span: Span,
}

/// A top-level item.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    /// `Sequences { ... }`.
    Sequences(SequencesSection),
    /// `Struct S { ... }`.
    Struct(StructDecl),
    /// `Peered { ... }`.
    Peered(PeeredSection),
    /// `Sequence S(...) { ... }`.
    Sequence(Box<SequenceDef>),
    /// `A { ... }`: the body of endpoint `A`.
    Endpoint(EndpointBody),
    /// Source that could not be parsed (a syntax error was reported for it).
    Error(Span),
}

impl Item {
    /// The span of the item.
    pub fn span(&self) -> Span {
        match self {
            Item::Sequences(s) => s.span,
            Item::Struct(s) => s.span,
            Item::Peered(p) => p.span,
            Item::Sequence(s) => s.span,
            Item::Endpoint(e) => e.span,
            Item::Error(span) => *span,
        }
    }
}

/// The `Sequences { ... }` section: the block order of each sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct SequencesSection {
    /// One entry per listed sequence.
    pub entries: Vec<SequenceOrder>,
    /// The whole section.
    pub span: Span,
}

/// `Name: A.x -> B.y -> ...;`
#[derive(Clone, Debug, PartialEq)]
pub struct SequenceOrder {
    /// The sequence's name.
    pub name: Ident,
    /// Its blocks, in order.
    pub blocks: Vec<BlockRef>,
    /// The whole entry.
    pub span: Span,
}

/// `Endpoint.block` in a `Sequences` section.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockRef {
    /// The endpoint that runs the block.
    pub endpoint: Ident,
    /// The block's name.
    pub block: Ident,
    /// `Endpoint.block`.
    pub span: Span,
}

/// `Struct S { T a; ... }`.
#[derive(Clone, Debug, PartialEq)]
pub struct StructDecl {
    /// The struct's name.
    pub name: Ident,
    /// Its fields, in order.
    pub fields: Vec<Param>,
    /// The whole declaration.
    pub span: Span,
}

/// `Peered { ... }`: data replicated on both endpoints.
#[derive(Clone, Debug, PartialEq)]
pub struct PeeredSection {
    /// The peered variables.
    pub vars: Vec<PeeredVar>,
    /// The whole section.
    pub span: Span,
}

/// One peered variable, with its optional `controls` owner.
#[derive(Clone, Debug, PartialEq)]
pub struct PeeredVar {
    /// `A controls` or `Nothing controls`, if written.
    pub owner: Option<Owner>,
    /// The declaration.
    pub decl: Box<VarDecl>,
    /// The whole entry, owner included.
    pub span: Span,
}

/// The owner in `X controls T name;`.
#[derive(Clone, Debug, PartialEq)]
pub enum Owner {
    /// `A controls`: only code running on endpoint `A` may write.
    Endpoint(Ident),
    /// `Nothing controls`: either side may write (the same as no owner).
    Nothing(Span),
}

/// `Sequence S(params) returns ... { locals; blocks }`.
#[derive(Clone, Debug, PartialEq)]
pub struct SequenceDef {
    /// The sequence's name.
    pub name: Ident,
    /// Its parameters (sequence-local data).
    pub params: Vec<Param>,
    /// `None` without a `returns` clause; `Some(vec![])` for `returns` with nothing after it.
    pub returns: Option<Vec<Param>>,
    /// Sequence-local declarations at the top of the definition.
    pub locals: Vec<VarDecl>,
    /// The blocks, in definition order.
    pub blocks: Vec<SeqBlock>,
    /// The whole definition.
    pub span: Span,
}

/// `A.name { ... }` inside a sequence definition.
#[derive(Clone, Debug, PartialEq)]
pub struct SeqBlock {
    /// The endpoint that runs the block.
    pub endpoint: Ident,
    /// The block's name.
    pub name: Ident,
    /// Its statements.
    pub body: Block,
    /// The whole block.
    pub span: Span,
}

/// `A { members }`: the body of an endpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointBody {
    /// The endpoint's name.
    pub name: Ident,
    /// Its members, in order.
    pub members: Vec<Member>,
    /// The whole body.
    pub span: Span,
}

/// One member of an endpoint body.
#[derive(Clone, Debug, PartialEq)]
pub enum Member {
    /// Endpoint-global data.
    Global(Box<VarDecl>),
    /// `onCreate(...) { ... }`.
    OnCreate(Box<OnCreate>),
    /// A `Public` or `Private` function.
    Function(Box<FunctionDef>),
    /// Source that could not be parsed (a syntax error was reported for it).
    Error(Span),
}

/// `onCreate(params) { ... }`.
#[derive(Clone, Debug, PartialEq)]
pub struct OnCreate {
    /// The span of the `onCreate` keyword.
    pub keyword: Span,
    /// Arguments the host passes when it creates the endpoint.
    pub params: Vec<Param>,
    /// Its statements.
    pub body: Block,
    /// The whole member.
    pub span: Span,
}

/// `Public` or `Private`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Visibility {
    /// Callable by the host and by other endpoints on the same host.
    Public,
    /// Callable only from the same endpoint.
    Private,
}

/// `Public Function f(params) returns T1, T2 { ... }`.
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionDef {
    /// `Public` or `Private`.
    pub visibility: Visibility,
    /// The function's name.
    pub name: Ident,
    /// Its parameters.
    pub params: Vec<Param>,
    /// Its return types; empty when it returns nothing.
    pub returns: Vec<Type>,
    /// Its statements.
    pub body: Block,
    /// The whole function.
    pub span: Span,
}

/// `T name`: a parameter, a named return value or a struct field.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// Its type.
    pub ty: Type,
    /// Its name.
    pub name: Ident,
    /// `T name`.
    pub span: Span,
}

/// `T name = init;`: a declaration of a variable.
#[derive(Clone, Debug, PartialEq)]
pub struct VarDecl {
    /// Its type.
    pub ty: Type,
    /// Its name.
    pub name: Ident,
    /// The initializer, if any.
    pub init: Option<Expr>,
    /// The whole declaration, `;` included.
    pub span: Span,
}

/// A type as written.
#[derive(Clone, Debug, PartialEq)]
pub struct Type {
    /// Which type.
    pub kind: TypeKind,
    /// Where it is written.
    pub span: Span,
}

/// The types (the book's language chapter, "Types").
#[derive(Clone, Debug, PartialEq)]
pub enum TypeKind {
    /// `Number`.
    Number,
    /// `Text`.
    Text,
    /// `TrueFalse`.
    TrueFalse,
    /// `Nothing`.
    Nothing,
    /// `Endpoint`.
    Endpoint,
    /// `List(element: T)`.
    List(Box<Type>),
    /// `Map(from: K, to: V)`.
    Map(Box<Type>, Box<Type>),
    /// `Struct S`.
    Struct(Ident),
    /// `Function(in: ...; returns: ...)`, each list as written (`in: Nothing` is kept).
    Function {
        /// The `in:` types, empty when omitted.
        params: Vec<Type>,
        /// The `returns:` types, empty when omitted.
        returns: Vec<Type>,
    },
    /// `External T`.
    External(Box<Type>),
}

/// A block of statements in braces.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    /// The statements, in order.
    pub stmts: Vec<Stmt>,
    /// From `{` to `}`.
    pub span: Span,
}

/// A statement.
#[derive(Clone, Debug, PartialEq)]
pub struct Stmt {
    /// Which statement.
    pub kind: StmtKind,
    /// The whole statement.
    pub span: Span,
}

/// An assignment operator.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum AssignOp {
    /// `=`
    Assign,
    /// `+=`
    Add,
    /// `-=`
    Sub,
    /// `*=`
    Mul,
    /// `/=`
    Div,
    /// `%=`
    Rem,
}

impl AssignOp {
    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            AssignOp::Assign => "=",
            AssignOp::Add => "+=",
            AssignOp::Sub => "-=",
            AssignOp::Mul => "*=",
            AssignOp::Div => "/=",
            AssignOp::Rem => "%=",
        }
    }

    /// The binary operator a compound assignment applies (`+=` applies `+`).
    pub fn binary(self) -> Option<BinOp> {
        match self {
            AssignOp::Assign => None,
            AssignOp::Add => Some(BinOp::Add),
            AssignOp::Sub => Some(BinOp::Sub),
            AssignOp::Mul => Some(BinOp::Mul),
            AssignOp::Div => Some(BinOp::Div),
            AssignOp::Rem => Some(BinOp::Rem),
        }
    }
}

/// The statements (the book's language chapter, "Statements").
#[derive(Clone, Debug, PartialEq)]
pub enum StmtKind {
    /// `T x = e;`
    Decl(Box<VarDecl>),
    /// `a op= e;` with one target, or `a, b = e;` with several (then `op` is `=`).
    Assign {
        /// The places written, in order (each a name, field, index or call).
        targets: Vec<Expr>,
        /// The operator.
        op: AssignOp,
        /// The value assigned.
        value: Expr,
    },
    /// `e;`
    Expr(Expr),
    /// `if (c) s elseIf (c) s ... else s`.
    If {
        /// The `if` branch then each `elseIf`, in order.
        branches: Vec<IfBranch>,
        /// The `else` statement, if any.
        else_branch: Option<Box<Stmt>>,
    },
    /// `while (c) s`.
    While {
        /// The condition.
        cond: Expr,
        /// The body.
        body: Box<Stmt>,
    },
    /// `for (T x in e) s` or `for (x in e) s`.
    For {
        /// The type, when the header declares the variable.
        ty: Option<Box<Type>>,
        /// The loop variable.
        var: Ident,
        /// What is iterated.
        iter: Box<Expr>,
        /// The body.
        body: Box<Stmt>,
    },
    /// `break;`
    Break,
    /// `continue;`
    Continue,
    /// `return e1, e2;` (no values: `return;`).
    Return(Vec<Expr>),
    /// `try { } catch (K as e) { } finally { }`.
    Try {
        /// The protected body.
        body: Block,
        /// The `catch` clauses, tried in order.
        catches: Vec<Catch>,
        /// The `finally` body, if any.
        finally: Option<Box<Block>>,
    },
    /// `extAssign e to x;`: make `x` refer to the same External cell as `e`.
    ExtAssign {
        /// The External whose cell is shared.
        source: Box<Expr>,
        /// The External place that will refer to it.
        target: Box<Expr>,
    },
    /// `extCopy v to x;`: write the value `v` into the cell `x` refers to.
    ExtCopy {
        /// The value copied.
        source: Box<Expr>,
        /// The External place written.
        target: Box<Expr>,
    },
    /// `{ ... }`.
    Block(Block),
    /// Source that could not be parsed (a syntax error was reported for it).
    Error,
}

/// `if (cond) body` or `elseIf (cond) body`.
#[derive(Clone, Debug, PartialEq)]
pub struct IfBranch {
    /// The condition.
    pub cond: Expr,
    /// The statement run when it holds.
    pub body: Stmt,
    /// From the keyword to the end of the body.
    pub span: Span,
}

/// Which exceptions a `catch` clause takes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ExceptionKind {
    /// `ApplicationException`: raised by Waldo code or the runtime for program errors.
    Application,
    /// `NetworkException`: the partner or a called endpoint became unreachable.
    Network,
    /// `Exception`: both of the above.
    Any,
}

impl ExceptionKind {
    /// Parses the name written in a `catch` clause.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "ApplicationException" => Some(ExceptionKind::Application),
            "NetworkException" => Some(ExceptionKind::Network),
            "Exception" => Some(ExceptionKind::Any),
            _ => None,
        }
    }
}

/// `catch (Kind as var) { ... }`.
#[derive(Clone, Debug, PartialEq)]
pub struct Catch {
    /// The exception name as written (see [`Catch::kind`]).
    pub kind_name: Ident,
    /// The variable holding the message, visible only in `body`.
    pub var: Ident,
    /// The handler.
    pub body: Block,
    /// The whole clause.
    pub span: Span,
}

impl Catch {
    /// What the clause catches; `None` when the name written is not an exception kind (the
    /// parser reported it).
    pub fn kind(&self) -> Option<ExceptionKind> {
        ExceptionKind::from_name(self.kind_name.as_str())
    }
}

/// An expression.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    /// Which expression.
    pub kind: ExprKind,
    /// The whole expression (parentheses around it excluded).
    pub span: Span,
}

/// Unary operators.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum UnaryOp {
    /// `-x`
    Neg,
    /// `not x`
    Not,
}

impl UnaryOp {
    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            UnaryOp::Neg => "-",
            UnaryOp::Not => "not",
        }
    }
}

/// Binary operators, in the precedence levels of the book's language chapter ("Precedence").
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum BinOp {
    /// `or` (level 1)
    Or,
    /// `and` (level 2)
    And,
    /// `==` (level 4)
    Eq,
    /// `!=` (level 4)
    Ne,
    /// `<` (level 4)
    Lt,
    /// `<=` (level 4)
    Le,
    /// `>` (level 4)
    Gt,
    /// `>=` (level 4)
    Ge,
    /// `in` (level 4)
    In,
    /// `not in` (level 4)
    NotIn,
    /// `+` (level 5)
    Add,
    /// `-` (level 5)
    Sub,
    /// `*` (level 6)
    Mul,
    /// `/` (level 6)
    Div,
    /// `%` (level 6)
    Rem,
}

impl BinOp {
    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            BinOp::Or => "or",
            BinOp::And => "and",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::In => "in",
            BinOp::NotIn => "not in",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
        }
    }
}

/// The expressions (the book's language chapter, "Expressions").
#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// A number literal.
    Number(f64),
    /// A text literal, escapes resolved.
    Text(String),
    /// `True` or `False`.
    Bool(bool),
    /// A name: a variable, function, sequence or builtin.
    Name(Ident),
    /// `self`: the endpoint running the code.
    SelfRef,
    /// `[a, b, c]`.
    List(Vec<Expr>),
    /// `{k: v, ...}`; `{}` is an empty Map.
    Map(Vec<(Expr, Expr)>),
    /// `-x` or `not x`.
    Unary {
        /// The operator.
        op: UnaryOp,
        /// The operand.
        operand: Box<Expr>,
    },
    /// `a op b`.
    Binary {
        /// The operator.
        op: BinOp,
        /// Where the operator is written.
        op_span: Span,
        /// The left operand.
        lhs: Box<Expr>,
        /// The right operand.
        rhs: Box<Expr>,
    },
    /// `f(args)`; a method call `a.m(args)` is a call whose callee is a `Field`.
    Call {
        /// What is called.
        callee: Box<Expr>,
        /// The arguments.
        args: Vec<Expr>,
    },
    /// `base.name`.
    Field {
        /// The value whose field or method is named.
        base: Box<Expr>,
        /// The field or method name.
        name: Ident,
    },
    /// `base[index]`.
    Index {
        /// The container.
        base: Box<Expr>,
        /// The index or key.
        index: Box<Expr>,
    },
    /// Source that could not be parsed (a syntax error was reported for it).
    Error,
}

impl Expr {
    /// Whether the expression can be written to: a name, a field, an index, or a call (which
    /// may yield an External place; the checker decides).
    pub fn is_place(&self) -> bool {
        matches!(
            self.kind,
            ExprKind::Name(_) | ExprKind::Field { .. } | ExprKind::Index { .. } | ExprKind::Call { .. }
        )
    }
}
