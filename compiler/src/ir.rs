//! The checked protocol: what the checker hands to the code generator.
//!
//! Every name is resolved to what it is ([`VarRef`], [`Callee`]), every expression carries its
//! [`Ty`], External reads are explicit ([`TExprKind::Deref`]), and every block of every
//! sequence knows the endpoint it runs on. Nothing here needs the syntax tree any more.
//!
//! All types derive `Hash`; spans are wrapped in [`Loc`], whose hash is empty, so hashing a
//! [`Protocol`] with a [`StableHasher`] gives the protocol fingerprint: equal for a program and
//! its reformatted, re-commented copy, different as soon as anything the program means changes.
//!
//! Analyses of checked code walk it with the one visitor in [`visit`].

pub mod visit;

use std::hash::{Hash, Hasher};

pub use waldo_grammar::{AssignOp, BinOp, ExceptionKind, Span, UnaryOp};

/// Declares an id: a `usize` newtype that indexes one kind of table, so that one kind of id
/// cannot pass for another. It hashes exactly as the `usize` inside (the fingerprint depends
/// on that), and `index()` gives the position back for tables of other element types.
macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub usize);

        impl $name {
            /// The position this id stands for.
            pub const fn index(self) -> usize {
                self.0
            }
        }
    };
}

/// Implements `Index` and `IndexMut` by an id for slices and vectors of the element type that
/// id indexes: `endpoints[e]` reads as a plain index does, and `structs[e]` does not compile.
macro_rules! indexed_by {
    ($(<$lt:lifetime>)? $id:ident => $elem:ty) => {
        impl$(<$lt>)? std::ops::Index<$id> for [$elem] {
            type Output = $elem;
            fn index(&self, id: $id) -> &$elem {
                &self[id.index()]
            }
        }

        impl$(<$lt>)? std::ops::IndexMut<$id> for [$elem] {
            fn index_mut(&mut self, id: $id) -> &mut $elem {
                &mut self[id.index()]
            }
        }

        impl$(<$lt>)? std::ops::Index<$id> for Vec<$elem> {
            type Output = $elem;
            fn index(&self, id: $id) -> &$elem {
                &self[id.index()]
            }
        }

        impl$(<$lt>)? std::ops::IndexMut<$id> for Vec<$elem> {
            fn index_mut(&mut self, id: $id) -> &mut $elem {
                &mut self[id.index()]
            }
        }
    };
}
pub(crate) use indexed_by;

id! {
    /// Index of an endpoint: 0 for the first declared, 1 for the second.
    EndpointId
}
id! {
    /// Index into [`Protocol::structs`].
    StructId
}
id! {
    /// Index into [`Protocol::sequences`].
    SequenceId
}
id! {
    /// Index into [`Endpoint::functions`].
    FunctionId
}
id! {
    /// Index into the `locals` of a [`Function`] or [`SeqBlock`].
    LocalId
}

impl EndpointId {
    /// The other endpoint of a pair.
    pub fn partner(self) -> EndpointId {
        EndpointId(1 - self.0)
    }
}

indexed_by!(EndpointId => Endpoint);
indexed_by!(StructId => StructDef);
indexed_by!(SequenceId => Sequence);
indexed_by!(FunctionId => Function);
indexed_by!(LocalId => Var);

/// A source location kept for messages (runtime errors name file and line); it does not take
/// part in the fingerprint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Loc(pub Span);

impl Hash for Loc {
    fn hash<H: Hasher>(&self, _: &mut H) {}
}

/// A Number literal, hashed by its bits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Num(pub f64);

impl Hash for Num {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.to_bits().hash(state);
    }
}

/// A checked type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Ty {
    /// 64-bit float.
    Number,
    /// Unicode text.
    Text,
    /// Boolean.
    Bool,
    /// No value: the result of a call that returns nothing.
    Nothing,
    /// `List(element: T)`.
    List(Box<Ty>),
    /// `Map(from: K, to: V)`.
    Map(Box<Ty>, Box<Ty>),
    /// `Struct S`.
    Struct(StructId),
    /// `Function(in: ...; returns: ...)`.
    Function(Box<FnSig>),
    /// A reference to an endpoint on the same host.
    Endpoint,
    /// A host-owned transactional cell holding a `T`.
    External(Box<Ty>),
    /// Several values, from a call of a function that returns more than one.
    Tuple(Vec<Ty>),
    /// A value whose type only the runtime knows: the result of an endpoint call whose target
    /// the checker cannot tell. The runtime checks it where it is used.
    Any,
    /// The type of an expression that already has an error; compatible with everything so
    /// that one mistake gives one diagnostic.
    Error,
}

/// Parameter and result types of a function or `Function` value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FnSig {
    /// Parameter types.
    pub params: Vec<Ty>,
    /// Result types (empty: returns nothing).
    pub returns: Vec<Ty>,
}

impl Ty {
    /// The type as the programmer writes it (`List(element: Number)`, `Struct S`...), for
    /// diagnostics and documentation: the one printer of types. `structs` names the
    /// protocol's structs. Several values print as `(A, B)`, a type only the runtime knows
    /// as `a value known at run time`, and the type of an expression with an error as `?`.
    pub fn name(&self, structs: &[StructDef]) -> String {
        let list = |ts: &[Ty]| {
            if ts.is_empty() {
                "Nothing".to_owned()
            } else {
                ts.iter().map(|t| t.name(structs)).collect::<Vec<_>>().join(", ")
            }
        };
        match self {
            Ty::Number => "Number".into(),
            Ty::Text => "Text".into(),
            Ty::Bool => "TrueFalse".into(),
            Ty::Nothing => "Nothing".into(),
            Ty::List(t) => format!("List(element: {})", t.name(structs)),
            Ty::Map(k, v) => format!("Map(from: {}, to: {})", k.name(structs), v.name(structs)),
            Ty::Struct(id) => format!("Struct {}", structs.get(id.index()).map_or("?", |s| s.name.as_str())),
            Ty::Function(sig) => {
                format!("Function(in: {}; returns: {})", list(&sig.params), list(&sig.returns))
            }
            Ty::Endpoint => "Endpoint".into(),
            Ty::External(t) => format!("External {}", t.name(structs)),
            Ty::Tuple(ts) => {
                format!("({})", ts.iter().map(|t| t.name(structs)).collect::<Vec<_>>().join(", "))
            }
            Ty::Any => "a value known at run time".into(),
            Ty::Error => "?".into(),
        }
    }

    /// The type of the value an expression of this type reads as (`External T` reads as `T`).
    pub fn value(&self) -> &Ty {
        match self {
            Ty::External(inner) => inner,
            other => other,
        }
    }

    /// Whether a value of this type can stand where `expected` is required: equal types, or
    /// either side unknown (`Any`) or already wrong (`Error`).
    pub fn fits(&self, expected: &Ty) -> bool {
        match (self, expected) {
            (Ty::Any | Ty::Error, _) | (_, Ty::Any | Ty::Error) => true,
            (Ty::List(a), Ty::List(b)) | (Ty::External(a), Ty::External(b)) => a.fits(b),
            (Ty::Map(ka, va), Ty::Map(kb, vb)) => ka.fits(kb) && va.fits(vb),
            (Ty::Function(a), Ty::Function(b)) => {
                a.params.len() == b.params.len()
                    && a.returns.len() == b.returns.len()
                    && a.params.iter().zip(&b.params).all(|(x, y)| x.fits(y))
                    && a.returns.iter().zip(&b.returns).all(|(x, y)| x.fits(y))
            }
            (Ty::Tuple(a), Ty::Tuple(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.fits(y)),
            (a, b) => a == b,
        }
    }

    /// Whether the type is or contains `External`, `Function` or `Endpoint` (not allowed in
    /// peered or sequence-local data), looking through structs with `structs`.
    pub fn host_bound(&self, structs: &[StructDef]) -> bool {
        self.host_bound_in(structs, &mut Vec::new())
    }

    fn host_bound_in(&self, structs: &[StructDef], seen: &mut Vec<StructId>) -> bool {
        match self {
            Ty::External(_) | Ty::Function(_) | Ty::Endpoint => true,
            Ty::List(t) => t.host_bound_in(structs, seen),
            Ty::Map(k, v) => k.host_bound_in(structs, seen) || v.host_bound_in(structs, seen),
            Ty::Struct(id) => {
                if seen.contains(id) {
                    return false;
                }
                seen.push(*id);
                structs
                    .get(id.index())
                    .is_some_and(|s| s.fields.iter().any(|f| f.ty.host_bound_in(structs, seen)))
            }
            Ty::Tuple(ts) => ts.iter().any(|t| t.host_bound_in(structs, seen)),
            _ => false,
        }
    }
}

/// A whole checked protocol.
#[derive(Clone, Debug, PartialEq, Hash)]
pub struct Protocol {
    /// The protocol's name.
    pub name: String,
    /// One or two endpoints. Under `Symmetric A, B;` the second is a copy of the first.
    pub endpoints: Vec<Endpoint>,
    /// Whether the protocol was declared `Symmetric`.
    pub symmetric: bool,
    /// The structs, by [`StructId`].
    pub structs: Vec<StructDef>,
    /// The peered data, in declaration order.
    pub peered: Vec<PeeredVar>,
    /// The sequences, by [`SequenceId`].
    pub sequences: Vec<Sequence>,
    /// Where the source's lines start, for the places runtime errors name; empty when the
    /// protocol was checked without its source ([`Protocol::with_source`]).
    pub lines: Lines,
}

/// The byte offset where each line of a source starts (not part of the fingerprint).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Lines(Vec<u32>);

impl Hash for Lines {
    fn hash<H: Hasher>(&self, _: &mut H) {}
}

impl Lines {
    /// The lines of `source`.
    pub fn of(source: &str) -> Lines {
        let mut starts = vec![0];
        starts.extend(source.bytes().enumerate().filter(|&(_, b)| b == b'\n').map(|(i, _)| i as u32 + 1));
        Lines(starts)
    }

    /// The 1-based line of byte `offset`, or `None` when the source is not known.
    pub fn line(&self, offset: u32) -> Option<u32> {
        if self.0.is_empty() {
            return None;
        }
        Some(self.0.partition_point(|&start| start <= offset) as u32)
    }
}

/// A struct and its fields.
#[derive(Clone, Debug, PartialEq, Hash)]
pub struct StructDef {
    /// Its name.
    pub name: String,
    /// Its fields, in order.
    pub fields: Vec<Field>,
    /// Where it is declared.
    pub loc: Loc,
}

/// A struct field.
#[derive(Clone, Debug, PartialEq, Hash)]
pub struct Field {
    /// Its name.
    pub name: String,
    /// Its type.
    pub ty: Ty,
}

/// A variable: a global, a peered variable, a parameter, a local, sequence-local data.
#[derive(Clone, Debug, PartialEq, Hash)]
pub struct Var {
    /// Its name.
    pub name: String,
    /// Its type.
    pub ty: Ty,
    /// Its initializer; without one it starts with its type's default.
    pub init: Option<TExpr>,
    /// Where it is declared.
    pub loc: Loc,
}

/// Peered data and who may write it.
#[derive(Clone, Debug, PartialEq, Hash)]
pub struct PeeredVar {
    /// The variable.
    pub var: Var,
    /// `Some(e)` when only code running on endpoint `e` may write it.
    pub owner: Option<EndpointId>,
}

/// One endpoint's own code and data.
#[derive(Clone, Debug, PartialEq, Hash)]
pub struct Endpoint {
    /// Its name.
    pub name: String,
    /// Its globals, initialized in order before `onCreate`.
    pub globals: Vec<Var>,
    /// Its `onCreate`, if written.
    pub on_create: Option<Function>,
    /// Its functions, by [`FunctionId`].
    pub functions: Vec<Function>,
}

/// A function (or `onCreate`).
#[derive(Clone, Debug, PartialEq, Hash)]
pub struct Function {
    /// Its name (`onCreate` for `onCreate`).
    pub name: String,
    /// Whether the host and other endpoints may call it.
    pub public: bool,
    /// The number of parameters: `locals[..params]` are the parameters.
    pub params: usize,
    /// Result types.
    pub returns: Vec<Ty>,
    /// Parameters, then every local declared in the body, by [`LocalId`].
    pub locals: Vec<Var>,
    /// The body.
    pub body: Vec<TStmt>,
    /// Where it is declared.
    pub loc: Loc,
}

/// A message sequence.
#[derive(Clone, Debug, PartialEq, Hash)]
pub struct Sequence {
    /// Its name.
    pub name: String,
    /// Sequence-local data: parameters first (`data[..params]`), then named results
    /// (`data[params..params + returns]`), then the declarations at its top.
    pub data: Vec<Var>,
    /// The number of parameters.
    pub params: usize,
    /// The number of named results.
    pub returns: usize,
    /// The blocks, in the order they run.
    pub blocks: Vec<SeqBlock>,
    /// Where it is defined.
    pub loc: Loc,
}

impl Sequence {
    /// The endpoint that runs block `block` when the sequence is started on `starter`. In a
    /// plain protocol that is the block's own endpoint; in a symmetric one, blocks written for
    /// the first endpoint run on whichever side started.
    pub fn runs_on(&self, block: usize, starter: EndpointId, symmetric: bool) -> EndpointId {
        let written = self.blocks[block].endpoint;
        if symmetric && starter != self.blocks[0].endpoint { written.partner() } else { written }
    }

    /// The endpoint a (non-symmetric) sequence is started from: its first block's.
    pub fn starter(&self) -> EndpointId {
        self.blocks.first().map_or(EndpointId(0), |b| b.endpoint)
    }
}

/// One block of a sequence.
#[derive(Clone, Debug, PartialEq, Hash)]
pub struct SeqBlock {
    /// The endpoint it is written for.
    pub endpoint: EndpointId,
    /// Its name.
    pub name: String,
    /// Locals declared in the block, by [`LocalId`].
    pub locals: Vec<Var>,
    /// Its statements.
    pub body: Vec<TStmt>,
    /// Where it is written.
    pub loc: Loc,
}

/// What a name refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VarRef {
    /// A parameter or local of the enclosing function or block.
    Local(LocalId),
    /// Sequence-local data of the enclosing sequence (index into [`Sequence::data`]).
    SeqData(usize),
    /// A global of the endpoint running the code.
    Global(usize),
    /// Peered data.
    Peered(usize),
}

/// A checked statement.
#[derive(Clone, Debug, PartialEq, Hash)]
pub struct TStmt {
    /// Which statement.
    pub kind: TStmtKind,
    /// Where it is.
    pub loc: Loc,
}

/// The checked statements.
#[derive(Clone, Debug, PartialEq, Hash)]
pub enum TStmtKind {
    /// A local comes into scope, with its initializer (or its default).
    Decl(LocalId),
    /// `a op= v`, or `a, b = f()` (then `op` is `=` and `value` has a tuple type).
    Assign {
        /// The places written.
        targets: Vec<TExpr>,
        /// The operator.
        op: AssignOp,
        /// The value.
        value: TExpr,
    },
    /// An expression evaluated for its effects.
    Expr(TExpr),
    /// `if` / `elseIf` branches and `else`.
    If {
        /// Conditions and bodies, in order.
        branches: Vec<(TExpr, Vec<TStmt>)>,
        /// The `else` body.
        otherwise: Option<Vec<TStmt>>,
    },
    /// `while (cond) body`.
    While {
        /// The condition.
        cond: TExpr,
        /// The body.
        body: Vec<TStmt>,
    },
    /// `for (var in iter) body`.
    For {
        /// The loop variable.
        var: VarRef,
        /// What is iterated: a List (elements), a Map (keys in order) or Text (characters).
        iter: TExpr,
        /// The body.
        body: Vec<TStmt>,
    },
    /// `break;`
    Break,
    /// `continue;`
    Continue,
    /// `return values;` (flattened: a call returning k values counts k).
    Return(Vec<TExpr>),
    /// `try` with its handlers.
    Try {
        /// The protected body (a nested transaction).
        body: Vec<TStmt>,
        /// Handlers: what each catches, the local holding the message, its body.
        catches: Vec<(ExceptionKind, LocalId, Vec<TStmt>)>,
        /// The `finally` body.
        finally: Option<Vec<TStmt>>,
    },
    /// `extAssign source to target;`
    ExtAssign {
        /// The External whose cell is shared.
        source: TExpr,
        /// The External place made to refer to it.
        target: TExpr,
    },
    /// `extCopy source to target;`
    ExtCopy {
        /// The value written.
        source: TExpr,
        /// The External place written into.
        target: TExpr,
    },
    /// A nested block.
    Block(Vec<TStmt>),
}

/// A checked expression.
#[derive(Clone, Debug, PartialEq, Hash)]
pub struct TExpr {
    /// Which expression.
    pub kind: TExprKind,
    /// Its type.
    pub ty: Ty,
    /// Where it is.
    pub loc: Loc,
}

/// The checked expressions.
#[derive(Clone, Debug, PartialEq, Hash)]
pub enum TExprKind {
    /// A Number literal.
    Number(Num),
    /// A Text literal.
    Text(String),
    /// A TrueFalse literal.
    Bool(bool),
    /// A variable.
    Var(VarRef),
    /// The endpoint running the code.
    SelfRef,
    /// A list literal.
    List(Vec<TExpr>),
    /// A map literal.
    Map(Vec<(TExpr, TExpr)>),
    /// `-x`, `not x`.
    Unary(UnaryOp, Box<TExpr>),
    /// `a op b`; the operand types decide the operation (`+` on Text concatenates).
    Binary(BinOp, Box<TExpr>, Box<TExpr>),
    /// The current value of an External cell.
    Deref(Box<TExpr>),
    /// `base.field`.
    Field(Box<TExpr>, usize),
    /// `base[index]` on a List, a Map or Text.
    Index(Box<TExpr>, Box<TExpr>),
    /// A call.
    Call(Box<Callee>, Vec<TExpr>),
    /// An expression that had an error (never reaches code generation).
    Error,
}

/// The builtins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Builtin {
    /// `len(x)`.
    Len,
    /// `range(a, b[, step])`.
    Range,
    /// `toText(x)`.
    ToText,
    /// `print(x)`, after commit.
    Print,
    /// `signal(f, args...)`, after commit.
    Signal,
    /// `id()`.
    Id,
}

/// Container and endpoint methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// `list.append(x)`.
    Append,
    /// `list.insert(i, x)`.
    Insert,
    /// `list.remove(i)`.
    RemoveIndex,
    /// `map.remove(k)`.
    RemoveKey,
    /// `endpoint.id()`.
    Id,
}

/// What a call calls.
#[derive(Clone, Debug, PartialEq, Hash)]
pub enum Callee {
    /// A function of the endpoint running the code.
    Function(FunctionId),
    /// Starting a sequence.
    Sequence(SequenceId),
    /// A builtin.
    Builtin(Builtin),
    /// A `Function` value (a variable or a struct field).
    Value(TExpr),
    /// A public function of another endpoint, `target.function(args)`, in the caller's
    /// transaction. `resolved` names the endpoint and function when the checker knows them;
    /// otherwise the runtime looks the function up and checks the arguments.
    Endpoint {
        /// The Endpoint value.
        target: TExpr,
        /// The function's name.
        function: String,
        /// The function, when known.
        resolved: Option<(EndpointId, FunctionId)>,
        /// When the function is not known: the types of the values the caller takes back
        /// (one per value), which the runtime checks; `None` when the results are not used
        /// as typed values.
        results: Option<Vec<Ty>>,
    },
    /// A method on a container or endpoint.
    Method(TExpr, Method),
}

/// A `Hasher` whose output does not depend on the platform or the Rust version: FNV-1a over
/// little-endian integers, with lengths as `u64`.
pub struct StableHasher(u64);

impl Default for StableHasher {
    fn default() -> Self {
        StableHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for StableHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.write(&[i]);
    }
    fn write_u16(&mut self, i: u16) {
        self.write(&i.to_le_bytes());
    }
    fn write_u32(&mut self, i: u32) {
        self.write(&i.to_le_bytes());
    }
    fn write_u64(&mut self, i: u64) {
        self.write(&i.to_le_bytes());
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    fn write_isize(&mut self, i: isize) {
        self.write_u64(i as u64);
    }
}

impl Protocol {
    /// This protocol, knowing the source it was checked from (for the lines that runtime
    /// errors name).
    pub fn with_source(mut self, source: &str) -> Protocol {
        self.lines = Lines::of(source);
        self
    }

    /// The protocol fingerprint: a stable 64-bit hash of everything the protocol means
    /// (names, types, code), and of nothing about how it is written (spans, comments, layout).
    pub fn fingerprint(&self) -> u64 {
        let mut hasher = StableHasher::default();
        "waldo-protocol-v1".hash(&mut hasher);
        self.hash(&mut hasher);
        hasher.finish()
    }

    /// The blocks endpoint `endpoint` runs, as `(sequence, block, started here)`: for a plain
    /// protocol each block runs on its own endpoint; for a symmetric one an endpoint runs the
    /// blocks of the first endpoint for sequences it starts and the others for sequences the
    /// partner starts.
    pub fn blocks_on(&self, endpoint: EndpointId) -> Vec<(SequenceId, usize, bool)> {
        let mut out = Vec::new();
        for (s, seq) in self.sequences.iter().enumerate() {
            let s = SequenceId(s);
            for b in 0..seq.blocks.len() {
                if self.symmetric {
                    let partner = endpoint.partner();
                    if seq.runs_on(b, endpoint, true) == endpoint {
                        out.push((s, b, true));
                    }
                    if seq.runs_on(b, partner, true) == endpoint {
                        out.push((s, b, false));
                    }
                } else if seq.blocks[b].endpoint == endpoint {
                    out.push((s, b, seq.starter() == endpoint));
                }
            }
        }
        out
    }
}
