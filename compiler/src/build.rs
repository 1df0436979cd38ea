//! The `build.rs` API: compile `.wld` files into Rust modules in `OUT_DIR`.
//!
//! ```no_run
//! // in build.rs's `main`:
//! waldo_compiler::compile_or_exit(&["protocols/bank.wld"]);
//! ```
//!
//! and in the crate, `waldo::include_protocol!("bank");`. Each protocol becomes one file,
//! `<protocol>.rs` (the protocol's name in snake case), holding `pub mod <protocol>`. Under
//! cargo, every file read is reported with `cargo:rerun-if-changed`, so the build script runs
//! again only when a protocol changes; an output whose bytes did not change is not rewritten.

use std::path::{Path, PathBuf};

use crate::codegen::{self, GenError};
use crate::{Color, Severity, SourceMap};

/// Why compiling failed.
#[derive(Debug)]
pub enum Error {
    /// A file could not be read or written.
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The protocols have errors; `rendered` is every diagnostic, as rustc would print them.
    Diagnostics {
        /// How many errors.
        errors: usize,
        /// The rendered diagnostics (plain text).
        rendered: String,
    },
    /// Code generation refused for the protocol of `path` (an unknown endpoint was asked
    /// for, a runtime path that is not a path).
    Generate {
        /// The file.
        path: PathBuf,
        /// Why.
        error: GenError,
    },
    /// Two files define protocols with the same module name: one would overwrite the other.
    SameModule {
        /// The module (and file) name.
        module: String,
        /// The two files.
        paths: [PathBuf; 2],
    },
    /// No output directory: not run by cargo (no `OUT_DIR`) and none configured.
    NoOutDir,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Io { path, source } => write!(f, "cannot access `{}`: {source}", path.display()),
            Error::Diagnostics { errors, rendered } => {
                write!(
                    f,
                    "{rendered}could not compile the protocol because of {errors} error{}",
                    plural(*errors)
                )
            }
            Error::Generate { path, error } => {
                write!(f, "cannot generate the code of `{}`: {error}", path.display())
            }
            Error::SameModule { module, paths: [a, b] } => write!(
                f,
                "`{}` and `{}` both define the protocol module `{module}` (`{module}.rs`): rename one of the protocols",
                a.display(),
                b.display()
            ),
            Error::NoOutDir => {
                write!(f, "no output directory: set one with `Config::out_dir`, or run from build.rs")
            }
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    /// The error as a person reads it: the rendered diagnostics, or `error: ` and the
    /// message.
    pub fn report(&self) -> String {
        match self {
            Error::Diagnostics { .. } => self.to_string(),
            other => format!("error: {other}"),
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// How to compile protocols.
#[derive(Clone, Debug, Default)]
pub struct Config {
    out_dir: Option<PathBuf>,
    endpoints: Option<Vec<String>>,
    runtime_path: Option<String>,
    cargo: Option<bool>,
}

impl Config {
    /// The defaults: output to `OUT_DIR`, every endpoint, the runtime as `::waldo`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes the generated files into `dir` instead of `OUT_DIR`.
    pub fn out_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.out_dir = Some(dir.into());
        self
    }

    /// Emits endpoint `name` (call once per endpoint); without any call, every endpoint. A
    /// program that plays one side only needs that side's code.
    pub fn endpoint(mut self, name: impl Into<String>) -> Self {
        self.endpoints.get_or_insert_with(Vec::new).push(name.into());
        self
    }

    /// The path generated code uses for the runtime crate (default `::waldo`), for a
    /// dependency renamed in `Cargo.toml`.
    pub fn runtime_path(mut self, path: impl Into<String>) -> Self {
        self.runtime_path = Some(path.into());
        self
    }

    /// Whether to print `cargo:` instructions (default: when run by cargo's build script).
    pub fn cargo_metadata(mut self, on: bool) -> Self {
        self.cargo = Some(on);
        self
    }

    fn under_cargo(&self) -> bool {
        self.cargo
            .unwrap_or_else(|| std::env::var_os("OUT_DIR").is_some() && std::env::var_os("CARGO").is_some())
    }

    /// Compiles `paths`, writing one `.rs` file per protocol. Returns the files written (or
    /// left as they were, when unchanged).
    pub fn compile<P: AsRef<Path>>(&self, paths: &[P]) -> Result<Vec<PathBuf>, Error> {
        let out_dir = match &self.out_dir {
            Some(d) => d.clone(),
            None => std::env::var_os("OUT_DIR").map(PathBuf::from).ok_or(Error::NoOutDir)?,
        };
        let cargo = self.under_cargo();
        let mut map = SourceMap::new();
        let mut checked = Vec::new();
        let (mut errors, mut rendered) = (0, String::new());
        for path in paths {
            let path = path.as_ref();
            if cargo {
                println!("cargo:rerun-if-changed={}", path.display());
            }
            // A file that cannot be read is one error among the others: every file's
            // diagnostics are still reported.
            let c = match crate::check_path(&mut map, path) {
                Ok(c) => c,
                Err(source) => {
                    errors += 1;
                    rendered.push_str(&format!("error: {}\n\n", Error::Io { path: path.to_owned(), source }));
                    continue;
                }
            };
            for d in &c.diagnostics {
                let text = map.render(std::slice::from_ref(d), Color::Never);
                if d.severity == Severity::Error {
                    errors += 1;
                    rendered.push_str(&text);
                } else if cargo {
                    for line in text.lines().filter(|l| !l.trim().is_empty()) {
                        println!("cargo:warning={line}");
                    }
                }
            }
            checked.push((path.to_owned(), c));
        }
        if errors > 0 {
            return Err(Error::Diagnostics { errors, rendered });
        }
        // Everything is generated before anything is written: a failure writes nothing.
        let mut generated: Vec<(PathBuf, String, PathBuf)> = Vec::new();
        for (path, c) in checked {
            let Some(protocol) = c.protocol else { continue };
            let options = codegen::Options {
                endpoints: self.endpoints.clone(),
                source_name: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                runtime_path: self.runtime_path.clone(),
            };
            let code = codegen::generate(&protocol, &options)
                .map_err(|error| Error::Generate { path: path.clone(), error })?;
            let module = codegen::module_name(&protocol);
            if let Some((first, ..)) =
                generated.iter().find(|(_, _, t)| t.file_stem() == Some(module.as_ref()))
            {
                // The same file named twice (`a.wld`, `./a.wld`) is compiled once.
                if std::fs::canonicalize(first).ok() == std::fs::canonicalize(&path).ok() {
                    continue;
                }
                return Err(Error::SameModule { module, paths: [first.clone(), path] });
            }
            generated.push((path, code, out_dir.join(format!("{module}.rs"))));
        }
        std::fs::create_dir_all(&out_dir).map_err(|source| Error::Io { path: out_dir.clone(), source })?;
        let mut written = Vec::new();
        for (_, code, target) in generated {
            let unchanged = std::fs::read(&target).is_ok_and(|old| old == code.as_bytes());
            if !unchanged {
                std::fs::write(&target, code).map_err(|source| Error::Io { path: target.clone(), source })?;
            }
            written.push(target);
        }
        Ok(written)
    }

    /// Like [`Config::compile`], but prints the diagnostics and exits with status 1 on
    /// failure (no panic, no backtrace): the one-liner for `build.rs`.
    pub fn compile_or_exit<P: AsRef<Path>>(&self, paths: &[P]) {
        if let Err(e) = self.compile(paths) {
            eprintln!("{}", e.report());
            std::process::exit(1);
        }
    }
}

/// Compiles `paths` into `OUT_DIR` with the default [`Config`].
pub fn compile<P: AsRef<Path>>(paths: &[P]) -> Result<(), Error> {
    Config::new().compile(paths).map(drop)
}

/// Compiles `paths` into `OUT_DIR`; on failure prints the diagnostics and exits with status 1.
pub fn compile_or_exit<P: AsRef<Path>>(paths: &[P]) {
    Config::new().compile_or_exit(paths);
}
