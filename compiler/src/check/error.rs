//! The checker's mistakes as data. Where a mistake is found, the checker records a
//! [`CheckError`]: which kind of mistake, where, and the names, types and counts that describe
//! it — no prose. [`CheckError::into_diagnostic`] is the one place that writes what users read
//! (code, headline, labels, secondary labels, help lines); `check` calls it once for every
//! mistake when it returns. Types are kept as [`Ty`] and printed there, with the protocol's
//! structs. Warnings are variants too; [`CheckError::severity`] tells them apart.
//!
//! This module depends on the IR, the diagnostics and the codes only, never on the rest of the
//! checker.

use waldo_grammar::{FileId, Span};

use crate::codes::*;
use crate::diagnostics::{Diagnostic, Label, Severity};
use crate::ir::{AssignOp, BinOp, StructDef, Ty, UnaryOp};

/// What kind of declaration a name that is declared twice belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Declared {
    /// An endpoint in the endpoint declaration.
    Endpoint,
    /// A struct.
    Struct,
    /// A field of a struct.
    Field,
    /// Peered data.
    PeeredVariable,
    /// A parameter of a function or `onCreate`.
    Parameter,
    /// Data of an endpoint.
    Global,
    /// A function of an endpoint.
    Function,
    /// An endpoint's `onCreate`.
    OnCreate,
    /// A sequence.
    Sequence,
    /// A parameter, result or local of a sequence.
    SequenceData,
    /// A block of a sequence.
    Block,
    /// A local variable (a declaration, a typed loop variable, a caught message).
    Variable,
}

impl Declared {
    fn as_str(self) -> &'static str {
        match self {
            Declared::Endpoint => "endpoint",
            Declared::Struct => "struct",
            Declared::Field => "field",
            Declared::PeeredVariable => "peered variable",
            Declared::Parameter => "parameter",
            Declared::Global => "global",
            Declared::Function => "function",
            Declared::OnCreate => "`onCreate`",
            Declared::Sequence => "sequence",
            Declared::SequenceData => "sequence data",
            Declared::Block => "block",
            Declared::Variable => "variable",
        }
    }
}

/// A top-level section that may appear only once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Section {
    /// `Sequences { ... }`.
    Sequences,
    /// `Peered { ... }`.
    Peered,
}

/// Where a value is expected, for the messages about a value that does not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Expectation {
    /// Anywhere a value of a known type is needed (an initializer, an argument...).
    Expected,
    /// As a function's result.
    Returned,
    /// As an element of a List literal.
    InList,
    /// As a key of a Map literal.
    AsKey,
    /// As a value of a Map literal.
    AsValue,
}

impl Expectation {
    fn as_str(self) -> &'static str {
        match self {
            Expectation::Expected => "expected",
            Expectation::Returned => "returned",
            Expectation::InList => "expected in this list",
            Expectation::AsKey => "expected as a key",
            Expectation::AsValue => "expected as a value",
        }
    }
}

/// What is called, for the message about a wrong number of arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Called {
    /// A function of this endpoint, by name.
    Function(String),
    /// A sequence, by name.
    Sequence(String),
    /// A Function value.
    FunctionValue,
    /// The Function value given to `signal`.
    Signalled,
    /// A builtin (`len`, `range`...).
    Builtin(&'static str),
    /// A method of a List, a Map or an Endpoint.
    Method(&'static str),
    /// A public function of an endpoint, called through an Endpoint value.
    EndpointFunction(String),
}

impl Called {
    fn describe(&self) -> String {
        match self {
            Called::Function(name) => format!("function `{name}`"),
            Called::Sequence(name) => format!("sequence `{name}`"),
            Called::FunctionValue => "this function".to_owned(),
            Called::Signalled => "the signalled function".to_owned(),
            Called::Builtin(name) | Called::Method(name) => format!("`{name}`"),
            Called::EndpointFunction(name) => format!("`{name}`"),
        }
    }
}

/// What the checker knows about a name it cannot find, for the help line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum NameHelp {
    /// The other endpoint has a member of that name.
    OtherEndpoint {
        /// Whether that member is a function (otherwise data).
        function: bool,
        /// The endpoint that has it.
        owner: String,
        /// The endpoint the code runs on.
        here: String,
    },
    /// A global of this endpoint declared after the initializer that uses it.
    DeclaredLater,
    /// A visible name with a similar spelling.
    Similar(String),
    /// Another language's spelling of a Waldo literal (`true`, `null`).
    Literal(&'static str),
    /// Nothing like it: declare it.
    Declare,
}

/// One mistake (or, for the few warnings, one suspicious thing) the checker found, with the
/// data its message needs. Spans are the primary label's unless named otherwise.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum CheckError {
    /// A name declared again where an earlier declaration is visible.
    Duplicate { what: Declared, name: String, span: Span, previous: Span },
    /// A loop variable declared with a type where a variable of that name is visible.
    LoopVariableDeclaredTwice { name: String, span: Span, previous: Span },
    /// A declaration that reuses a builtin name.
    BuiltinDeclared { name: String, span: Span },
    /// A name used as an endpoint that is not one of the protocol's `endpoints`.
    UnknownEndpoint { name: String, span: Span, endpoints: Vec<String> },
    /// A second `Sequences` or `Peered` section (`first` is the first one's span).
    DuplicateSection { section: Section, span: Span, first: Span },
    /// A body written for the mirrored endpoint `name` of a symmetric protocol whose written
    /// endpoint is `first`.
    MirrorBody { name: String, span: Span, first: String },
    /// A second body for endpoint `name` (`first`: the name of the first body).
    DuplicateBody { name: String, span: Span, first: Span },
    /// A declared endpoint without a body.
    MissingBody { name: String, span: Span },
    /// A struct that holds itself, directly or through other structs.
    RecursiveStruct { name: String, span: Span },
    /// Peered data of a type meaningful on one host only (`span`: the written type).
    HostTypeInPeered { ty: Ty, span: Span },
    /// Sequence-local data of a type meaningful on one host only (`span`: the written type).
    HostTypeInSequenceData { ty: Ty, span: Span },
    /// An owner of peered data in a symmetric protocol; `nothing` when written
    /// `Nothing controls`.
    ControlsInSymmetric { span: Span, nothing: bool },
    /// A sequence in a protocol with one endpoint.
    SequenceNeedsTwo { span: Span },
    /// A sequence listed twice in `Sequences`.
    SequenceListedTwice { name: String, span: Span, previous: Span },
    /// A sequence listed in `Sequences` but not defined.
    UndefinedSequence { name: String, span: Span },
    /// A `Sequences` entry whose blocks (endpoint name, block name) differ from the
    /// definition's (`definition`: the definition's name).
    OrderMismatch {
        name: String,
        span: Span,
        listed: Vec<(String, String)>,
        defined: Vec<(String, String)>,
        definition: Span,
    },
    /// Two consecutive blocks of a sequence on `endpoint` (`span`: the second).
    BlocksDontAlternate { endpoint: String, span: Span },
    /// A function with results whose end can be reached (`span`: its closing `}`).
    MissingReturn { function: String, returns: Vec<Ty>, span: Span },
    /// Warning: a local variable that is never read.
    UnusedVariable { name: String, span: Span },
    /// Warning: a statement after one that always leaves (`leaves`).
    Unreachable { span: Span, leaves: Span },
    /// A `for` loop over a value that is not a List, Map or Text.
    NotIterable { ty: Ty, span: Span },
    /// A typed loop variable of another type than the loop's items (`span`: the type).
    LoopVariableType { yields: Ty, declared: Ty, span: Span },
    /// An existing variable `name` of type `ty` used as a loop variable for other items.
    LoopTargetType { yields: Ty, name: String, ty: Ty, span: Span },
    /// An untyped loop variable that is not declared; `item` is the loop's item type.
    UnknownLoopVariable { name: String, item: Ty, span: Span },
    /// `break` or `continue` (the `keyword`) outside a loop.
    BreakOutsideLoop { keyword: &'static str, span: Span },
    /// Warning: a `catch` clause of kind `kind` that an `earlier` clause always takes first.
    UnreachableCatch { kind: String, span: Span, earlier: Span },
    /// `extAssign` of a value that is not an External.
    ShareNotExternal { ty: Ty, span: Span },
    /// `extAssign` of an External into an External of another type.
    ShareMismatch { source: Ty, target: Ty, span: Span },
    /// A condition that is not TrueFalse.
    ConditionNotBool { ty: Ty, span: Span },
    /// `return` with a value in a sequence block (`in_block`) or in `onCreate`.
    ReturnValueNotAllowed { in_block: bool, span: Span },
    /// `return` with `given` values in a function that returns `expected`.
    ReturnCount { given: usize, expected: usize, span: Span },
    /// Value `position` (from 1) of a returned call has type `found`, not `expected`.
    ReturnedType { found: Ty, expected: Ty, position: usize, span: Span },
    /// A compound assignment whose result type does not fit its target.
    CompoundAssignType { op: AssignOp, result: Ty, target: Ty, span: Span },
    /// Value `position` (from 1) of a destructured call does not fit its target.
    DestructureType { position: usize, found: Ty, target: Ty, span: Span },
    /// Destructuring into `targets` targets a right side that gives `given` values.
    DestructureCount { targets: usize, given: usize, span: Span },
    /// `=` on an External variable.
    AssignToExternal { name: String, span: Span },
    /// `=` on a name that is not a variable (a function, a sequence...).
    NotAVariable { name: String, span: Span },
    /// `=` on a character of a Text.
    TextInPlace { span: Span },
    /// `=` on an element or field that holds an External (of type `ty`).
    AssignToExternalPlace { ty: Ty, span: Span },
    /// A call as the target of `extCopy`/`extAssign` that gives no External.
    NotExternalPlace { ty: Ty, span: Span },
    /// An expression that cannot be written to.
    NotAPlace { span: Span },
    /// An `extAssign`/`extCopy` (the `statement`) whose target is not an External.
    ExternalTarget { statement: &'static str, ty: Ty, span: Span },
    /// A write on endpoint `here` to peered data `name` that `owner` controls (`declared`:
    /// the data's declaration).
    ControlsViolation { name: String, owner: String, here: String, span: Span, declared: Span },
    /// An exception kind used as a value.
    ExceptionAsValue { name: String, span: Span },
    /// A function, sequence or builtin name used as a value.
    FunctionAsValue { name: String, span: Span },
    /// An empty `[]` where nothing tells its element type.
    EmptyList { span: Span },
    /// An empty `{}` where nothing tells its key and value types.
    EmptyMap { span: Span },
    /// A Map literal whose keys are of a type keys cannot have (`span`: the first key).
    MapLiteralKey { ty: Ty, span: Span },
    /// A unary operator applied to an operand of type `found` it does not take.
    UnaryOperand { op: UnaryOp, found: Ty, span: Span },
    /// A field that struct `struct_name` (with `fields`) does not have.
    UnknownField { struct_name: String, field: String, fields: Vec<String>, span: Span },
    /// A field of a value that is not a struct.
    FieldOfNonStruct { ty: Ty, field: String, span: Span },
    /// Indexing a value that is not a List, Map or Text.
    NotIndexable { ty: Ty, span: Span },
    /// A field, index, method or call of the result of a call on an endpoint the checker
    /// cannot identify.
    UnknownResult { span: Span },
    /// A call of `callee` with `given` arguments where it takes `expected`.
    ArgCount { callee: Called, expected: usize, given: usize, span: Span },
    /// Sequence `sequence`, whose first block (`first_block`) runs on `starter`, started
    /// from code on `here`.
    WrongStarter { sequence: String, starter: String, here: String, span: Span, first_block: Span },
    /// A call of `onCreate`.
    OnCreateCalled { span: Span },
    /// An exception kind called like a function.
    ExceptionCalled { name: String, span: Span },
    /// A call of a value that is not a function.
    NotCallable { ty: Ty, span: Span },
    /// A call of a field that struct `struct_name` does not have.
    UnknownFieldCalled { struct_name: String, field: String, span: Span },
    /// A method that a value of type `ty` does not have.
    NoMethod { ty: Ty, method: String, span: Span },
    /// An endpoint call of `name`, a Private function of `endpoint` (`declared`: the
    /// function).
    PrivateFunction { name: String, endpoint: String, span: Span, declared: Span },
    /// `id()` in a peered initializer: each replica would get its own endpoint's id.
    IdInPeered { span: Span },
    /// An endpoint call of `name`, which `endpoint` does not have.
    NoPublicFunction { name: String, endpoint: String, span: Span },
    /// `len` of a value without a length.
    LenArgument { ty: Ty, span: Span },
    /// `toText` of a value it cannot convert.
    ToTextArgument { ty: Ty, span: Span },
    /// `print` of something that is not one value.
    PrintNoValue { span: Span },
    /// `signal()` without arguments.
    SignalWithoutFunction { span: Span },
    /// `signal` of something that is not a Function value.
    SignalNotFunction { ty: Ty, span: Span },
    /// `Nothing` as the type of data.
    NothingAsData { span: Span },
    /// A written Map type whose keys are of a type keys cannot have.
    MapKeyType { ty: Ty, span: Span },
    /// A struct type that is not declared.
    UnknownStruct { name: String, span: Span },
    /// `External External T`.
    NestedExternal { span: Span },
    /// The result of a call that returns nothing, used as a value.
    NoValue { span: Span },
    /// A call giving `count` values where one is `expected`.
    SeveralValues { count: usize, expected: Expectation, span: Span },
    /// A value of type `found` where one of type `expected` is `expectation`.
    Mismatch { expected: Ty, found: Ty, expectation: Expectation, span: Span },
    /// A binary operator applied to operands it does not take (`span`: the operator).
    BadOperands { op: BinOp, left: Ty, right: Ty, span: Span },
    /// A name that is not declared anywhere visible.
    UnknownName { name: String, span: Span, help: NameHelp },
}

/// `"s"` after a count other than one.
fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

impl CheckError {
    /// Whether the program is rejected (errors) or only questioned (warnings).
    pub(super) fn severity(&self) -> Severity {
        match self {
            CheckError::UnusedVariable { .. }
            | CheckError::Unreachable { .. }
            | CheckError::UnreachableCatch { .. } => Severity::Warning,
            _ => Severity::Error,
        }
    }

    /// The diagnostic users see: the only place the checker's messages are written. `structs`
    /// names the protocol's structs, for printing types.
    pub(super) fn into_diagnostic(self, file: FileId, structs: &[StructDef]) -> Diagnostic {
        let severity = self.severity();
        let ty = |t: &Ty| t.name(structs);
        let new = |code: &'static str, message: String, span: Span, label: String| {
            Diagnostic::error(code, message, file, Label::new(span, label))
        };
        let mut d = match self {
            CheckError::Duplicate { what, name, span, previous } => new(
                E_DUPLICATE,
                format!("`{name}` is declared twice"),
                span,
                format!("{} declared again here", what.as_str()),
            )
            .with_secondary(Label::new(previous, format!("`{name}` is first declared here")))
            .with_help(match what {
                Declared::Block => "give one of them another name: a sequence's blocks on one endpoint need names of their own",
                _ => "give one of them another name; names stay visible to the end of their scope",
            }),
            CheckError::LoopVariableDeclaredTwice { name, span, previous } => new(
                E_DUPLICATE,
                format!("`{name}` is declared twice"),
                span,
                format!("{} declared again here", Declared::Variable.as_str()),
            )
            .with_secondary(Label::new(previous, format!("`{name}` is first declared here")))
            .with_help(format!(
                "to loop with the existing variable, write `for ({name} in ...)` without a type"
            )),
            CheckError::BuiltinDeclared { name, span } => new(
                E_BUILTIN_DECLARED,
                format!("`{name}` is a builtin name and cannot be declared"),
                span,
                "builtin name".into(),
            )
            .with_help("choose another name"),
            CheckError::UnknownEndpoint { name, span, endpoints } => {
                let known: Vec<String> = endpoints.iter().map(|e| format!("`{e}`")).collect();
                new(
                    E_UNKNOWN_ENDPOINT,
                    format!("`{name}` is not an endpoint of this protocol"),
                    span,
                    "unknown endpoint".into(),
                )
                .with_help(format!("the endpoints are {}", known.join(" and ")))
            }
            CheckError::DuplicateSection { section, span, first } => {
                let (name, help) = match section {
                    Section::Sequences => {
                        ("Sequences", "list every sequence in one `Sequences { ... }` section")
                    }
                    Section::Peered => ("Peered", "declare all peered data in one `Peered { ... }` section"),
                };
                new(E_DUPLICATE_SECTION, format!("a second `{name}` section"), span, "second section".into())
                    .with_secondary(Label::new(first, "first section"))
                    .with_help(help)
            }
            CheckError::MirrorBody { name, span, first } => {
                let help = format!(
                    "under `Symmetric`, write only `{first} {{ ... }}`; the other endpoint gets a copy"
                );
                new(
                    E_MIRROR_BODY,
                    format!("`{name}` mirrors `{first}` and has no body of its own"),
                    span,
                    "body of the mirrored endpoint".into(),
                )
                .with_help(help)
            }
            CheckError::DuplicateBody { name, span, first } => {
                new(E_DUPLICATE_BODY, format!("`{name}` has a second body"), span, "second body".into())
                    .with_secondary(Label::new(first, "first body"))
                    .with_help("put all of an endpoint's members in one body")
            }
            CheckError::MissingBody { name, span } => {
                new(E_MISSING_BODY, format!("endpoint `{name}` has no body"), span, "declared here".into())
                    .with_help(format!("write its body, even if empty: `{name} {{ }}`"))
            }
            CheckError::RecursiveStruct { name, span } => new(
                E_RECURSIVE_STRUCT,
                format!("struct `{name}` contains itself"),
                span,
                "recursive struct".into(),
            )
            .with_help("hold the inner value in a List (`List(element: Struct S)`), which starts empty"),
            CheckError::HostTypeInPeered { ty: t, span } => {
                let help = "External cells, Function values and Endpoint references belong to one host; keep them in an endpoint's own data";
                new(
                    E_HOST_TYPE_SHARED,
                    format!("peered data cannot hold {}", ty(&t)),
                    span,
                    "only meaningful on one host".into(),
                )
                .with_help(help)
            }
            CheckError::HostTypeInSequenceData { ty: t, span } => {
                let help = "sequence data travels between the endpoints; External cells, Function values and Endpoint references cannot";
                new(
                    E_HOST_TYPE_SHARED,
                    format!("sequence-local data cannot hold {}", ty(&t)),
                    span,
                    "only meaningful on one host".into(),
                )
                .with_help(help)
            }
            CheckError::ControlsInSymmetric { span, nothing } => new(
                E_CONTROLS_IN_SYMMETRIC,
                "`controls` in a symmetric protocol".into(),
                span,
                "the endpoints of a symmetric protocol are alike".into(),
            )
            .with_help(if nothing {
                "remove `Nothing controls`: in a symmetric protocol either side may write"
            } else {
                "remove the owner: in a symmetric protocol either side may write"
            }),
            CheckError::SequenceNeedsTwo { span } => new(
                E_SEQUENCE_NEEDS_TWO,
                "a sequence needs two endpoints".into(),
                span,
                "this protocol has one endpoint".into(),
            )
            .with_help("declare a second endpoint (`Endpoint A; Endpoint B;`), or use functions"),
            CheckError::SequenceListedTwice { name, span, previous } => new(
                E_DUPLICATE,
                format!("sequence `{name}` is listed twice in `Sequences`"),
                span,
                "listed again here".into(),
            )
            .with_secondary(Label::new(previous, "first listed here"))
            .with_help("list each sequence once: remove this entry"),
            CheckError::UndefinedSequence { name, span } => new(
                E_UNDEFINED_SEQUENCE,
                format!("sequence `{name}` is listed but not defined"),
                span,
                "no definition".into(),
            )
            .with_help(format!(
                "define it: `Sequence {name}() {{ ... }}` with the listed blocks, or remove the entry"
            )),
            CheckError::OrderMismatch { name, span, listed, defined, definition } => {
                let shown = |blocks: &[(String, String)]| {
                    blocks.iter().map(|(e, b)| format!("{e}.{b}")).collect::<Vec<_>>().join(" -> ")
                };
                new(
                    E_ORDER_MISMATCH,
                    format!(
                        "sequence `{name}` is listed as `{}` but defined as `{}`",
                        shown(&listed),
                        shown(&defined)
                    ),
                    span,
                    "listed here".into(),
                )
                .with_secondary(Label::new(definition, "defined here"))
                .with_help(
                    "make the `Sequences` entry and the definition list the same blocks in the same order",
                )
            }
            CheckError::BlocksDontAlternate { endpoint, span } => {
                let help = "each block runs on the other endpoint from the one before; merge the two blocks or put one on the other side";
                new(
                    E_BLOCKS_DONT_ALTERNATE,
                    format!("two blocks in a row run on `{endpoint}`"),
                    span,
                    "same endpoint as the block before".into(),
                )
                .with_help(help)
            }
            CheckError::MissingReturn { function, returns, span } => {
                let shown = returns.iter().map(ty).collect::<Vec<_>>().join(", ");
                new(
                    E_MISSING_RETURN,
                    format!("function `{function}` can end without returning {shown}"),
                    span,
                    "this end of the function can be reached".into(),
                )
                .with_help("return a value on every path, e.g. add a `return` before the closing `}`")
            }
            CheckError::UnusedVariable { name, span } => {
                new(W_UNUSED_VARIABLE, format!("`{name}` is never read"), span, "declared here".into())
                    .with_help(format!("remove it, or name it `_{name}` to keep it"))
            }
            CheckError::Unreachable { span, leaves } => {
                new(W_UNREACHABLE, "unreachable code".into(), span, "this never runs".into())
                    .with_secondary(Label::new(leaves, "because control leaves here"))
                    .with_help("remove it, or move it before the statement that leaves")
            }
            CheckError::NotIterable { ty: t, span } => new(
                E_NOT_ITERABLE,
                format!("cannot loop over {}", ty(&t)),
                span,
                "not a List, Map or Text".into(),
            )
            .with_help("`for` iterates List elements, Map keys, Text characters, or `range(a, b)`"),
            CheckError::LoopVariableType { yields, declared, span } => {
                let (e, d) = (ty(&yields), ty(&declared));
                new(
                    E_MISMATCHED_TYPES,
                    format!("mismatched types: the loop yields {e}, the variable is {d}"),
                    span,
                    format!("expected {e}"),
                )
                .with_help(format!("declare the loop variable as {e}"))
            }
            CheckError::LoopTargetType { yields, name, ty: t, span } => {
                let (e, d) = (ty(&yields), ty(&t));
                new(
                    E_MISMATCHED_TYPES,
                    format!("mismatched types: the loop yields {e}, `{name}` is {d}"),
                    span,
                    format!("expected {e}"),
                )
                .with_help(format!("loop with a new variable of that type instead: `for ({e} item in ...)`"))
            }
            CheckError::UnknownLoopVariable { name, item, span } => {
                new(E_UNKNOWN_NAME, format!("cannot find `{name}`"), span, "not declared".into())
                    .with_help(format!("declare it in the loop: `for ({} {name} in ...)`", ty(&item)))
            }
            CheckError::BreakOutsideLoop { keyword, span } => new(
                E_BREAK_OUTSIDE_LOOP,
                format!("`{keyword}` outside a loop"),
                span,
                "not inside `while` or `for`".into(),
            )
            .with_help("use `return` to leave a function early"),
            CheckError::UnreachableCatch { kind, span, earlier } => new(
                W_UNREACHABLE_CATCH,
                format!("this `catch ({kind} ...)` never runs"),
                span,
                "never reached".into(),
            )
            .with_secondary(Label::new(earlier, "this earlier clause catches it first"))
            .with_help("remove it, or move it before the clause that catches more"),
            CheckError::ShareNotExternal { ty: t, span } => new(
                E_NOT_EXTERNAL,
                format!("`extAssign` needs an External to share, found {}", ty(&t)),
                span,
                "not an External".into(),
            )
            .with_help("to store a value in the cell, write `extCopy value to x;`"),
            CheckError::ShareMismatch { source, target, span } => {
                let (s, t) = (ty(&source), ty(&target));
                new(
                    E_MISMATCHED_TYPES,
                    format!("mismatched types: {s} shared into {t}"),
                    span,
                    format!("expected {t}"),
                )
                .with_help("`extAssign` shares one cell between two Externals of the same type; copy the value into this one with `extCopy` instead")
            }
            CheckError::ConditionNotBool { ty: t, span } => new(
                E_CONDITION_NOT_BOOL,
                format!("a condition must be TrueFalse, found {}", ty(&t)),
                span,
                "not TrueFalse".into(),
            )
            .with_help("compare explicitly, e.g. `x != 0` or `len(l) > 0`"),
            CheckError::ReturnValueNotAllowed { in_block, span } => {
                let (place, help) = if in_block {
                    (
                        "a sequence block",
                        "assign the sequence's named results instead; they reach the starter when the sequence ends",
                    )
                } else {
                    ("`onCreate`", "`onCreate` returns nothing; write `return;`")
                };
                new(
                    E_RETURN_VALUE_NOT_ALLOWED,
                    format!("`return` with a value in {place}"),
                    span,
                    "nothing receives this value".into(),
                )
                .with_help(help)
            }
            CheckError::ReturnCount { given, expected, span } => {
                let what = if expected == 0 {
                    "this function returns nothing".to_owned()
                } else {
                    format!("this function returns {expected} value{}", plural(expected))
                };
                new(
                    E_VALUE_COUNT,
                    format!("`return` gives {given} value{}, {what}", plural(given)),
                    span,
                    format!("expected {expected}"),
                )
                .with_help("return exactly the values in the function's `returns` list")
            }
            CheckError::ReturnedType { found, expected, position, span } => {
                let (f, e) = (ty(&found), ty(&expected));
                new(
                    E_MISMATCHED_TYPES,
                    format!("mismatched types: returns {f} where {e} is expected"),
                    span,
                    format!("value {position} should be {e}"),
                )
                .with_help(format!("return {e} in this position, or change the function's `returns` list"))
            }
            CheckError::CompoundAssignType { op, result, target, span } => {
                let (r, w) = (ty(&result), ty(&target));
                new(
                    E_MISMATCHED_TYPES,
                    format!("mismatched types: `{}` gives {r}, the target is {w}", op.as_str()),
                    span,
                    format!("expected {w}"),
                )
                .with_help("the operator's result must have the target's type: convert the value first (`toText(x)` makes a Text), or write the operation out")
            }
            CheckError::DestructureType { position, found, target, span } => {
                let (f, w) = (ty(&found), ty(&target));
                new(
                    E_MISMATCHED_TYPES,
                    format!("mismatched types: value {position} is {f}, its target is {w}"),
                    span,
                    format!("this is {w}"),
                )
                .with_help(format!("declare the target as {f}, or give value {position} as {w}"))
            }
            CheckError::DestructureCount { targets, given, span } => new(
                E_VALUE_COUNT,
                format!("{targets} targets but the right side gives {given} value{}", plural(given)),
                span,
                format!("gives {given}"),
            )
            .with_help("destructure a call that returns exactly as many values as there are targets"),
            CheckError::AssignToExternal { name, span } => {
                let help = format!(
                    "write the value into the cell with `extCopy value to {name};`, or share another cell with `extAssign`"
                );
                new(
                    E_NOT_ASSIGNABLE,
                    format!("`{name}` is an External; `=` cannot change it"),
                    span,
                    "External variable".into(),
                )
                .with_help(help)
            }
            CheckError::NotAVariable { name, span } => new(
                E_NOT_ASSIGNABLE,
                format!("`{name}` is not a variable"),
                span,
                "cannot be assigned".into(),
            )
            .with_help("only variables, struct fields and List or Map elements can be assigned"),
            CheckError::TextInPlace { span } => new(
                E_NOT_ASSIGNABLE,
                "Text cannot be changed in place".into(),
                span,
                "a character of a Text".into(),
            )
            .with_help("build a new Text and assign it to the variable"),
            CheckError::AssignToExternalPlace { ty: t, span } => new(
                E_NOT_ASSIGNABLE,
                format!("this place holds an External ({}); `=` cannot change it", ty(&t)),
                span,
                "External place".into(),
            )
            .with_help("write the value into its cell with `extCopy value to ...;`, or make it refer to another cell with `extAssign`"),
            CheckError::NotExternalPlace { ty: t, span } => {
                let help = "`extCopy` and `extAssign` write into External variables, elements or calls returning an External";
                new(
                    E_NOT_EXTERNAL,
                    format!("the target must be an External place, found {}", ty(&t)),
                    span,
                    "not an External".into(),
                )
                .with_help(help)
            }
            CheckError::NotAPlace { span } => {
                new(E_NOT_ASSIGNABLE, "this expression cannot be assigned".into(), span, "not a place".into())
                    .with_help("only variables, struct fields and List or Map elements can be assigned")
            }
            CheckError::ExternalTarget { statement, ty: t, span } => new(
                E_NOT_EXTERNAL,
                format!("the target of `{statement}` must be an External, found {}", ty(&t)),
                span,
                "not an External".into(),
            )
            .with_help("to change an ordinary variable, assign it with `=`"),
            CheckError::ControlsViolation { name, owner, here, span, declared } => {
                let help = format!(
                    "write it in code that runs on `{owner}` (its functions or its blocks), or remove `{owner} controls`"
                );
                new(
                    E_CONTROLS_VIOLATION,
                    format!("`{name}` is controlled by `{owner}` and cannot be written on `{here}`"),
                    span,
                    format!("written on `{here}`"),
                )
                .with_secondary(Label::new(declared, format!("`{owner} controls` this")))
                .with_help(help)
            }
            CheckError::ExceptionAsValue { name, span } => new(
                E_NOT_A_VALUE,
                format!("`{name}` names exceptions, not a value"),
                span,
                "not a value".into(),
            )
            .with_help("exception kinds appear only in `catch (Kind as e)`"),
            CheckError::FunctionAsValue { name, span } => {
                new(E_NOT_A_VALUE, format!("`{name}` is a function, not a value"), span, "not a value".into())
                    .with_help(format!("call it: `{name}(...)`; Function values come from the host"))
            }
            CheckError::EmptyList { span } => new(
                E_CANNOT_INFER,
                "the element type of `[]` cannot be known here".into(),
                span,
                "empty list".into(),
            )
            .with_help("declare a variable with its type first: `List(element: Number) l = [];`"),
            CheckError::EmptyMap { span } => new(
                E_CANNOT_INFER,
                "the key and value types of `{}` cannot be known here".into(),
                span,
                "empty map".into(),
            )
            .with_help("declare a variable with its type first: `Map(from: Text, to: Number) m = {};`"),
            CheckError::MapLiteralKey { ty: t, span } => new(
                E_BAD_MAP_KEY,
                format!("a Map cannot have keys of type {}", ty(&t)),
                span,
                "not a key type".into(),
            )
            .with_help("Map keys are Numbers, Texts or TrueFalses"),
            CheckError::UnaryOperand { op, found, span } => {
                let (want, help) = if op == UnaryOp::Neg {
                    (Ty::Number, "negate Numbers only")
                } else {
                    (Ty::Bool, "`not` takes a TrueFalse; compare first")
                };
                let (f, w) = (ty(&found), ty(&want));
                new(
                    E_BAD_OPERANDS,
                    format!("`{}` needs {w}, found {f}", op.as_str()),
                    span,
                    format!("not {w}"),
                )
                .with_help(help)
            }
            CheckError::UnknownField { struct_name, field, fields, span } => {
                let fields: Vec<String> = fields.iter().map(|f| format!("`{f}`")).collect();
                new(
                    E_UNKNOWN_FIELD,
                    format!("struct `{struct_name}` has no field `{field}`"),
                    span,
                    "unknown field".into(),
                )
                .with_help(format!("its fields are {}", fields.join(", ")))
            }
            CheckError::FieldOfNonStruct { ty: t, field, span } => new(
                E_UNKNOWN_FIELD,
                format!("{} has no field `{field}`", ty(&t)),
                span,
                "no such field".into(),
            )
            .with_help("fields belong to structs; methods are called with parentheses, e.g. `l.append(x)`"),
            CheckError::NotIndexable { ty: t, span } => new(
                E_NOT_INDEXABLE,
                format!("{} cannot be indexed", ty(&t)),
                span,
                "not a List, Map or Text".into(),
            )
            .with_help("`x[i]` reads a List element, a Map value or a Text character"),
            CheckError::UnknownResult { span } => {
                let help = "store it in a variable of the type you expect first (`Struct S s = e.f();`): the runtime checks it there";
                new(
                    E_CANNOT_INFER,
                    "the type of this result cannot be known here".into(),
                    span,
                    "a call on an endpoint the checker cannot identify".into(),
                )
                .with_help(help)
            }
            CheckError::ArgCount { callee, expected, given, span } => new(
                E_ARG_COUNT,
                format!("{} takes {expected} argument{}, {given} given", callee.describe(), plural(expected)),
                span,
                format!("expected {expected}"),
            )
            .with_help("pass one argument per parameter, in order"),
            CheckError::WrongStarter { sequence, starter, here, span, first_block } => new(
                E_WRONG_STARTER,
                format!("sequence `{sequence}` starts on `{starter}` but is started from `{here}`"),
                span,
                format!("started on `{here}`"),
            )
            .with_secondary(Label::new(first_block, format!("its first block runs on `{starter}`")))
            .with_help(format!(
                "start it from code that runs on `{starter}`, or begin the sequence with a block on `{here}`"
            )),
            CheckError::OnCreateCalled { span } => {
                let help = "`onCreate` runs once when the endpoint is created; move the shared code into a Private Function and call that";
                new(E_ONCREATE_CALLED, "`onCreate` cannot be called".into(), span, "called here".into())
                    .with_help(help)
            }
            CheckError::ExceptionCalled { name, span } => {
                new(E_NOT_CALLABLE, format!("`{name}` cannot be called"), span, "an exception kind".into())
                    .with_help("exception kinds appear only in `catch (Kind as e)`")
            }
            CheckError::NotCallable { ty: t, span } => {
                new(E_NOT_CALLABLE, format!("{} is not a function", ty(&t)), span, "cannot be called".into())
                    .with_help("only functions, sequences, builtins and Function values can be called")
            }
            CheckError::UnknownFieldCalled { struct_name, field, span } => new(
                E_UNKNOWN_FIELD,
                format!("struct `{struct_name}` has no field `{field}`"),
                span,
                "unknown field".into(),
            )
            .with_help("structs have fields, not methods: pass the struct to a function instead"),
            CheckError::NoMethod { ty: t, method, span } => {
                let elsewhere = "methods exist on Lists (`append`, `insert`, `remove`), Maps (`remove`) and Endpoints (`id`, public functions)";
                let help = match t.value() {
                    Ty::List(_) => "Lists have `append(x)`, `insert(i, x)` and `remove(i)`",
                    Ty::Map(..) => "Maps have `remove(k)`; assign `m[k] = v` to add",
                    _ => elsewhere,
                };
                new(
                    E_UNKNOWN_FIELD,
                    format!("{} has no method `{method}`", ty(&t)),
                    span,
                    "unknown method".into(),
                )
                .with_help(help)
            }
            CheckError::IdInPeered { span } => new(
                E_ID_IN_PEERED,
                "`id()` in a peered initializer".into(),
                span,
                "a different value on each side".into(),
            )
            .with_help(
                "peered data starts the same on both sides; give it a value in the `onCreate` of the endpoint that controls it",
            ),
            CheckError::PrivateFunction { name, endpoint, span, declared } => {
                new(E_NOT_PUBLIC, format!("`{name}` is private to `{endpoint}`"), span, "not public".into())
                    .with_secondary(Label::new(declared, "declared Private here"))
                    .with_help(format!("call it directly as `{name}(...)`, or make it `Public`"))
            }
            CheckError::NoPublicFunction { name, endpoint, span } => new(
                E_NOT_PUBLIC,
                format!("`{endpoint}` has no public function `{name}`"),
                span,
                "unknown function".into(),
            )
            .with_help("call one of the endpoint's public functions"),
            CheckError::LenArgument { ty: t, span } => new(
                E_MISMATCHED_TYPES,
                format!("`len` takes a List, Map or Text, found {}", ty(&t)),
                span,
                "no length".into(),
            )
            .with_help("`len(x)` counts List elements, Map entries or Text characters"),
            CheckError::ToTextArgument { ty: t, span } => new(
                E_MISMATCHED_TYPES,
                format!("`toText` converts Number, Text or TrueFalse, found {}", ty(&t)),
                span,
                "cannot convert".into(),
            )
            .with_help("convert the parts one by one and join them with `+`"),
            CheckError::PrintNoValue { span } => {
                new(E_NO_VALUE, "`print` needs a value".into(), span, "no single value".into())
                    .with_help("print a Number, a Text or a TrueFalse")
            }
            CheckError::SignalWithoutFunction { span } => new(
                E_ARG_COUNT,
                "`signal` needs a Function and its arguments".into(),
                span,
                "no function given".into(),
            )
            .with_help("write `signal(f, args...)` with `f` a Function value from the host"),
            CheckError::SignalNotFunction { ty: t, span } => new(
                E_MISMATCHED_TYPES,
                format!("`signal` needs a Function, found {}", ty(&t)),
                span,
                "not a Function".into(),
            )
            .with_help("pass a Function value given by the host (for example through `onCreate`)"),
            CheckError::NothingAsData { span } => new(
                E_BAD_TYPE_USE,
                "`Nothing` is not a type of data".into(),
                span,
                "no value has this type".into(),
            )
            .with_help("`Nothing` only appears in Function types, as `in: Nothing` or `returns: Nothing`"),
            CheckError::MapKeyType { ty: t, span } => new(
                E_BAD_MAP_KEY,
                format!("a Map cannot have keys of type {}", ty(&t)),
                span,
                "not a key type".into(),
            )
            .with_help("Map keys are Number, Text or TrueFalse, so that they have an order"),
            CheckError::UnknownStruct { name, span } => {
                new(E_UNKNOWN_TYPE, format!("no struct named `{name}`"), span, "not declared".into())
                    .with_help(format!("declare it: `Struct {name} {{ Number x; }}`"))
            }
            CheckError::NestedExternal { span } => new(
                E_BAD_TYPE_USE,
                "an External cannot hold an External".into(),
                span,
                "nested External".into(),
            )
            .with_help("write `External T` once; a cell holds a value, not another cell"),
            CheckError::NoValue { span } => {
                new(E_NO_VALUE, "this call returns nothing".into(), span, "no value".into())
                    .with_help("use the call as a statement on its own")
            }
            CheckError::SeveralValues { count, expected, span } => new(
                E_VALUE_COUNT,
                format!("this call returns {count} values where one is {}", expected.as_str()),
                span,
                format!("{count} values"),
            )
            .with_help("destructure it first: `a, b = f();`"),
            CheckError::Mismatch { expected, found, expectation, span } => {
                let (f, e) = (ty(&found), ty(&expected));
                let help = if matches!(expected, Ty::External(_)) {
                    "an External is needed here: pass an External variable, not a value".to_owned()
                } else if expected == Ty::Text && matches!(found, Ty::Number | Ty::Bool) {
                    "convert it with `toText(...)`".to_owned()
                } else {
                    format!("a value of type {e} is {} here", expectation.as_str())
                };
                new(
                    E_MISMATCHED_TYPES,
                    format!("mismatched types: expected {e}, found {f}"),
                    span,
                    format!("expected {e}"),
                )
                .with_help(help)
            }
            CheckError::BadOperands { op, left, right, span } => {
                let help = match op {
                    BinOp::Add => {
                        if matches!(
                            (&left, &right),
                            (Ty::Text, Ty::Number | Ty::Bool) | (Ty::Number | Ty::Bool, Ty::Text)
                        ) {
                            "convert the other side with `toText(...)`"
                        } else {
                            "`+` adds two Numbers or joins two Texts"
                        }
                    }
                    BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Rem => "arithmetic takes Numbers",
                    BinOp::And | BinOp::Or => "`and` and `or` take TrueFalse values; compare first",
                    BinOp::Eq | BinOp::Ne => "`==` and `!=` compare two values of the same type",
                    BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                        "ordering compares two Numbers or two Texts"
                    }
                    BinOp::In | BinOp::NotIn => {
                        "`x in c` looks for an element of a List, a key of a Map, or a Text inside a Text"
                    }
                };
                let (l, r) = (ty(&left), ty(&right));
                new(
                    E_BAD_OPERANDS,
                    format!("`{}` cannot be applied to {l} and {r}", op.as_str()),
                    span,
                    format!("{l} {} {r}", op.as_str()),
                )
                .with_help(help)
            }
            CheckError::UnknownName { name, span, help } => {
                let help = match help {
                    NameHelp::OtherEndpoint { function, owner, here } => {
                        let what = if function { "a function" } else { "data" };
                        format!(
                            "`{name}` is {what} of `{owner}`, and this code runs on `{here}`: reach the other side with a sequence, or declare the data as Peered"
                        )
                    }
                    NameHelp::DeclaredLater => format!(
                        "`{name}` is declared further down: an initializer can use only the data declared before it"
                    ),
                    NameHelp::Similar(similar) => {
                        format!("a name with a similar spelling is visible here: `{similar}`")
                    }
                    NameHelp::Literal(help) => help.to_owned(),
                    NameHelp::Declare => {
                        let help = "declare it before this use (locals are visible from their declaration to the end of the function)";
                        help.to_owned()
                    }
                };
                new(E_UNKNOWN_NAME, format!("cannot find `{name}`"), span, "not declared here".into())
                    .with_help(help)
            }
        };
        d.severity = severity;
        d
    }
}
