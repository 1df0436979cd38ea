//! Generates the Rust code of the Bank protocol into `OUT_DIR`.

fn main() {
    waldo_compiler::compile_or_exit(&["../protocols/bank.wld"]);
}
