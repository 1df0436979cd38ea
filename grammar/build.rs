//! Generates the LR(1) parser from `src/grammar.lalrpop` at build time.

fn main() {
    lalrpop::Configuration::new()
        .use_cargo_dir_conventions()
        .emit_rerun_directives(true)
        .process()
        .expect("the Waldo grammar must be a valid LR(1) lalrpop grammar");
}
