//! Generates Rust for every valid corpus program, every example protocol and the protocols
//! of the end-to-end tests (`protocols/`), each into its
//! own directory under `OUT_DIR` (protocol names repeat across the corpus), and writes
//! `all.rs`, which includes each one inside a module named after its file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("run by cargo"));
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in [root.join("../corpus/valid"), root.join("../../examples/protocols"), root.join("protocols")] {
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wld"))
            .collect();
        entries.sort();
        files.extend(entries);
    }
    let mut all = String::new();
    for file in &files {
        let stem = file.file_stem().and_then(|s| s.to_str()).expect("a UTF-8 file name");
        let dir = out.join(stem);
        let written = waldo_compiler::Config::new()
            .out_dir(&dir)
            // The corpus's expected warnings (W0001...) are its business, not this build's.
            .cargo_metadata(false)
            .compile(&[file])
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for w in written {
            writeln!(all, "pub mod corpus_{stem} {{ include!({:?}); }}", path(&w))
                .expect("write to a String");
        }
    }
    std::fs::write(out.join("all.rs"), all).expect("write all.rs");
}

fn path(p: &Path) -> String {
    p.display().to_string()
}
