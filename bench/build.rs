fn main() {
    // The fault campaign's bank, for `sim.seeds_per_s` (the campaign's own code, shared with
    // the `sim_campaign` test of `waldo-e2e`).
    waldo_compiler::compile_or_exit(&[
        "protocols/bench.wld",
        "protocols/solo.wld",
        "../tests/e2e/protocols/sim_bank.wld",
    ]);
}
