//! The stable diagnostic codes. A code never changes meaning once released; retired codes
//! are not reused. `E00xx` are syntax errors, `E01xx` and above come from the checker,
//! `W0xxx` are warnings.

/// A token that cannot appear where it is.
pub const E_UNEXPECTED_TOKEN: &str = "E0001";
/// The file ends inside a construct.
pub const E_UNEXPECTED_EOF: &str = "E0002";
/// A character that starts no token.
pub const E_UNEXPECTED_CHAR: &str = "E0003";
/// A text literal without its closing quote.
pub const E_UNTERMINATED_TEXT: &str = "E0004";
/// An unknown escape in a text literal.
pub const E_BAD_ESCAPE: &str = "E0005";
/// A `/*` comment without `*/`.
pub const E_UNTERMINATED_COMMENT: &str = "E0006";
/// Syntax of Waldo 2013 that is no longer supported.
pub const E_LEGACY: &str = "E0007";
/// The file does not start with the protocol name.
pub const E_MISSING_PROTOCOL_NAME: &str = "E0008";
/// More than two endpoints declared.
pub const E_TOO_MANY_ENDPOINTS: &str = "E0009";
/// A function without `Public` or `Private`.
pub const E_MISSING_VISIBILITY: &str = "E0010";
/// Assignment to something that is not a place.
pub const E_INVALID_ASSIGN_TARGET: &str = "E0011";
/// `a, b += e`.
pub const E_COMPOUND_MULTI_ASSIGN: &str = "E0012";
/// `a < b < c`.
pub const E_CHAINED_COMPARISON: &str = "E0013";
/// `catch (X as e)` with an unknown `X`.
pub const E_UNKNOWN_EXCEPTION_KIND: &str = "E0014";
/// `try` without `catch` or `finally`.
pub const E_TRY_WITHOUT_HANDLER: &str = "E0015";
/// A struct without fields.
pub const E_EMPTY_STRUCT: &str = "E0016";
/// A number literal beyond the range of a 64-bit float.
pub const E_NUMBER_TOO_LARGE: &str = "E0017";
/// A source file over the size limit.
pub const E_FILE_TOO_LARGE: &str = "E0018";
/// A source file that is not UTF-8.
pub const E_NOT_UTF8: &str = "E0019";
/// A statement or declaration without its `;`.
pub const E_MISSING_SEMICOLON: &str = "E0020";
/// Nesting deeper than the front end accepts.
pub const E_TOO_DEEP: &str = "E0021";

/// A name that is not declared anywhere visible.
pub const E_UNKNOWN_NAME: &str = "E0101";
/// A name declared again where it is already visible.
pub const E_DUPLICATE: &str = "E0102";
/// A declaration that reuses a builtin name.
pub const E_BUILTIN_DECLARED: &str = "E0103";
/// A struct type that is not declared.
pub const E_UNKNOWN_TYPE: &str = "E0104";
/// A name used as an endpoint that is not one of the protocol's.
pub const E_UNKNOWN_ENDPOINT: &str = "E0105";
/// A field or method that the value does not have.
pub const E_UNKNOWN_FIELD: &str = "E0106";
/// A value of one type where another is required.
pub const E_MISMATCHED_TYPES: &str = "E0107";
/// An operator applied to values it does not take.
pub const E_BAD_OPERANDS: &str = "E0108";
/// A condition that is not TrueFalse.
pub const E_CONDITION_NOT_BOOL: &str = "E0109";
/// A call with the wrong number of arguments.
pub const E_ARG_COUNT: &str = "E0110";
/// The wrong number of values returned or destructured.
pub const E_VALUE_COUNT: &str = "E0111";
/// A call of something that is not a function.
pub const E_NOT_CALLABLE: &str = "E0112";
/// Indexing a value that is not a List, Map or Text.
pub const E_NOT_INDEXABLE: &str = "E0113";
/// The result of a call that returns nothing used as a value.
pub const E_NO_VALUE: &str = "E0114";
/// A `for` loop over something that is not a List, Map or Text.
pub const E_NOT_ITERABLE: &str = "E0115";
/// A Map whose keys are not Number, Text or TrueFalse.
pub const E_BAD_MAP_KEY: &str = "E0116";
/// An empty `[]` or `{}` whose type cannot be known.
pub const E_CANNOT_INFER: &str = "E0117";
/// An assignment to something that cannot be written.
pub const E_NOT_ASSIGNABLE: &str = "E0118";
/// `extAssign` or `extCopy` with an operand that is not External.
pub const E_NOT_EXTERNAL: &str = "E0119";
/// A type used where it is not allowed (`Nothing` data, `External External`).
pub const E_BAD_TYPE_USE: &str = "E0120";
/// A struct that contains itself.
pub const E_RECURSIVE_STRUCT: &str = "E0121";
/// A function or sequence name used as a value.
pub const E_NOT_A_VALUE: &str = "E0122";
/// A function that can end without returning its value.
pub const E_MISSING_RETURN: &str = "E0130";
/// `return` with a value where nothing can be returned.
pub const E_RETURN_VALUE_NOT_ALLOWED: &str = "E0131";
/// `break` or `continue` outside a loop.
pub const E_BREAK_OUTSIDE_LOOP: &str = "E0132";
/// Two consecutive blocks of a sequence on the same endpoint.
pub const E_BLOCKS_DONT_ALTERNATE: &str = "E0140";
/// A sequence whose blocks differ from its `Sequences` entry.
pub const E_ORDER_MISMATCH: &str = "E0141";
/// A sequence listed in `Sequences` but not defined.
pub const E_UNDEFINED_SEQUENCE: &str = "E0142";
/// A sequence started from the endpoint that does not run its first block.
pub const E_WRONG_STARTER: &str = "E0143";
/// A write to peered data controlled by the other endpoint.
pub const E_CONTROLS_VIOLATION: &str = "E0144";
/// External, Function or Endpoint data in Peered or sequence-local data.
pub const E_HOST_TYPE_SHARED: &str = "E0145";
/// A call of `onCreate`.
pub const E_ONCREATE_CALLED: &str = "E0146";
/// A declared endpoint without a body.
pub const E_MISSING_BODY: &str = "E0147";
/// A second body for the same endpoint.
pub const E_DUPLICATE_BODY: &str = "E0148";
/// `controls` in a symmetric protocol.
pub const E_CONTROLS_IN_SYMMETRIC: &str = "E0149";
/// A body written for the mirrored endpoint of a symmetric protocol.
pub const E_MIRROR_BODY: &str = "E0150";
/// A sequence in a protocol with one endpoint.
pub const E_SEQUENCE_NEEDS_TWO: &str = "E0151";
/// A second `Sequences` or `Peered` section.
pub const E_DUPLICATE_SECTION: &str = "E0152";
/// An endpoint call of a function that is not public there.
pub const E_NOT_PUBLIC: &str = "E0153";
/// `id()` in a peered variable's initializer.
pub const E_ID_IN_PEERED: &str = "E0154";
/// Code after `return`, `break` or `continue` that never runs.
pub const W_UNREACHABLE: &str = "W0001";
/// A local variable that is never read.
pub const W_UNUSED_VARIABLE: &str = "W0002";
/// A `catch` clause that an earlier clause always takes first.
pub const W_UNREACHABLE_CATCH: &str = "W0003";

/// Every code with a one-line summary, in order.
pub const ALL: &[(&str, &str)] = &[
    (E_UNEXPECTED_TOKEN, "a token that cannot appear where it is"),
    (E_UNEXPECTED_EOF, "the file ends inside a construct"),
    (E_UNEXPECTED_CHAR, "a character that starts no token"),
    (E_UNTERMINATED_TEXT, "a text literal without its closing quote"),
    (E_BAD_ESCAPE, "an unknown escape in a text literal"),
    (E_UNTERMINATED_COMMENT, "a `/*` comment without `*/`"),
    (E_LEGACY, "legacy Waldo syntax that is no longer supported"),
    (E_MISSING_PROTOCOL_NAME, "the file does not start with the protocol's name"),
    (E_TOO_MANY_ENDPOINTS, "more than two endpoints declared"),
    (E_MISSING_VISIBILITY, "a function without `Public` or `Private`"),
    (E_INVALID_ASSIGN_TARGET, "assignment to something that is not a variable, field or element"),
    (E_COMPOUND_MULTI_ASSIGN, "a compound assignment with several targets"),
    (E_CHAINED_COMPARISON, "chained comparison operators"),
    (E_UNKNOWN_EXCEPTION_KIND, "`catch` of something that is not an exception kind"),
    (E_TRY_WITHOUT_HANDLER, "`try` without `catch` or `finally`"),
    (E_EMPTY_STRUCT, "a struct without fields"),
    (E_NUMBER_TOO_LARGE, "a number literal too large for a 64-bit float"),
    (E_FILE_TOO_LARGE, "a source file over the size limit"),
    (E_NOT_UTF8, "a source file that is not valid UTF-8"),
    (E_MISSING_SEMICOLON, "a statement or declaration without its `;`"),
    (E_TOO_DEEP, "expressions, statements or types nested too deeply"),
    (E_UNKNOWN_NAME, "a name that is not declared anywhere visible"),
    (E_DUPLICATE, "a name declared again where it is already visible"),
    (E_BUILTIN_DECLARED, "a declaration that reuses a builtin name"),
    (E_UNKNOWN_TYPE, "a struct type that is not declared"),
    (E_UNKNOWN_ENDPOINT, "a name used as an endpoint that is not one of the protocol's"),
    (E_UNKNOWN_FIELD, "a field or method that the value does not have"),
    (E_MISMATCHED_TYPES, "a value of one type where another is required"),
    (E_BAD_OPERANDS, "an operator applied to values it does not take"),
    (E_CONDITION_NOT_BOOL, "a condition that is not TrueFalse"),
    (E_ARG_COUNT, "a call with the wrong number of arguments"),
    (E_VALUE_COUNT, "the wrong number of values returned or destructured"),
    (E_NOT_CALLABLE, "a call of something that is not a function"),
    (E_NOT_INDEXABLE, "indexing a value that is not a List, Map or Text"),
    (E_NO_VALUE, "the result of a call that returns nothing used as a value"),
    (E_NOT_ITERABLE, "a `for` loop over something that is not a List, Map or Text"),
    (E_BAD_MAP_KEY, "a Map whose keys are not Number, Text or TrueFalse"),
    (E_CANNOT_INFER, "an empty `[]` or `{}` whose type cannot be known"),
    (E_NOT_ASSIGNABLE, "an assignment to something that cannot be written"),
    (E_NOT_EXTERNAL, "`extAssign` or `extCopy` with an operand that is not External"),
    (E_BAD_TYPE_USE, "a type used where it is not allowed (`Nothing` data, `External External`)"),
    (E_RECURSIVE_STRUCT, "a struct that contains itself"),
    (E_NOT_A_VALUE, "a function or sequence name used as a value"),
    (E_MISSING_RETURN, "a function that can end without returning its value"),
    (E_RETURN_VALUE_NOT_ALLOWED, "`return` with a value where nothing can be returned"),
    (E_BREAK_OUTSIDE_LOOP, "`break` or `continue` outside a loop"),
    (E_BLOCKS_DONT_ALTERNATE, "two consecutive blocks of a sequence on the same endpoint"),
    (E_ORDER_MISMATCH, "a sequence whose blocks differ from its `Sequences` entry"),
    (E_UNDEFINED_SEQUENCE, "a sequence listed in `Sequences` but not defined"),
    (E_WRONG_STARTER, "a sequence started from the endpoint that does not run its first block"),
    (E_CONTROLS_VIOLATION, "a write to peered data controlled by the other endpoint"),
    (E_HOST_TYPE_SHARED, "External, Function or Endpoint data in Peered or sequence-local data"),
    (E_ONCREATE_CALLED, "a call of `onCreate`"),
    (E_MISSING_BODY, "a declared endpoint without a body"),
    (E_DUPLICATE_BODY, "a second body for the same endpoint"),
    (E_CONTROLS_IN_SYMMETRIC, "`controls` in a symmetric protocol"),
    (E_MIRROR_BODY, "a body written for the mirrored endpoint of a symmetric protocol"),
    (E_SEQUENCE_NEEDS_TWO, "a sequence in a protocol with one endpoint"),
    (E_DUPLICATE_SECTION, "a second `Sequences` or `Peered` section"),
    (E_NOT_PUBLIC, "an endpoint call of a function that is not public there"),
    (E_ID_IN_PEERED, "`id()` in a peered variable's initializer"),
    (W_UNREACHABLE, "code after `return`, `break` or `continue` that never runs"),
    (W_UNUSED_VARIABLE, "a local variable that is never read"),
    (W_UNREACHABLE_CATCH, "a `catch` clause that an earlier clause always takes first"),
];
