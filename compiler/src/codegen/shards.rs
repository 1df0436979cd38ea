//! The generation split into parts that threads lower, parse, tidy and print at once.
//!
//! Most of a large protocol's Rust is its endpoints' functions and blocks. They are split
//! into contiguous runs of about equal size, one per thread (`std::thread::scope`; a small
//! protocol is done on the calling thread alone). Token streams and syntax trees cannot
//! cross threads, so a thread does all the work on its parts and hands back text. It works in
//! three steps, with a barrier between them, because each needs something that every
//! thread contributes to; in each, a thread takes the next job until none is left:
//! 1. each thread lowers its functions once ([`Gen::first_lowering`]) and shares what that says;
//! 2. each thread reads every endpoint's [`Analysis`] from the shared facts and prints its
//!    functions (from their first lowering where it holds); then the typed handles, the
//!    function tables, the protocol module around everything, and the blocks, sharing how
//!    each block runs;
//! 3. the heads of the endpoints (`Code` table, initializers), since a `Code` table names how
//!    every block of its endpoint runs.
//!
//! The calling thread then adds the lints that any part needs allowed to the protocol
//! module, and puts each part where its endpoint module's marker is. The
//! text is the same, byte for byte, whatever the number of threads: each part is printed
//! inside modules as deep as its place, so prettyplease breaks its lines as it would in the
//! whole file.

use std::any::Any;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex, OnceLock, PoisonError, RwLock};

use proc_macro2::TokenStream;
use quote::quote;

use super::endpoint::{Analysis, BlockRun, Known, Lowered, body_marker};
use super::{Gen, GenError, lints, runtime_at};
use crate::ir::visit::{for_each_expr, for_each_subexpr};
use crate::ir::{EndpointId, FunctionId, Protocol, TStmt, Var};

/// Below this size (expressions in the emitted functions and blocks, about a 600-line
/// protocol) the calling thread does it all: starting threads would cost more than it saves.
const PARALLEL_FROM: usize = 2_000;

/// The most threads the generation uses.
const MAX_THREADS: usize = 8;

/// A piece of work: a run of an endpoint's reachable functions or of its blocks (by index),
/// an endpoint's typed handle or its head, or the protocol module around them.
#[derive(Clone, Debug)]
enum Job {
    Functions(EndpointId, Range<usize>),
    Blocks(EndpointId, Range<usize>),
    Api(EndpointId),
    FunctionTable(EndpointId),
    Head(EndpointId),
    Frame,
}

/// The jobs of each step, which threads take in turn until none is left. The functions'
/// runs are lowered in the first step and printed, by the same thread, in the second.
struct Plan {
    functions: Vec<Job>,
    second: Vec<Job>,
    third: Vec<Job>,
}

/// What the threads hand each other.
struct Shared {
    /// Between the steps, for the threads that started.
    barrier: OnceLock<Barrier>,
    /// Held for writing while the threads are started.
    started: RwLock<()>,
    /// The next job of each step.
    next: [AtomicUsize; 3],
    known: Mutex<Vec<(EndpointId, FunctionId, Known)>>,
    /// How each run of blocks runs, by endpoint and the run's first block.
    runs: Mutex<Vec<(EndpointId, usize, Vec<BlockRun>)>>,
}

/// A printed part of the module, and its place: in the module of an endpoint (`Some`), `(0,
/// 0)` for the typed handle, `(0, 1)` for the function table, `(0, 2)` for the head, then
/// `(1, first function)`, then `(2, first block)`; or the protocol module around them
/// (`None`).
struct Part {
    endpoint: Option<EndpointId>,
    place: (u8, usize),
    text: String,
}

/// How a thread's work ended badly: an error, or a panic to pass on.
enum Failure {
    Error(GenError),
    Panic(Box<dyn Any + Send>),
}

/// The printed protocol module of `p` with endpoints `emit` (in order), the runtime's path
/// written as `runtime` (a checked path) when given, on `threads` threads (as many as
/// [`threads_for`] says when `None`).
pub(super) fn generate(
    p: &Protocol,
    emit: &[EndpointId],
    runtime: Option<&str>,
    file: &str,
    threads: Option<usize>,
) -> Result<String, GenError> {
    let g = Gen::new(p).with_file(file);
    let mut reachable = vec![Vec::new(); p.endpoints.len()];
    for &e in emit {
        reachable[e.index()] = g.reachable(e);
    }
    let units = units(p, &g, emit, &reachable);
    let total: usize = units.iter().map(|u| u.2).sum();
    let threads = threads
        .unwrap_or_else(|| {
            if total < PARALLEL_FROM {
                1
            } else {
                std::thread::available_parallelism().map_or(1, usize::from).clamp(1, MAX_THREADS)
            }
        })
        .max(1);
    let plan = plan(emit, &units, threads);
    let shared = Shared {
        barrier: OnceLock::new(),
        started: RwLock::new(()),
        next: [AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0)],
        known: Mutex::new(Vec::new()),
        runs: Mutex::new(Vec::new()),
    };
    let results: Vec<Result<(Vec<Part>, lints::Scan), Failure>> = std::thread::scope(|scope| {
        let (reachable, plan, shared) = (&reachable, &plan, &shared);
        // The threads wait until every one has started, and the barrier counts those that
        // did: a thread the system refuses leaves its jobs to the others.
        let spawned: Vec<_> = {
            let _starting = shared.started.write().unwrap_or_else(PoisonError::into_inner);
            let spawned: Vec<_> = (1..threads)
                .map_while(|_| {
                    std::thread::Builder::new()
                        .spawn_scoped(scope, move || {
                            drop(shared.started.read().unwrap_or_else(PoisonError::into_inner));
                            work(p, emit, reachable, plan, runtime, file, shared)
                        })
                        .ok()
                })
                .collect();
            let _ = shared.barrier.set(Barrier::new(spawned.len() + 1));
            spawned
        };
        let mut results = vec![work(p, emit, reachable, plan, runtime, file, shared)];
        results
            .extend(spawned.into_iter().map(|t| t.join().unwrap_or_else(|panic| Err(Failure::Panic(panic)))));
        results
    });
    let mut parts = Vec::new();
    let mut scan = lints::Scan::default();
    for result in results {
        match result {
            Ok((more, s)) => {
                parts.extend(more);
                scan.merge(&s);
            }
            Err(Failure::Error(e)) => return Err(e),
            Err(Failure::Panic(panic)) => std::panic::resume_unwind(panic),
        }
    }
    parts.sort_by_key(|part| (part.endpoint, part.place));
    let frame = parts
        .iter()
        .position(|part| part.endpoint.is_none())
        .ok_or_else(|| GenError::Internal("no thread printed the protocol module".into()))?;
    let frame = parts.remove(frame).text;

    // The lints to allow go on the protocol module, after its doc comment.
    let allow = lints::allowed(&scan);
    let allow = if allow.is_empty() {
        String::new()
    } else {
        let printed = prettyplease::unparse(&syn::parse_quote!(
            #[allow(#(#allow),*)]
            mod m {}
        ));
        printed
            .strip_suffix("mod m {}\n")
            .ok_or_else(|| GenError::Internal(format!("the lints' attribute printed as {printed:?}")))?
            .to_owned()
    };
    let mut out =
        String::with_capacity(frame.len() + parts.iter().map(|part| part.text.len()).sum::<usize>());
    let mut allowed = false;
    for line in frame.lines() {
        if !allowed && line.starts_with("pub mod ") {
            out.push_str(&allow);
            allowed = true;
        }
        let marked = emit.iter().find(|&&e| line.trim() == format!("mod {} {{}}", body_marker(e)));
        match marked {
            Some(&e) => {
                for part in parts.iter().filter(|part| part.endpoint == Some(e)) {
                    out.push_str(&part.text);
                }
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    Ok(out)
}

/// The runtime path `runtime`, checked by the caller.
fn runtime_path(runtime: &str) -> syn::Path {
    syn::parse_str(runtime).expect("a runtime path checked before the generation")
}

/// The functions and blocks to generate, in order, with their sizes: `(endpoint, index,
/// size, whether a function)`, functions first (by index in `reachable`), then blocks.
fn units(
    p: &Protocol,
    g: &Gen<'_>,
    emit: &[EndpointId],
    reachable: &[Vec<FunctionId>],
) -> Vec<(EndpointId, usize, usize, bool)> {
    let mut out = Vec::new();
    for &e in emit {
        let ep = &p.endpoints[e];
        for (i, &f) in reachable[e.index()].iter().enumerate() {
            let f = &ep.functions[f];
            out.push((e, i, size(&f.body, &f.locals), true));
        }
    }
    for &e in emit {
        for i in 0..g.block_count(e) {
            let (s, b) = g.block_key(e, i);
            let block = &p.sequences[s].blocks[b];
            out.push((e, i, size(&block.body, &block.locals), false));
        }
    }
    out
}

/// How much code a body is, roughly: its expressions, its locals' initializers included.
fn size(body: &[TStmt], locals: &[Var]) -> usize {
    let mut n = 1;
    for_each_expr(body, |_| n += 1);
    for init in locals.iter().filter_map(|v| v.init.as_ref()) {
        for_each_subexpr(init, |_| n += 1);
    }
    n
}

/// The jobs for `threads` threads: the functions, and the blocks, cut into runs of about an
/// eighth of a thread's share each (one run per endpoint for one thread), so that a thread
/// that finishes early takes more; the typed handles before the blocks, and the heads
/// before the frame, since they are the largest.
fn plan(emit: &[EndpointId], units: &[(EndpointId, usize, usize, bool)], threads: usize) -> Plan {
    let total: usize = units.iter().map(|u| u.2).sum();
    let target = if threads == 1 { usize::MAX } else { (total / (threads * 8)).max(1) };
    let mut runs = [Vec::new(), Vec::new()];
    let mut current: Option<(EndpointId, Range<usize>, usize, bool)> = None;
    for &(e, i, size, function) in units {
        match &mut current {
            Some((of, run, sum, kind)) if *of == e && *kind == function && *sum < target => {
                run.end = i + 1;
                *sum += size;
            }
            _ => {
                if let Some((of, run, _, kind)) = current.take() {
                    runs[usize::from(!kind)].push(if kind {
                        Job::Functions(of, run)
                    } else {
                        Job::Blocks(of, run)
                    });
                }
                current = Some((e, i..i + 1, size, function));
            }
        }
    }
    if let Some((of, run, _, kind)) = current {
        runs[usize::from(!kind)].push(if kind { Job::Functions(of, run) } else { Job::Blocks(of, run) });
    }
    let [functions, blocks] = runs;
    // The protocol module needs none of the analysis, and the function tables none of the
    // blocks: only the heads wait for the blocks.
    let mut second: Vec<Job> = emit.iter().map(|&e| Job::Api(e)).collect();
    second.extend(emit.iter().map(|&e| Job::FunctionTable(e)));
    second.push(Job::Frame);
    second.extend(blocks);
    let third: Vec<Job> = emit.iter().map(|&e| Job::Head(e)).collect();
    Plan { functions, second, third }
}

/// One thread's work: jobs of each step until none is left, printed.
fn work(
    p: &Protocol,
    emit: &[EndpointId],
    reachable: &[Vec<FunctionId>],
    plan: &Plan,
    runtime: Option<&str>,
    file: &str,
    shared: &Shared,
) -> Result<(Vec<Part>, lints::Scan), Failure> {
    let mut failure = None;
    // Every thread reaches every barrier, whatever happened before: the others wait there.
    let mut step = |f: &mut dyn FnMut() -> Result<(), GenError>| {
        if failure.is_none() {
            match catch_unwind(AssertUnwindSafe(f)) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failure = Some(Failure::Error(e)),
                Err(panic) => failure = Some(Failure::Panic(panic)),
            }
        }
    };
    let next =
        |step: usize, jobs: &'_ [Job]| jobs.get(shared.next[step].fetch_add(1, Ordering::Relaxed)).cloned();
    let g = Gen::new(p).with_file(file);
    let path = runtime.map(runtime_path);
    let mut parts = Vec::new();
    let mut scan = lints::Scan::default();
    let mut add = |endpoint: Option<EndpointId>, place: (u8, usize), tokens: TokenStream, depth: usize| {
        let (text, s) = print(tokens, depth, path.as_ref())?;
        scan.merge(&s);
        parts.push(Part { endpoint, place, text });
        Ok::<(), GenError>(())
    };
    // The runs of functions this thread lowered first, and those lowerings.
    let mut mine = Vec::new();
    let mut first: Vec<Vec<(FunctionId, Lowered)>> = (0..p.endpoints.len()).map(|_| Vec::new()).collect();

    step(&mut || {
        let mut known = Vec::new();
        while let Some(Job::Functions(e, run)) = next(0, &plan.functions) {
            for &f in &reachable[e.index()][run.clone()] {
                let (k, lowered) = g.first_lowering(e, f);
                known.push((e, f, k));
                first[e.index()].push((f, lowered));
            }
            mine.push((e, run));
        }
        shared.known.lock().unwrap_or_else(PoisonError::into_inner).extend(known);
        Ok(())
    });
    shared.barrier.get().expect("set once the threads started").wait();

    let mut analyses: Vec<Option<Analysis>> = (0..p.endpoints.len()).map(|_| None).collect();
    step(&mut || {
        let all = shared.known.lock().unwrap_or_else(PoisonError::into_inner);
        for &e in emit {
            let mut known = vec![None; p.endpoints[e].functions.len()];
            for (_, f, k) in all.iter().filter(|(of, ..)| *of == e) {
                known[f.index()] = Some(k);
            }
            analyses[e.index()] = Some(g.analysis(e, &reachable[e.index()], &known));
        }
        drop(all);
        for (e, run) in &mine {
            let a = analyses[e.index()].as_ref().expect("analysed");
            let code = g.endpoint_functions(*e, a, &reachable[e.index()][run.clone()], &mut first[e.index()]);
            add(Some(*e), (1, run.start), code, 2)?;
        }
        while let Some(job) = next(1, &plan.second) {
            match job {
                Job::Api(e) => add(Some(e), (0, 0), g.api(e), 2)?,
                Job::FunctionTable(e) => {
                    let a = analyses[e.index()].as_ref().expect("analysed");
                    add(Some(e), (0, 1), g.function_table(e, a), 2)?;
                }
                Job::Frame => add(None, (0, 0), g.protocol(emit), 0)?,
                Job::Blocks(e, run) => {
                    let a = analyses[e.index()].as_ref().expect("analysed");
                    let (code, runs) = g.endpoint_blocks(e, a, run.clone());
                    shared.runs.lock().unwrap_or_else(PoisonError::into_inner).push((e, run.start, runs));
                    add(Some(e), (2, run.start), code, 2)?;
                }
                _ => unreachable!("the second step's jobs are handles, tables, the frame and blocks"),
            }
        }
        Ok(())
    });
    shared.barrier.get().expect("set once the threads started").wait();

    step(&mut || {
        while let Some(job) = next(2, &plan.third) {
            match job {
                Job::Head(e) => {
                    let mut runs: Vec<(usize, Vec<BlockRun>)> = shared
                        .runs
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .iter()
                        .filter(|(of, ..)| *of == e)
                        .map(|(_, start, runs)| (*start, runs.clone()))
                        .collect();
                    runs.sort_by_key(|(start, _)| *start);
                    let runs: Vec<BlockRun> = runs.into_iter().flat_map(|(_, runs)| runs).collect();
                    let a = analyses[e.index()].as_ref().expect("analysed");
                    add(Some(e), (0, 2), g.endpoint_head(e, a, &runs), 2)?;
                }
                _ => unreachable!("the third step's jobs are heads"),
            }
        }
        Ok(())
    });
    match failure {
        Some(failure) => Err(failure),
        None => Ok((parts, scan)),
    }
}

/// `tokens`, items `depth` modules deep in the file, printed at that depth, and what they
/// contain that a lint could fire on.
fn print(
    tokens: TokenStream,
    depth: usize,
    path: Option<&syn::Path>,
) -> Result<(String, lints::Scan), GenError> {
    if tokens.is_empty() {
        return Ok((String::new(), lints::Scan::default()));
    }
    let mut tokens = match path {
        Some(path) => runtime_at(tokens, path),
        None => tokens,
    };
    for _ in 0..depth {
        tokens = quote!(mod m { #tokens });
    }
    let mut file: syn::File = syn::parse2(tokens).map_err(|e| GenError::Internal(e.to_string()))?;
    let scan = lints::tidy_and_scan(&mut file);
    let printed = prettyplease::unparse(&file);
    drop(file);
    let lines: Vec<&str> = printed.lines().collect();
    let mut text = String::with_capacity(printed.len());
    for line in &lines[depth..lines.len() - depth] {
        text.push_str(line);
        text.push('\n');
    }
    Ok((text, scan))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(source: &str) -> Protocol {
        let checked = crate::check_source(&mut crate::SourceMap::default(), "t.wld", source);
        assert!(!checked.has_errors(), "{:?}", checked.diagnostics);
        checked.protocol.expect("checked")
    }

    #[test]
    fn the_text_does_not_depend_on_the_number_of_threads() {
        let p = checked(&crate::sample::protocol(2_000));
        let all = [EndpointId(0), EndpointId(1)];
        let units = units(&p, &Gen::new(&p), &all, &[Gen::new(&p).reachable(EndpointId(0)), Vec::new()]);
        assert!(units.iter().map(|u| u.2).sum::<usize>() >= PARALLEL_FROM, "large enough for threads");
        for (emit, runtime) in [(&all[..], None), (&all[..], Some("::my_waldo")), (&all[1..], None)] {
            let one = generate(&p, emit, runtime, "t.wld", Some(1)).expect("generates");
            // Every part in its place: Rust, no marker left, every function and block once.
            assert!(syn::parse_file(&one).is_ok() && !one.contains("__waldo_body"));
            let count = |what: &str| one.matches(what).count();
            if emit.len() == 2 {
                assert_eq!(count("async fn f_f"), p.endpoints[0].functions.len());
                assert_eq!(count("fn b_s"), p.sequences.len() * 2);
            }
            for threads in [2, 3, 8] {
                assert!(
                    generate(&p, emit, runtime, "t.wld", Some(threads)).expect("generates") == one,
                    "{threads} threads, endpoints {emit:?}, runtime {runtime:?}"
                );
            }
        }
    }

    #[test]
    fn each_thread_gets_runs_of_about_equal_size() {
        let p = checked(&crate::sample::protocol(2_000));
        let g = Gen::new(&p);
        let emit = [EndpointId(0), EndpointId(1)];
        let reachable = [g.reachable(EndpointId(0)), g.reachable(EndpointId(1))];
        let units = units(&p, &g, &emit, &reachable);
        let plan = plan(&emit, &units, 2);
        // Runs of about a sixteenth of the whole (eight per thread): no larger than that plus
        // one function.
        let target = units.iter().map(|u| u.2).sum::<usize>() / 16;
        let largest = units.iter().map(|u| u.2).max().unwrap_or(0);
        let sizes: Vec<usize> = plan
            .functions
            .iter()
            .map(|job| match job {
                Job::Functions(e, run) => {
                    units.iter().filter(|u| u.3 && u.0 == *e && run.contains(&u.1)).map(|u| u.2).sum()
                }
                other => panic!("{other:?} among the functions"),
            })
            .collect();
        let functions: usize = units.iter().filter(|u| u.3).map(|u| u.2).sum();
        assert_eq!(sizes.iter().sum::<usize>(), functions, "every function in one run");
        assert!(sizes.len() >= functions / (target + largest), "{} runs of functions", sizes.len());
        assert!(sizes.iter().all(|&s| s < target + largest), "{sizes:?}, target {target}");
        // The typed handles and tables come first among the second step's jobs; the third has
        // the heads alone.
        assert!(matches!(
            plan.second[..5],
            [Job::Api(_), Job::Api(_), Job::FunctionTable(_), Job::FunctionTable(_), Job::Frame]
        ));
        assert!(plan.third.iter().all(|job| matches!(job, Job::Head(_))));
        // One thread: one run per endpoint and kind.
        let one = super::plan(&emit, &units, 1);
        assert_eq!(one.functions.len(), 1);
        assert_eq!(one.second.iter().filter(|j| matches!(j, Job::Blocks(..))).count(), 2);
    }
}
