//! The build.rs workflow as a user meets it: a crate whose build script compiles a protocol
//! with `waldo_compiler::compile_or_exit` and includes it with `waldo::include_protocol!`.
//! Cargo builds it; a second build runs the build script again only if the `.wld` changed.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the workspace")
}

/// Writes a small user crate into `dir`.
fn write_crate(dir: &Path) {
    let ws = workspace();
    std::fs::create_dir_all(dir.join("src")).expect("mkdir");
    std::fs::create_dir_all(dir.join("protocols")).expect("mkdir");
    let manifest = format!(
        r#"[package]
name = "user-crate"
version = "0.1.0"
edition = "2024"
publish = false

[workspace]

[dependencies]
waldo = {{ path = "{rt}" }}
tokio = {{ version = "1", features = ["rt", "macros"] }}

[build-dependencies]
waldo-compiler = {{ path = "{compiler}", default-features = false }}
"#,
        rt = ws.join("runtime").display(),
        compiler = ws.join("compiler").display()
    );
    std::fs::write(dir.join("Cargo.toml"), manifest).expect("write");
    // The workspace's lock file pins the same versions, so the build needs no network.
    std::fs::copy(ws.join("Cargo.lock"), dir.join("Cargo.lock")).expect("copy the lock file");
    std::fs::write(
        dir.join("build.rs"),
        "fn main() {\n    waldo_compiler::compile_or_exit(&[\"protocols/counter.wld\"]);\n}\n",
    )
    .expect("write");
    std::fs::write(
        dir.join("protocols/counter.wld"),
        "Counter\nEndpoint Tally;\nTally {\n  Number n = 0;\n  Public Function bump() returns Number { n += 1; return n; }\n}\n",
    )
    .expect("write");
    std::fs::write(
        dir.join("src/main.rs"),
        "waldo::include_protocol!(\"counter\");\n\n#[tokio::main(flavor = \"current_thread\")]\nasync fn main() -> Result<(), waldo::Error> {\n    let tally = counter::Tally::new().await?;\n    tally.bump().await?;\n    println!(\"{}\", tally.bump().await?);\n    Ok(())\n}\n",
    )
    .expect("write");
}

/// Runs `cargo build -v` in `dir`; returns whether the build script ran, and stderr.
fn build(dir: &Path, target: &Path) -> (bool, String) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "-v", "--offline"])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target)
        .output()
        .expect("run cargo");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "the user crate did not build:\n{stderr}");
    let ran = stderr
        .lines()
        .any(|l| l.contains("Running") && l.contains("user-crate") && l.contains("build-script-build"));
    (ran, stderr)
}

#[test]
fn the_build_script_reruns_only_when_the_protocol_changes() {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("user-crate");
    let (dir, target) = (root.join("crate"), root.join("target"));
    let _ = std::fs::remove_dir_all(&dir);
    write_crate(&dir);

    let (ran, stderr) = build(&dir, &target);
    assert!(ran, "the first build runs the build script:\n{stderr}");
    let (ran, stderr) = build(&dir, &target);
    assert!(!ran, "nothing changed, yet the build script ran again:\n{stderr}");

    // Touching Rust code does not regenerate the protocol.
    let main = dir.join("src/main.rs");
    let code = std::fs::read_to_string(&main).expect("read");
    std::fs::write(&main, format!("{code}// edited\n")).expect("write");
    let (ran, stderr) = build(&dir, &target);
    assert!(!ran, "a Rust edit reran the build script:\n{stderr}");

    // Changing the protocol does.
    let wld = dir.join("protocols/counter.wld");
    let source = std::fs::read_to_string(&wld).expect("read");
    std::fs::write(&wld, format!("{source}// a comment\n")).expect("write");
    let (ran, stderr) = build(&dir, &target);
    assert!(ran, "the protocol changed, yet the build script did not run:\n{stderr}");

    // And the program works.
    let exe = target.join("debug").join(format!("user-crate{}", std::env::consts::EXE_SUFFIX));
    let out = Command::new(exe).output().expect("run the user crate");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2");
}

#[test]
fn a_protocol_with_errors_fails_the_build_with_rendered_diagnostics() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("broken-protocol");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let file = dir.join("broken.wld");
    std::fs::write(&file, "Broken\nEndpoint A;\nA { Public Function f() returns Number { return 'x'; } }\n")
        .expect("write");
    let err = waldo_compiler::Config::new()
        .out_dir(&dir)
        .cargo_metadata(false)
        .compile(&[&file])
        .expect_err("errors");
    let text = err.to_string();
    assert!(text.contains("error[E0"), "{text}");
    assert!(text.contains("broken.wld:3"), "{text}");
    assert!(text.ends_with("could not compile the protocol because of 1 error"), "{text}");
    assert!(!dir.join("broken.rs").exists(), "nothing is written for a protocol with errors");
}
