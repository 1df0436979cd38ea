fn main() {
    waldo_compiler::compile_or_exit(&["protocols/bench.wld", "protocols/solo.wld"]);
}
