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
];
