//! Compiler speed on a generated 10,000-line protocol: lexing, parsing, checking, and
//! generating Rust.
//!
//! Run with `cargo bench -p waldo-compiler --bench front_end` (`-- --quick` for a short run).
//! Prints the median and spread of lexing alone (the baseline, measured in the same run), of
//! lexing plus parsing, and of checking a parsed tree, with ratios, as a table and as
//! `name: value` lines. Dropping the tree is timed separately.

use std::hint::black_box;
use std::time::{Duration, Instant};

use waldo_grammar::{FileId, lexer, parse};

/// Times `f` (its result is dropped outside the timed region) and then the drop of the
/// result; returns both sorted.
fn measure<T>(iterations: usize, mut f: impl FnMut() -> T) -> (Vec<Duration>, Vec<Duration>) {
    for _ in 0..3 {
        drop(f()); // warm up caches and the allocator
    }
    let (mut times, mut drops) = (Vec::new(), Vec::new());
    for _ in 0..iterations {
        let start = Instant::now();
        let value = black_box(f());
        times.push(start.elapsed());
        let start = Instant::now();
        drop(value);
        drops.push(start.elapsed());
    }
    times.sort();
    drops.sort();
    (times, drops)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let iterations = if quick { 15 } else { 41 };
    let src = waldo_compiler::sample::protocol(10_000);
    let lines = src.lines().count();
    let (_, errors) = parse(&src, FileId(0));
    assert!(errors.is_empty(), "the generated protocol must parse: {:?}", &errors[..errors.len().min(3)]);

    let (lex, _) = measure(iterations, || lexer::lex(black_box(&src)));
    let (full, drops) = measure(iterations, || parse(black_box(&src), FileId(0)));
    let (tree, _) = parse(&src, FileId(0));
    let (_, diagnostics) = waldo_compiler::check::check(&tree);
    assert!(
        diagnostics.is_empty(),
        "the generated protocol must check clean: {:?}",
        &diagnostics[..diagnostics.len().min(3)]
    );
    let (check, _) = measure(iterations, || waldo_compiler::check::check(black_box(&tree)));
    // With its source, as `build.rs` and `waldoc` check it: the code notes the lines that
    // exceptions name.
    let (protocol, _) = waldo_compiler::check::check(&tree);
    let protocol = protocol.with_source(&src);
    let options = waldo_compiler::codegen::Options { source_name: "sample.wld".into(), ..Default::default() };
    let (generate, _) = measure(iterations, || {
        waldo_compiler::codegen::generate(black_box(&protocol), &options).expect("generates")
    });
    let (lex_p50, full_p50) = (lex[lex.len() / 2], full[full.len() / 2]);

    println!("front end on a generated protocol: {lines} lines, {} bytes, {iterations} runs", src.len());
    println!("{:<14} {:>10} {:>10} {:>10}", "", "min ms", "p50 ms", "max ms");
    for (name, t) in [
        ("lex", &lex),
        ("lex+parse", &full),
        ("drop tree", &drops),
        ("check", &check),
        ("generate", &generate),
    ] {
        println!("{name:<14} {:>10.2} {:>10.2} {:>10.2}", ms(t[0]), ms(t[t.len() / 2]), ms(t[t.len() - 1]));
    }
    println!("parse.lines: {lines}");
    println!("parse.lex_p50_ms: {:.3}", ms(lex_p50));
    println!("parse.lex_parse_p50_ms: {:.3}", ms(full_p50));
    println!("parse.drop_tree_p50_ms: {:.3}", ms(drops[drops.len() / 2]));
    println!("parse.lines_per_s: {:.0}", lines as f64 / full_p50.as_secs_f64());
    println!("ratio.lex_parse_vs_lex: {:.2}", full_p50.as_secs_f64() / lex_p50.as_secs_f64());
    let check_p50 = check[check.len() / 2];
    println!("check.p50_ms: {:.3}", ms(check_p50));
    println!("ratio.check_vs_lex_parse: {:.2}", check_p50.as_secs_f64() / full_p50.as_secs_f64());
    println!("goal.lex_parse_under_20ms: {}", ms(full_p50) < 20.0);
    println!("goal.check_under_50ms: {}", ms(check_p50) < 50.0);
    let generate_p50 = generate[generate.len() / 2];
    println!("generate.p50_ms: {:.3}", ms(generate_p50));
    println!("ratio.generate_vs_lex_parse: {:.2}", generate_p50.as_secs_f64() / full_p50.as_secs_f64());
    println!("goal.generate_under_100ms: {}", ms(generate_p50) < 100.0);
}
