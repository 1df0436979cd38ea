//! `waldoc`: the Waldo compiler's command line.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use waldo_compiler::{Color, SourceMap};

/// The Waldo protocol compiler.
#[derive(Parser)]
#[command(name = "waldoc", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and check `.wld` files; print every diagnostic; exit with 1 on any error.
    Check {
        /// The files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Explain a diagnostic code (e.g. `waldoc explain E0107`), with a wrong and a fixed example.
    Explain {
        /// The code, as printed in a diagnostic: `E0107`, `W0001`.
        code: String,
    },
    /// Draw the message sequences of a `.wld` file as a sequence diagram.
    Graph {
        /// The file to draw.
        file: PathBuf,
        /// The picture's format.
        #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
        format: GraphFormat,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Generate the Rust code of `.wld` files: one `<protocol>.rs` per file in `--out-dir`.
    Build {
        /// The files to compile.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Where to write the generated files.
        #[arg(long, value_name = "DIR", required_unless_present = "list")]
        out_dir: Option<PathBuf>,
        /// Write nothing: print the public Rust items of each protocol (the paths a host
        /// program names them by, with their signatures).
        #[arg(long)]
        list: bool,
        /// Emit only this endpoint (repeat for several); all endpoints by default.
        #[arg(long = "endpoint", value_name = "NAME")]
        endpoints: Vec<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Format `.wld` files in place: spacing, indentation and blank lines (line breaks and
    /// comments are kept). Exits with 1 if a file could not be formatted.
    Fmt {
        /// The files to format.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Change nothing: print the diff of each file that is not formatted and exit with 1
        /// if there is any (for CI).
        #[arg(long)]
        check: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Print the syntax tree of a `.wld` file (for debugging the compiler).
    Ast {
        /// The file to parse.
        file: PathBuf,
        #[command(flatten)]
        output: OutputArgs,
    },
}

#[derive(clap::Args)]
struct OutputArgs {
    /// How diagnostics are printed.
    #[arg(long, value_enum, default_value_t = MessageFormat::Human)]
    message_format: MessageFormat,
    /// When to colour diagnostics (`auto`: only when writing to a terminal).
    #[arg(long, value_enum, default_value_t = ColorArg::Auto)]
    color: ColorArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum GraphFormat {
    /// Mermaid `sequenceDiagram` text (renders on GitHub, in mdBook with a plugin...).
    Mermaid,
    /// A standalone SVG picture.
    Svg,
}

#[derive(Clone, Copy, ValueEnum)]
enum MessageFormat {
    /// Text with source snippets, like rustc.
    Human,
    /// One JSON object per diagnostic, one per line, on standard output.
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum ColorArg {
    Auto,
    Always,
    Never,
}

impl OutputArgs {
    fn color(&self) -> Color {
        match self.color {
            ColorArg::Always => Color::Always,
            ColorArg::Never => Color::Never,
            ColorArg::Auto => {
                let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
                if std::io::stderr().is_terminal() && !no_color { Color::Always } else { Color::Never }
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { files, output } => check(&files, &output),
        Command::Ast { file, output } => ast(&file, &output),
        Command::Explain { code } => explain(&code),
        Command::Graph { file, format, output } => graph(&file, format, &output),
        Command::Build { files, out_dir, list: true, endpoints, output } => {
            if !diagnose(&files, &output, false) {
                return ExitCode::FAILURE;
            }
            list(&files, out_dir, endpoints)
        }
        Command::Build { files, out_dir, list: false, endpoints, output } => {
            if !diagnose(&files, &output, false) {
                return ExitCode::FAILURE;
            }
            build(&files, out_dir, endpoints)
        }
        Command::Fmt { files, check, output } => fmt(&files, check, &output),
    }
}

/// Generates code for every file; prints what it wrote, or the diagnostics.
fn build(files: &[PathBuf], out_dir: Option<PathBuf>, endpoints: Vec<String>) -> ExitCode {
    let mut config = waldo_compiler::Config::new().cargo_metadata(false);
    if let Some(dir) = out_dir {
        config = config.out_dir(dir);
    }
    for e in endpoints {
        config = config.endpoint(e);
    }
    match config.compile(files) {
        Ok(written) => {
            for w in written {
                println!("wrote {}", w.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}", e.report());
            ExitCode::FAILURE
        }
    }
}

/// Prints the public Rust items of each file's generated code (into `out_dir` if given, else
/// a temporary directory that is removed).
fn list(files: &[PathBuf], out_dir: Option<PathBuf>, endpoints: Vec<String>) -> ExitCode {
    let scratch = out_dir.is_none();
    let dir =
        out_dir.unwrap_or_else(|| std::env::temp_dir().join(format!("waldoc-list-{}", std::process::id())));
    let mut config = waldo_compiler::Config::new().cargo_metadata(false).out_dir(&dir);
    for e in endpoints {
        config = config.endpoint(e);
    }
    let result = config.compile(files);
    let code = match result {
        Ok(written) => {
            let mut failed = false;
            for (i, w) in written.iter().enumerate() {
                let listed = std::fs::read_to_string(w).map_err(|e| e.to_string()).and_then(|code| {
                    waldo_compiler::codegen::listing::list(&code).map_err(|e| e.to_string())
                });
                match listed {
                    Ok(text) => {
                        if i > 0 {
                            println!();
                        }
                        let module =
                            w.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                        println!("// waldo::include_protocol!(\"{module}\") defines:");
                        print!("{text}");
                    }
                    Err(e) => {
                        eprintln!("error: cannot list `{}`: {e}", w.display());
                        failed = true;
                    }
                }
            }
            if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
        }
        Err(e) => {
            eprintln!("{}", e.report());
            ExitCode::FAILURE
        }
    };
    if scratch {
        let _ = std::fs::remove_dir_all(&dir);
    }
    code
}

/// Formats every file in place, or with `check` prints the diff of each unformatted one.
fn fmt(files: &[PathBuf], check: bool, output: &OutputArgs) -> ExitCode {
    let mut map = SourceMap::new();
    let (mut failed, mut unformatted, mut changed) = (false, 0usize, 0usize);
    for path in files {
        let source = match std::fs::read(path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(source) => source,
                Err(_) => {
                    // `check` renders the precise diagnostic (the first bad byte).
                    if let Ok(checked) = waldo_compiler::check_path(&mut map, path) {
                        report(&map, &checked.diagnostics, output);
                    }
                    failed = true;
                    continue;
                }
            },
            Err(err) => {
                eprintln!("error: cannot read `{}`: {err}", path.display());
                failed = true;
                continue;
            }
        };
        let name = path.display().to_string();
        let formatted = match waldo_compiler::format_source(&mut map, &name, &source) {
            Ok(formatted) => formatted,
            Err(waldo_compiler::FormatFailure::Syntax(diagnostics)) => {
                report(&map, &diagnostics, output);
                eprintln!("error: `{name}` has syntax errors; fix them to format it");
                failed = true;
                continue;
            }
            Err(waldo_compiler::FormatFailure::Internal(why)) => {
                eprintln!("error: `{name}` was left as it is: {why}");
                eprintln!("help: this is a bug in waldoc; please report it with the file attached");
                failed = true;
                continue;
            }
        };
        if formatted == source {
            continue;
        }
        if check {
            unformatted += 1;
            let diff = similar::TextDiff::from_lines(&source, &formatted);
            let header = (format!("{name} (as it is)"), format!("{name} (formatted)"));
            let diff = diff.unified_diff().context_radius(2).header(&header.0, &header.1).to_string();
            // Standard output holds only JSON when diagnostics are JSON.
            if matches!(output.message_format, MessageFormat::Json) {
                eprint!("{diff}");
            } else {
                print!("{diff}");
            }
        } else if let Err(err) = std::fs::write(path, &formatted) {
            eprintln!("error: cannot write `{name}`: {err}");
            failed = true;
        } else {
            changed += 1;
            eprintln!("formatted {name}");
        }
    }
    if check && unformatted > 0 {
        let plural = if unformatted == 1 { "" } else { "s" };
        eprintln!("{unformatted} file{plural} not formatted; run `waldoc fmt` on them");
        failed = true;
    } else if !check && !failed {
        let plural = if files.len() == 1 { "" } else { "s" };
        eprintln!("{} file{plural}: {changed} reformatted", files.len());
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

/// Checks every file, printing diagnostics as they come; returns 1 if any had an error.
fn check(files: &[PathBuf], output: &OutputArgs) -> ExitCode {
    if diagnose(files, output, true) { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// Checks every file and prints its diagnostics as `output` says (`build` does this first,
/// so its diagnostics come in colour or as JSON like `check`'s); false if any file has an
/// error or cannot be read. The summary line is printed on failure, and on success when
/// `summary_always`.
fn diagnose(files: &[PathBuf], output: &OutputArgs, summary_always: bool) -> bool {
    let mut map = SourceMap::new();
    let mut failed = false;
    let (mut errors, mut warnings) = (0usize, 0usize);
    for path in files {
        let checked = match waldo_compiler::check_path(&mut map, path) {
            Ok(checked) => checked,
            Err(err) => {
                eprintln!("error: cannot read `{}`: {err}", path.display());
                failed = true;
                errors += 1;
                continue;
            }
        };
        report(&map, &checked.diagnostics, output);
        for d in &checked.diagnostics {
            match d.severity {
                waldo_compiler::Severity::Error => errors += 1,
                waldo_compiler::Severity::Warning => warnings += 1,
            }
        }
        failed |= checked.has_errors();
    }
    if matches!(output.message_format, MessageFormat::Human) && (failed || summary_always) {
        summary(files.len(), errors, warnings);
    }
    !failed
}

fn summary(files: usize, errors: usize, warnings: usize) {
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    if errors > 0 {
        eprintln!(
            "{} and {} in {}",
            plural(errors, "error"),
            plural(warnings, "warning"),
            plural(files, "file")
        );
        eprintln!("for more about an error, try `waldoc explain CODE`");
    } else if warnings > 0 {
        eprintln!("checked {}: {}", plural(files, "file"), plural(warnings, "warning"));
    } else {
        eprintln!("checked {}: no problems found", plural(files, "file"));
    }
}

fn report(map: &SourceMap, diagnostics: &[waldo_compiler::Diagnostic], output: &OutputArgs) {
    match output.message_format {
        MessageFormat::Human => eprint!("{}", map.render(diagnostics, output.color())),
        MessageFormat::Json => print!("{}", map.to_json(diagnostics)),
    }
}

/// Prints the syntax tree; diagnostics (if any) go to standard error.
fn ast(path: &std::path::Path, output: &OutputArgs) -> ExitCode {
    let mut map = SourceMap::new();
    // Only the parse: type errors are `waldoc check`'s business.
    let checked = match waldo_compiler::parse_path(&mut map, path) {
        Ok(checked) => checked,
        Err(err) => {
            eprintln!("error: cannot read `{}`: {err}", path.display());
            return ExitCode::FAILURE;
        }
    };
    report(&map, &checked.diagnostics, output);
    if checked.has_errors() {
        // A tree with `Error` nodes where source was skipped is no use to anyone.
        return ExitCode::FAILURE;
    }
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`waldoc ast f | head`) is not an error worth reporting.
    let _ = writeln!(stdout, "{:#?}", checked.tree);
    ExitCode::SUCCESS
}

/// Prints the explanation page of a code.
fn explain(code: &str) -> ExitCode {
    match waldo_compiler::explain::page(code) {
        Some(page) => {
            let _ = std::io::stdout().lock().write_all(page.as_bytes());
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("error: `{code}` is not a Waldo diagnostic code");
            eprintln!("help: codes look like `E0107` or `W0001`; the known ones are:");
            for (code, summary) in waldo_compiler::codes::ALL {
                eprintln!("  {code}  {summary}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Prints the sequence diagram of a file that checks without errors.
fn graph(path: &std::path::Path, format: GraphFormat, output: &OutputArgs) -> ExitCode {
    let mut map = SourceMap::new();
    let checked = match waldo_compiler::check_path(&mut map, path) {
        Ok(checked) => checked,
        Err(err) => {
            eprintln!("error: cannot read `{}`: {err}", path.display());
            return ExitCode::FAILURE;
        }
    };
    report(&map, &checked.diagnostics, output);
    let Some(protocol) = checked
        .protocol
        .filter(|_| !checked.diagnostics.iter().any(|d| d.severity == waldo_compiler::Severity::Error))
    else {
        eprintln!("error: `{}` has errors; fix them to draw it", path.display());
        return ExitCode::FAILURE;
    };
    let picture = match format {
        GraphFormat::Mermaid => waldo_compiler::graph::mermaid(&protocol),
        GraphFormat::Svg => waldo_compiler::graph::svg(&protocol),
    };
    let _ = std::io::stdout().lock().write_all(picture.as_bytes());
    ExitCode::SUCCESS
}
