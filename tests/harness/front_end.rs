//! Front-end tests that are not one-file-one-expectation: operator precedence, spans,
//! syntax-tree snapshots, nesting limits, and hostile input (property tests).

use proptest::prelude::*;
use waldo_grammar::{Expr, ExprKind, FileId, Item, Member, StmtKind, parse};

/// Parses `expr` as the value of an assignment and returns it.
fn expr(src_expr: &str) -> (String, Expr) {
    let src = format!("P Endpoint A; A {{ Public Function f() {{ x = {src_expr}; }} }}");
    let (tree, errors) = parse(&src, FileId(0));
    assert!(errors.is_empty(), "`{src_expr}` should parse: {errors:?}");
    let Item::Endpoint(body) = &tree.items[0] else { panic!("expected an endpoint body") };
    let Member::Function(f) = &body.members[0] else { panic!("expected a function") };
    let StmtKind::Assign { value, .. } = &f.body.stmts[0].kind else { panic!("expected an assignment") };
    (src, value.clone())
}

fn grouping(src_expr: &str) -> String {
    expr(src_expr).1.to_string()
}

#[test]
fn precedence_follows_the_table() {
    assert_eq!(grouping("a or b and c"), "(a or (b and c))");
    assert_eq!(grouping("not x == y"), "(not (x == y))");
    assert_eq!(grouping("1 + 2 * 3 - 4 / 2 % 3"), "((1 + (2 * 3)) - ((4 / 2) % 3))");
    assert_eq!(grouping("-x[i].f(y)"), "(-x[i].f(y))");
}

#[test]
fn associativity_and_the_other_levels() {
    assert_eq!(grouping("a - b - c"), "((a - b) - c)");
    assert_eq!(grouping("a / b * c % d"), "(((a / b) * c) % d)");
    assert_eq!(grouping("a and b or c and d"), "((a and b) or (c and d))");
    assert_eq!(grouping("a or b or c"), "((a or b) or c)");
    assert_eq!(grouping("a + b < c * d"), "((a + b) < (c * d))");
    assert_eq!(grouping("x not in l or y in m"), "((x not in l) or (y in m))");
    assert_eq!(grouping("not a and not b"), "((not a) and (not b))");
    assert_eq!(grouping("not not a"), "(not (not a))");
    assert_eq!(grouping("- - a * b"), "((-(-a)) * b)");
    assert_eq!(grouping("(a or b) and c"), "((a or b) and c)");
    assert_eq!(grouping("(a < b) == (c < d)"), "((a < b) == (c < d))");
    assert_eq!(grouping("a.b.c[d](e)(f)"), "a.b.c[d](e)(f)");
    assert_eq!(grouping("[1, [2], {}]"), "[1, [2], {}]");
    assert_eq!(grouping("{'k': [1 + 2]}"), "{\"k\": [(1 + 2)]}");
}

#[test]
fn spans_cover_exactly_their_source() {
    let (src, e) = expr("a + b * c");
    let slice = |e: &Expr| &src[e.span.range()];
    assert_eq!(slice(&e), "a + b * c");
    let ExprKind::Binary { lhs, rhs, op_span, .. } = &e.kind else { panic!("expected a binary expression") };
    assert_eq!(slice(lhs), "a");
    assert_eq!(slice(rhs), "b * c");
    assert_eq!(&src[op_span.range()], "+");

    let (src, e) = expr("-x[i].f(y)");
    assert_eq!(&src[e.span.range()], "-x[i].f(y)");
    let ExprKind::Unary { operand, .. } = &e.kind else { panic!("expected a unary expression") };
    assert_eq!(&src[operand.span.range()], "x[i].f(y)");
    let ExprKind::Call { callee, args } = &operand.kind else { panic!("expected a call") };
    assert_eq!(&src[callee.span.range()], "x[i].f");
    assert_eq!(&src[args[0].span.range()], "y");
}

#[test]
fn syntax_tree_of_ping_pong() {
    let src = include_str!("../../examples/protocols/ping_pong.wld");
    let (tree, errors) = parse(src, FileId(0));
    assert!(errors.is_empty());
    insta::assert_debug_snapshot!(tree);
}

#[test]
fn syntax_tree_of_statements() {
    let src = "Stmts Endpoint A; A {
  Public Function f(List(element: Number) xs) returns Number, Text {
    Number n = 0;
    for (Number x in xs) if (x > 0) n += x; elseIf (x == 0) continue; else break;
    while (n > 10) { n -= 1; }
    try { n = xs[0]; } catch (ApplicationException as e) { n = -1; } finally { }
    return n, 'done';
  }
}";
    let (tree, errors) = parse(src, FileId(0));
    assert!(errors.is_empty(), "{errors:?}");
    insta::assert_debug_snapshot!(tree);
}

#[test]
fn syntax_tree_of_declarations() {
    let src = "Decls Symmetric A, B;
Struct S { Function (in: Text; returns: Nothing) f; External Number e; }
Peered { Nothing controls Map(from: Text, to: List(element: Struct S)) m = {}; }
Sequences { Go: A.x -> B.y; }
Sequence Go(Endpoint who) returns { A.x { } B.y { } }
A { onCreate(Number n) { } Private Function g() { Go(self); } }";
    let (tree, errors) = parse(src, FileId(0));
    assert!(errors.is_empty(), "{errors:?}");
    insta::assert_debug_snapshot!(tree);
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    for src in [
        format!("P Endpoint A; A {{ Number n = {}1; }}", "1 + ".repeat(200_000)),
        format!("P Endpoint A; A {{ Number n = {}1; }}", "- ".repeat(200_000)),
        format!("P Endpoint A; A {{ Number n = {}1{}; }}", "[".repeat(100_000), "]".repeat(100_000)),
        format!(
            "P Endpoint A; A {{ Public Function f() {{ {}{} }} }}",
            "{".repeat(100_000),
            "}".repeat(100_000)
        ),
        format!("P Endpoint A; A {{ Public Function f() {{ {} x(); }} }}", "if (a) ".repeat(100_000)),
        format!("P Endpoint A; A {{ {}Number{} x; }}", "List(element: ".repeat(50_000), ")".repeat(50_000)),
    ] {
        let (tree, errors) = parse(&src, FileId(0));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].to_string().contains("nested too deeply"), "{}", errors[0]);
        drop(tree);
    }
    // A long flat list is not deep.
    let src = format!("P Endpoint A; A {{ List(element: Number) l = [{}1]; }}", "1, ".repeat(100_000));
    assert!(parse(&src, FileId(0)).1.is_empty());
}

#[test]
fn oversized_source_is_refused() {
    let src = " ".repeat(waldo_grammar::MAX_SOURCE_LEN + 1);
    let (_, errors) = parse(&src, FileId(0));
    assert_eq!(errors.len(), 1);
    assert!(errors[0].to_string().contains("too large"));
}

// ------------------------------------------------------------------ hostile input

/// Every span printed in the tree's `Debug` output (`start..end`), outside quoted strings.
fn debug_spans(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let (mut spans, mut i, mut in_string) = (Vec::new(), 0, false);
    let number = |i: &mut usize| {
        let start = *i;
        while *i < bytes.len() && bytes[*i].is_ascii_digit() {
            *i += 1;
        }
        text[start..*i].parse::<usize>().ok()
    };
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_string => i += 2,
            b'"' => {
                in_string = !in_string;
                i += 1;
            }
            b'0'..=b'9'
                if !in_string
                    && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric() && bytes[i - 1] != b'.') =>
            {
                let start = number(&mut i);
                if text[i..].starts_with("..") {
                    i += 2;
                    if let (Some(s), Some(e)) = (start, number(&mut i)) {
                        spans.push((s, e));
                    }
                }
            }
            _ => i += 1,
        }
    }
    spans
}

/// Parses and renders `src`; asserts every span lies within it, on character boundaries.
fn front_end_survives(src: &str) {
    let (tree, errors) = parse(src, FileId(0));
    for err in &errors {
        assert!(err.span.lo() <= err.span.hi() && err.span.hi() <= src.len(), "bad span {err:?}");
        assert!(src.is_char_boundary(err.span.lo()) && src.is_char_boundary(err.span.hi()), "{err:?}");
    }
    for (start, end) in debug_spans(&format!("{tree:?}")) {
        assert!(start <= end && end <= src.len(), "tree span {start}..{end} outside 0..{}", src.len());
    }
    // The checker runs when the file parses; rendering must not fail on any span either.
    let (diagnostics, rendered) = waldo_tests::diagnose("fuzz.wld", src);
    if !errors.is_empty() {
        assert_eq!(diagnostics.len(), errors.len());
    }
    for d in &diagnostics {
        let spans = std::iter::once(&d.primary).chain(&d.secondary);
        for label in spans {
            assert!(label.span.lo() <= label.span.hi() && label.span.hi() <= src.len(), "{d:?}");
            assert!(src.is_char_boundary(label.span.lo()) && src.is_char_boundary(label.span.hi()), "{d:?}");
        }
    }
    assert_eq!(rendered.is_empty(), diagnostics.is_empty());
    // Any source that lexes formats: the same tokens and comments (checked inside `format`),
    // idempotent, and with the same diagnostics.
    if waldo_grammar::lexer::lex(src).1.is_empty() {
        let formatted = waldo_grammar::format::format(src).unwrap_or_else(|e| panic!("{e}: {src:?}"));
        assert_eq!(
            waldo_grammar::format::format(&formatted).as_ref(),
            Ok(&formatted),
            "not idempotent: {src:?}"
        );
        let codes = |ds: &[waldo_compiler::Diagnostic]| ds.iter().map(|d| d.code).collect::<Vec<_>>();
        let (after, _) = waldo_tests::diagnose("fuzz.wld", &formatted);
        assert_eq!(codes(&after), codes(&diagnostics), "formatting changed the diagnostics of {src:?}");
    }
}

/// Replaces token `which` of `src` by another token of the same kind (a name by a name, a
/// type by a type, a literal by a literal...), so the result usually still parses and the
/// checker gets exercised.
fn substitute(src: &str, which: usize, pick: usize) -> String {
    use waldo_grammar::lexer::{Token, lex};
    const NAMES: &[&str] =
        &["x", "len", "self", "A", "B", "f", "id", "Exception", "onCreate", "total", "hits"];
    const TYPES: &[&str] = &["Number", "Text", "TrueFalse", "Endpoint", "Nothing"];
    const LITERALS: &[&str] = &["0", "1e3", "'t'", "True", "False", "[]", "{}", "[1]", "{'k': 2}"];
    const OPERATORS: &[&str] = &["+", "-", "*", "/", "%", "==", "!=", "<", ">=", "and", "or", "in"];
    let (tokens, _) = lex(src);
    if tokens.is_empty() {
        return src.to_owned();
    }
    let (l, token, r) = &tokens[which % tokens.len()];
    let pool = match token {
        Token::Ident(_) => NAMES,
        Token::NumberType | Token::TextType | Token::TrueFalse | Token::Endpoint | Token::Nothing => TYPES,
        Token::Number(_) | Token::Text(_) | Token::True | Token::False => LITERALS,
        Token::Plus
        | Token::Minus
        | Token::Star
        | Token::Slash
        | Token::Percent
        | Token::EqEq
        | Token::NotEq
        | Token::Lt
        | Token::Ge
        | Token::And
        | Token::Or
        | Token::In => OPERATORS,
        _ => return src.to_owned(),
    };
    format!("{}{}{}", &src[..*l], pool[pick % pool.len()], &src[*r..])
}

/// Tokens and fragments that reach deep parser states when shuffled.
const FRAGMENTS: &[&str] = &[
    "Endpoint",
    "Symmetric",
    "Sequences",
    "Sequence",
    "Peered",
    "Struct",
    "Public",
    "Private",
    "Function",
    "onCreate",
    "returns",
    "controls",
    "Nothing",
    "Number",
    "Text",
    "TrueFalse",
    "List",
    "Map",
    "External",
    "element",
    "from",
    "to",
    "in",
    "True",
    "False",
    "and",
    "or",
    "not",
    "if",
    "elseIf",
    "else",
    "while",
    "for",
    "break",
    "continue",
    "return",
    "try",
    "catch",
    "finally",
    "as",
    "extAssign",
    "extCopy",
    "self",
    "Jump",
    "onComplete",
    "finish()",
    "keys(m)",
    "x",
    "A",
    "B",
    "f",
    "12",
    "3.5",
    "1e999",
    "'t'",
    "\"u\\n\"",
    "'open",
    "/*",
    "*/",
    "//",
    "\n",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ";",
    ",",
    ":",
    ".",
    "->",
    "=",
    "+=",
    "-=",
    "*=",
    "/=",
    "%=",
    "+",
    "-",
    "*",
    "/",
    "%",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "$",
    "é",
    "\\",
];

fn cases(default: u32) -> u32 {
    // WALDO_FUZZ_SCALE=100 for a long run.
    let scale = std::env::var("WALDO_FUZZ_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    default * scale
}

fn corpus() -> Vec<String> {
    let mut programs = Vec::new();
    for dir in ["corpus/valid", "../examples/protocols"] {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        for entry in std::fs::read_dir(dir).expect("corpus directory exists") {
            programs
                .push(std::fs::read_to_string(entry.expect("readable entry").path()).expect("readable file"));
        }
    }
    programs.sort();
    programs
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize, usize),
    Insert(usize, &'static str),
    Duplicate(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..40usize).prop_map(|(at, n)| Mutation::Delete(at, n)),
        (any::<usize>(), proptest::sample::select(FRAGMENTS)).prop_map(|(at, f)| Mutation::Insert(at, f)),
        (any::<usize>(), 1..60usize).prop_map(|(at, n)| Mutation::Duplicate(at, n)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(src: &str, m: &Mutation) -> String {
    let boundary = |at: usize| {
        let mut at = at % (src.len() + 1);
        while !src.is_char_boundary(at) {
            at -= 1;
        }
        at
    };
    match *m {
        Mutation::Delete(at, n) => {
            let (a, b) = (boundary(at), boundary(at.saturating_add(n)));
            let (a, b) = (a.min(b), a.max(b));
            format!("{}{}", &src[..a], &src[b..])
        }
        Mutation::Insert(at, f) => {
            let a = boundary(at);
            format!("{} {f} {}", &src[..a], &src[a..])
        }
        Mutation::Duplicate(at, n) => {
            let (a, b) = (boundary(at), boundary(at.saturating_add(n)));
            let (a, b) = (a.min(b), a.max(b));
            format!("{}{}", &src[..b], &src[a..])
        }
        Mutation::Truncate(at) => src[..boundary(at)].to_owned(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(2_000), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        front_end_survives(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn random_token_soup_never_panics(parts in proptest::collection::vec(proptest::sample::select(FRAGMENTS), 0..120)) {
        front_end_survives(&parts.join(" "));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(4_000), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn checker_survives_same_kind_substitutions(
        pick in any::<proptest::sample::Index>(),
        substitutions in proptest::collection::vec((any::<usize>(), any::<usize>()), 1..5),
    ) {
        thread_local!(static CORPUS: Vec<String> = corpus());
        let mut src = CORPUS.with(|c| c[pick.index(c.len())].clone());
        for (which, choice) in &substitutions {
            src = substitute(&src, *which, *choice);
        }
        front_end_survives(&src);
    }

    #[test]
    fn mutated_valid_programs_never_panic(
        pick in any::<proptest::sample::Index>(),
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        thread_local!(static CORPUS: Vec<String> = corpus());
        let original = CORPUS.with(|c| c[pick.index(c.len())].clone());
        let mut src = original;
        for m in &mutations {
            src = apply(&src, m);
        }
        front_end_survives(&src);
    }
}

#[test]
fn debug_span_scanner_finds_spans() {
    assert_eq!(debug_spans(r#"Ident { "a..b\"1..2" } 3..4 x5..6 7.5..8"#), vec![(3, 4)]);
}

#[test]
fn every_snapshot_belongs_to_a_test() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for entry in std::fs::read_dir(root.join("harness/snapshots")).expect("snapshot directory exists") {
        let name = entry.expect("readable entry").file_name().into_string().expect("UTF-8 file name");
        if name.ends_with(".snap.new") || name.ends_with(".pending-snap") {
            continue; // insta's pending output of a failing snapshot test, reported there
        }
        if let Some(stem) = name.strip_prefix("invalid__").and_then(|n| n.strip_suffix(".snap")) {
            let wld = root.join("corpus/invalid").join(format!("{stem}.wld"));
            assert!(wld.exists(), "snapshot {name} has no corpus file {}", wld.display());
        } else {
            assert!(
                name.starts_with("front_end__") && name.ends_with(".snap"),
                "unexpected file {name} among snapshots"
            );
        }
    }
}

/// The book's source folder and its chapters: (path, text).
fn book_chapters() -> (std::path::PathBuf, Vec<(std::path::PathBuf, String)>) {
    let book = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../book/src");
    let mut chapters = Vec::new();
    for entry in std::fs::read_dir(&book).expect("book/src exists") {
        let path = entry.expect("readable entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            let text = std::fs::read_to_string(&path).expect("readable chapter");
            chapters.push((path, text));
        }
    }
    (book, chapters)
}

#[test]
fn every_wld_block_in_the_book_parses() {
    let mut blocks = 0;
    for (path, text) in book_chapters().1 {
        let mut rest = text.as_str();
        while let Some(start) = rest.find("```wld\n") {
            let body = &rest[start + 7..];
            let end = body.find("```").expect("closed code block");
            let (diagnostics, rendered) = waldo_tests::diagnose(&path.display().to_string(), &body[..end]);
            assert!(
                diagnostics.is_empty(),
                "a ```wld block in {} does not parse:\n{rendered}",
                path.display()
            );
            blocks += 1;
            rest = &body[end + 3..];
        }
    }
    assert!(blocks >= 4, "expected the book to hold Waldo examples, found {blocks}");
}

/// The book's Rust is included from code that is built and run (`{{#include path:anchor}}`
/// or `path:from:to`): every include names a file that exists and an anchor or lines in it,
/// and no Rust block is written inline.
#[test]
fn the_books_rust_comes_from_tested_code() {
    let (book, chapters) = book_chapters();
    let mut includes = 0;
    for (path, text) in chapters {
        let mut rest = text.as_str();
        while let Some(start) = rest.find("```rust") {
            let body = &rest[start..];
            let open_end = body.find('\n').expect("a code block line");
            let inner = &body[open_end + 1..];
            let end = inner.find("```").expect("closed code block");
            let code = inner[..end].trim();
            assert!(
                code.starts_with("{{#include ") && code.ends_with("}}") && !code.contains('\n'),
                "a Rust block in {} is written inline; include it from an example instead:\n{code}",
                path.display()
            );
            rest = &inner[end + 3..];
        }
        let mut rest = text.as_str();
        while let Some(start) = rest.find("{{#include ") {
            let body = &rest[start + 11..];
            let end = body.find("}}").expect("a closed include");
            let spec = &body[..end];
            let mut parts = spec.splitn(2, ':');
            let file = book.join(parts.next().expect("a path"));
            let source = std::fs::read_to_string(&file).unwrap_or_else(|e| {
                panic!("{}: the include {spec} names {}: {e}", path.display(), file.display())
            });
            if let Some(selector) = parts.next() {
                let first = selector.split(':').next().unwrap_or("");
                if first.parse::<usize>().is_err() {
                    assert!(
                        source.contains(&format!("ANCHOR: {first}"))
                            && source.contains(&format!("ANCHOR_END: {first}")),
                        "{}: the include {spec} names an anchor that {} lacks",
                        path.display(),
                        file.display()
                    );
                } else {
                    for n in selector.split(':').filter(|n| !n.is_empty()) {
                        let line: usize = n.parse().expect("a line number");
                        assert!(
                            line <= source.lines().count(),
                            "{}: {spec} is past the end of the file",
                            path.display()
                        );
                    }
                }
            }
            includes += 1;
            rest = &body[end..];
        }
    }
    assert!(includes >= 5, "expected the book to include tested code, found {includes} includes");
}

/// Codes that no corpus file can carry, and the test that covers each instead.
const COVERED_ELSEWHERE: &[(&str, &str)] = &[
    ("E0018", "waldo-compiler tests/file_errors.rs (a 64 MiB file has no place in the corpus)"),
    ("E0019", "waldo-compiler tests/file_errors.rs (the corpus is read as UTF-8)"),
];

#[test]
fn every_code_has_an_invalid_program() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/invalid");
    let mut expected: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(dir).expect("corpus directory exists") {
        let source = std::fs::read_to_string(entry.expect("readable entry").path()).expect("readable file");
        expected.extend(waldo_tests::expected_codes(&source).unwrap_or_default());
    }
    for (code, _) in waldo_compiler::codes::ALL {
        assert!(
            expected.iter().any(|c| c == code) || COVERED_ELSEWHERE.iter().any(|(c, _)| c == code),
            "no program in corpus/invalid expects {code}"
        );
    }
}

#[test]
fn the_book_lists_every_code() {
    let page = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../book/src/diagnostics.md"),
    )
    .expect("book/src/diagnostics.md exists");
    for (code, _) in waldo_compiler::codes::ALL {
        assert!(page.contains(code), "book/src/diagnostics.md does not list {code}");
    }
}
