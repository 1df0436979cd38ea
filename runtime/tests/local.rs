//! Transactions on one host, driven by hand-written code shaped like generated code.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use waldo::__rt::*;
use waldo::{CallOptions, Error, External};

/// An endpoint for transactions that need one but no data.
fn scratch() -> Arc<EndpointCore> {
    EndpointCore::new("Scratch", vec![])
}

// ---------------------------------------------------------------- a counter endpoint

/// `Counter Endpoint Counter; Counter { Number count = 0; ... }`
struct Counter {
    core: Arc<EndpointCore>,
}

const COUNT: usize = 0;

impl Counter {
    fn new() -> Counter {
        Counter { core: EndpointCore::new("Counter", vec![Value::Number(0.0)]) }
    }

    /// `Public Function increment() returns Number { count += 1; return count; }`
    async fn increment(&self) -> Result<f64, Error> {
        transact("Counter.increment", &self.core, &CallOptions::default(), |tx| async move {
            let n = tx.read(&self.core, COUNT).await?.as_number()? + 1.0;
            tx.write(&self.core, COUNT, Value::Number(n)).await?;
            Ok(n)
        })
        .await
    }

    /// `Public Function get() returns Number { return count; }`
    async fn get(&self) -> Result<f64, Error> {
        transact("Counter.get", &self.core, &CallOptions::default(), |tx| async move {
            Ok(tx.read(&self.core, COUNT).await?.as_number()?)
        })
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_increments_all_count() {
    let counter = Arc::new(Counter::new());
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let c = counter.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10_000 {
                c.increment().await.expect("increment commits");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task finished");
    }
    assert_eq!(counter.get().await.expect("read"), 80_000.0);
}

// ---------------------------------------------------------------- a bank

/// `Bank Endpoint Bank; Bank { Map(from: Number, to: Number) balances; ... }`
struct Bank {
    core: Arc<EndpointCore>,
}

impl Bank {
    fn new(accounts: usize, each: f64) -> Bank {
        let balances: BTreeMap<Key, Value> =
            (0..accounts).map(|i| (Key::number(i as f64), Value::Number(each))).collect();
        Bank { core: EndpointCore::new("Bank", vec![Value::new_map(balances)]) }
    }

    /// `Public Function transfer(Number from, Number to, Number amount) returns TrueFalse`
    async fn transfer(&self, from: f64, to: f64, amount: f64) -> Result<bool, Error> {
        transact("Bank.transfer", &self.core, &CallOptions::default(), |tx| async move {
            let balances = tx.read(&self.core, 0).await?;
            let map = balances.as_obj()?;
            let have = tx.map_get(map, &Key::number(from)).await?.as_number()?;
            if have < amount {
                return Ok(false);
            }
            tx.map_set(map, Key::number(from), Value::Number(have - amount)).await?;
            tokio::task::yield_now().await; // let others interleave inside the transaction
            let other = tx.map_get(map, &Key::number(to)).await?.as_number()?;
            tx.map_set(map, Key::number(to), Value::Number(other + amount)).await?;
            Ok(true)
        })
        .await
    }

    /// `Public Function snapshot() returns List(element: Number)`: every balance, in one transaction.
    async fn snapshot(&self) -> Result<Vec<f64>, Error> {
        transact("Bank.snapshot", &self.core, &CallOptions::default(), |tx| async move {
            let balances = tx.read(&self.core, 0).await?;
            let map = balances.as_obj()?;
            let mut out = Vec::new();
            for k in tx.map_keys(map).await? {
                out.push(tx.map_get(map, &k).await?.as_number()?);
            }
            Ok(out)
        })
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_transfers_conserve_the_total_and_never_go_negative() {
    let bank = Arc::new(Bank::new(10, 100.0));
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let bank = bank.clone();
        tasks.push(tokio::spawn(async move {
            let mut seed = t * 7919 + 1;
            let mut next = move || {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed
            };
            for _ in 0..1_500 {
                let from = (next() % 10) as f64;
                let to = (next() % 10) as f64;
                let amount = (next() % 60) as f64;
                bank.transfer(from, to, amount).await.expect("transfer commits");
            }
        }));
    }
    // Concurrent readers always see a consistent total.
    let reader = {
        let bank = bank.clone();
        tokio::spawn(async move {
            for _ in 0..300 {
                let all = bank.snapshot().await.expect("snapshot commits");
                assert_eq!(all.iter().sum::<f64>(), 1000.0, "a reader saw a partial transfer: {all:?}");
                assert!(all.iter().all(|b| *b >= 0.0), "a balance went negative: {all:?}");
                tokio::task::yield_now().await;
            }
        })
    };
    for t in tasks {
        t.await.expect("task finished");
    }
    reader.await.expect("reader finished");
    let all = bank.snapshot().await.expect("snapshot");
    assert_eq!(all.iter().sum::<f64>(), 1000.0);
    assert!(all.iter().all(|b| *b >= 0.0));
}

// ---------------------------------------------------------------- exceptions and try

#[tokio::test]
async fn an_uncaught_exception_leaves_no_trace() {
    let counter = Counter::new();
    let list = Value::new_list(vec![Value::Number(1.0)]);
    counter.core.push_slot(list);
    let err = transact("Counter.fail", &counter.core, &CallOptions::default(), |tx| {
        let core = counter.core.clone();
        async move {
            tx.write(&core, COUNT, Value::Number(41.0)).await?;
            let l = tx.read(&core, 1).await?;
            tx.list_append(l.as_obj()?, Value::Number(2.0)).await?;
            tx.list_set(l.as_obj()?, 0.0, Value::Number(9.0)).await?;
            app_error::<()>("division by zero")
        }
    })
    .await
    .expect_err("the exception reaches the host");
    assert_eq!(err, Error::Application { message: "division by zero".into() });
    assert_eq!(counter.get().await.expect("read"), 0.0);
    let items = transact("read", &counter.core, &CallOptions::default(), |tx| {
        let core = counter.core.clone();
        async move {
            let l = tx.read(&core, 1).await?;
            Ok(tx
                .list_items(l.as_obj()?)
                .await?
                .iter()
                .map(|v| v.as_number().unwrap_or(-1.0))
                .collect::<Vec<_>>())
        }
    })
    .await
    .expect("read");
    assert_eq!(items, vec![1.0]);
}

#[tokio::test]
async fn a_failed_try_body_is_undone_and_the_transaction_goes_on() {
    let counter = Counter::new();
    let finally_ran = Arc::new(AtomicUsize::new(0));
    let caught = transact("Counter.careful", &counter.core, &CallOptions::default(), |tx| {
        let core = counter.core.clone();
        let finally_ran = finally_ran.clone();
        async move {
            tx.write(&core, COUNT, Value::Number(1.0)).await?; // before the try: kept
            let sp = tx.savepoint();
            // try { count = 100; raise } catch (ApplicationException as e) { ... } finally { ... }
            let body: Flow<()> = async {
                tx.write(&core, COUNT, Value::Number(100.0)).await?;
                app_error("missing key 'x'")
            }
            .await;
            let message = match body {
                Err(Raise::Exception(e)) => {
                    tx.rollback_to(sp);
                    e.message
                }
                Err(abort) => return Err(abort),
                Ok(()) => String::new(),
            };
            finally_ran.fetch_add(1, Ordering::SeqCst);
            let seen = tx.read(&core, COUNT).await?.as_number()?;
            tx.write(&core, COUNT, Value::Number(seen + 10.0)).await?;
            Ok(message)
        }
    })
    .await
    .expect("the transaction commits");
    assert_eq!(caught, "missing key 'x'");
    assert_eq!(finally_ran.load(Ordering::SeqCst), 1);
    assert_eq!(counter.get().await.expect("read"), 11.0, "the try body's write is undone, the rest kept");
}

// ---------------------------------------------------------------- effects

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signals_fire_once_per_commit_and_host_functions_may_rerun() {
    let counter = Arc::new(Counter::new());
    let signals = Arc::new(parking_lot::Mutex::new(Vec::<f64>::new()));
    let host_calls = Arc::new(AtomicUsize::new(0));
    let signal_fn = {
        let signals = signals.clone();
        HostFn::new(move |args| {
            signals.lock().push(args[0].as_number()?);
            Ok(vec![])
        })
    };
    let host_fn = {
        let host_calls = host_calls.clone();
        HostFn::new(move |args| {
            host_calls.fetch_add(1, Ordering::SeqCst);
            Ok(args)
        })
    };
    let attempts = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (counter, signal_fn, host_fn, attempts) =
            (counter.clone(), signal_fn.clone(), host_fn.clone(), attempts.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..500 {
                let ((), tried) =
                    transact_counted("Counter.bump", &counter.core, &CallOptions::default(), |tx| {
                        let (core, signal_fn, host_fn) =
                            (counter.core.clone(), signal_fn.clone(), host_fn.clone());
                        async move {
                            let n = tx.read(&core, COUNT).await?.as_number()?;
                            tokio::task::yield_now().await;
                            let n = host_fn.call(vec![Value::Number(n + 1.0)])?[0].as_number()?; // a host function
                            tx.write(&core, COUNT, Value::Number(n)).await?;
                            tx.signal(&core, signal_fn, vec![Value::Number(n)]).await?;
                            Ok(())
                        }
                    })
                    .await
                    .expect("commits");
                attempts.fetch_add(tried.attempts as usize, Ordering::SeqCst);
            }
        }));
    }
    for t in tasks {
        t.await.expect("task finished");
    }
    let seen = signals.lock().clone();
    assert_eq!(seen.len(), 2000, "one signal per committed transaction");
    assert_eq!(
        seen,
        (1..=2000).map(f64::from).collect::<Vec<_>>(),
        "in commit order, none from aborted attempts"
    );
    // Attempts that were undone after calling the host function called it again on retry
    // (every transaction here holds a read lock across a yield, so overlapping ones conflict).
    // An attempt wounded before reaching the call does not call it.
    let (attempts, calls) = (attempts.load(Ordering::SeqCst), host_calls.load(Ordering::SeqCst));
    assert!(calls > 2000, "host functions re-ran for retried attempts: {calls} calls for 2000 commits");
    assert!(calls <= attempts, "{calls} calls in {attempts} attempts");
}

#[tokio::test]
async fn no_signal_or_print_for_an_aborted_transaction() {
    let printed = Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
    let printer: Printer = {
        let printed = printed.clone();
        Arc::new(move |line: &str| printed.lock().push(line.to_owned()))
    };
    let core = EndpointCore::with_printer("Printer", vec![Value::Number(0.0)], printer);
    let fired = Arc::new(AtomicUsize::new(0));
    let f = {
        let fired = fired.clone();
        HostFn::new(move |_| {
            fired.fetch_add(1, Ordering::SeqCst);
            Ok(vec![])
        })
    };
    let result = transact("Printer.fail", &core, &CallOptions::default(), |tx| {
        let (core, f) = (core.clone(), f.clone());
        async move {
            tx.print(&core, "never".into());
            tx.signal(&core, f, vec![]).await?;
            app_error::<()>("no")
        }
    })
    .await;
    assert!(result.is_err());
    transact("Printer.ok", &core, &CallOptions::default(), |tx| {
        let core = core.clone();
        async move {
            tx.print(&core, "once".into());
            Ok(())
        }
    })
    .await
    .expect("commits");
    assert_eq!(fired.load(Ordering::SeqCst), 0);
    assert_eq!(*printed.lock(), vec!["once".to_owned()]);
}

// ---------------------------------------------------------------- progress

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_old_transaction_is_not_starved_by_younger_ones() {
    let counter = Arc::new(Counter::new());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Constant contention from younger transactions.
    let mut hammers = Vec::new();
    for _ in 0..4 {
        let (counter, stop) = (counter.clone(), stop.clone());
        hammers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                counter.increment().await.expect("increment");
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    // A slow transaction: reads, waits, writes. Its priority is older than every later attempt.
    let (_, attempts) = transact_counted("Counter.slow", &counter.core, &CallOptions::default(), |tx| {
        let core = counter.core.clone();
        async move {
            let n = tx.read(&core, COUNT).await?.as_number()?;
            tokio::time::sleep(Duration::from_millis(5)).await;
            tx.write(&core, COUNT, Value::Number(n + 1000.0)).await?;
            Ok(())
        }
    })
    .await
    .expect("the old transaction commits");
    stop.store(true, Ordering::Relaxed);
    for h in hammers {
        h.await.expect("hammer finished");
    }
    // Only the (at most one per task) hammer transactions that began before the slow one are
    // older and may wound it; every later attempt is younger and loses. So it commits within
    // 1 + 4 attempts however long the contention lasts.
    assert!(attempts.attempts <= 5, "an old transaction needed {} attempts", attempts.attempts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_wounded_more_often_than_it_may_retry_gives_up_without_trace() {
    let counter = Arc::new(Counter::new());
    let (older_started_tx, older_started) = tokio::sync::oneshot::channel();
    let younger_holds = Arc::new(tokio::sync::Notify::new());
    // The older transaction starts first, waits until the younger one holds the counter,
    // then writes it: it wounds the younger one.
    let older = {
        let (counter, younger_holds) = (counter.clone(), younger_holds.clone());
        tokio::spawn(async move {
            let mut started = Some(older_started_tx);
            transact("Counter.older", &counter.core, &CallOptions::default(), |tx| {
                let (core, younger_holds, started) =
                    (counter.core.clone(), younger_holds.clone(), started.take());
                async move {
                    if let Some(s) = started {
                        let _ = s.send(());
                        younger_holds.notified().await;
                    }
                    tx.write(&core, COUNT, Value::Number(7.0)).await?;
                    Ok(())
                }
            })
            .await
        })
    };
    older_started.await.expect("the older transaction started");
    let once = CallOptions { max_attempts: 1, ..CallOptions::default() };
    let younger = transact("Counter.younger", &counter.core, &once, |tx| {
        let (core, younger_holds) = (counter.core.clone(), younger_holds.clone());
        async move {
            tx.write(&core, COUNT, Value::Number(1.0)).await?;
            younger_holds.notify_one();
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(())
        }
    })
    .await;
    assert_eq!(younger, Err(Error::ConflictRetriesExhausted { attempts: 1 }));
    assert_eq!(
        younger.unwrap_err().to_string(),
        "gave up after 1 attempt aborted by conflicting transactions"
    );
    older.await.expect("the older call finished").expect("the older call commits");
    assert_eq!(counter.get().await.expect("read"), 7.0, "nothing of the younger call remains");
}

#[tokio::test]
async fn a_deadline_aborts_a_blocked_call_without_trace() {
    let counter = Arc::new(Counter::new());
    let (started_tx, started) = tokio::sync::oneshot::channel();
    let holder = {
        let counter = counter.clone();
        tokio::spawn(async move {
            let mut started_tx = Some(started_tx);
            transact("Counter.hold", &counter.core, &CallOptions::default(), |tx| {
                let core = counter.core.clone();
                let started_tx = started_tx.take();
                async move {
                    tx.write(&core, COUNT, Value::Number(5.0)).await?;
                    if let Some(s) = started_tx {
                        let _ = s.send(());
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok(())
                }
            })
            .await
        })
    };
    started.await.expect("holder started");
    let options = CallOptions::default().with_deadline(Duration::from_millis(50));
    let blocked = transact("Counter.blocked", &counter.core, &options, |tx| {
        let core = counter.core.clone();
        async move {
            let n = tx.read(&core, COUNT).await?.as_number()?;
            tx.write(&core, COUNT, Value::Number(n + 1.0)).await?;
            Ok(())
        }
    })
    .await;
    // The blocked call is younger: it waits and times out (it never wounds the holder).
    assert_eq!(blocked, Err(Error::Timeout));
    holder.await.expect("holder finished").expect("holder commits");
    assert_eq!(counter.get().await.expect("read"), 5.0);
}

// ---------------------------------------------------------------- endpoint calls

/// An endpoint in a chain: `Link { Number touched; Endpoint next;
///   Public Function touch(TrueFalse fail) returns Number { touched += 1; ... next.touch(fail) ... } }`
struct Link {
    core: Arc<EndpointCore>,
    next: Option<EndpointRef>,
}

impl DynEndpoint for Link {
    fn core(&self) -> &Arc<EndpointCore> {
        &self.core
    }

    fn call<'a>(&'a self, tx: &'a Tx, function: &'a str, args: Vec<Value>) -> CallFuture<'a> {
        Box::pin(async move {
            match (function, args.as_slice()) {
                ("touch", [Value::Bool(fail)]) => Ok(vec![Value::Number(self.touch(tx, *fail).await?)]),
                ("touch", _) => app_error("touch takes one TrueFalse argument"),
                _ => app_error(format!("{} has no public function `{function}`", self.core.name())),
            }
        })
    }
}

impl Link {
    async fn touch(&self, tx: &Tx, fail: bool) -> Flow<f64> {
        let n = tx.read(&self.core, 0).await?.as_number()? + 1.0;
        tx.write(&self.core, 0, Value::Number(n)).await?;
        match &self.next {
            Some(next) => Ok(next.call(tx, "touch", vec![Value::Bool(fail)]).await?[0].as_number()? + n),
            None if fail => app_error("the end of the chain refused"),
            None => Ok(n),
        }
    }
}

fn chain() -> (Arc<Link>, Vec<Arc<EndpointCore>>) {
    let c = Arc::new(Link { core: EndpointCore::new("C", vec![Value::Number(0.0)]), next: None });
    let b = Arc::new(Link {
        core: EndpointCore::new("B", vec![Value::Number(0.0)]),
        next: Some(EndpointRef(c.clone())),
    });
    let a = Arc::new(Link {
        core: EndpointCore::new("A", vec![Value::Number(0.0)]),
        next: Some(EndpointRef(b.clone())),
    });
    let cores = vec![a.core.clone(), b.core.clone(), c.core.clone()];
    (a, cores)
}

async fn touched(cores: &[Arc<EndpointCore>]) -> Vec<f64> {
    transact("read", &cores[0], &CallOptions::default(), |tx| async move {
        let mut out = Vec::new();
        for core in cores {
            out.push(tx.read(core, 0).await?.as_number()?);
        }
        Ok(out)
    })
    .await
    .expect("read")
}

#[tokio::test]
async fn an_endpoint_call_chain_commits_or_aborts_as_one() {
    let (a, cores) = chain();
    let sum = transact("A.touch", &a.core, &CallOptions::default(), |tx| {
        let a = a.clone();
        async move { a.touch(&tx, false).await }
    })
    .await
    .expect("the chain commits");
    assert_eq!(sum, 3.0);
    assert_eq!(touched(&cores).await, vec![1.0, 1.0, 1.0]);

    let err = transact("A.touch", &a.core, &CallOptions::default(), |tx| {
        let a = a.clone();
        async move { a.touch(&tx, true).await }
    })
    .await
    .expect_err("the end of the chain raises");
    assert_eq!(err, Error::Application { message: "the end of the chain refused".into() });
    assert_eq!(touched(&cores).await, vec![1.0, 1.0, 1.0], "nothing of the failed chain is left anywhere");
}

#[tokio::test]
async fn an_unknown_function_or_wrong_arguments_raise_instead_of_hanging() {
    let (a, _) = chain();
    let target = EndpointRef(a.clone());
    let outcome = tokio::time::timeout(
        Duration::from_secs(5),
        transact("caller", &scratch(), &CallOptions::default(), |tx| {
            let target = target.clone();
            async move { target.call(&tx, "launch", vec![]).await }
        }),
    )
    .await
    .expect("does not hang");
    assert_eq!(
        outcome.map(|_| ()),
        Err(Error::Application { message: "A has no public function `launch`".into() })
    );
    let outcome = transact("caller", &scratch(), &CallOptions::default(), |tx| {
        let target = target.clone();
        async move { target.call(&tx, "touch", vec![Value::Number(1.0)]).await }
    })
    .await;
    assert_eq!(
        outcome.map(|_| ()),
        Err(Error::Application { message: "touch takes one TrueFalse argument".into() })
    );
}

#[tokio::test]
async fn arguments_crossing_an_endpoint_call_are_copied() {
    // The callee appends to the List it receives; the caller's List is unchanged.
    struct Appender(Arc<EndpointCore>);
    impl DynEndpoint for Appender {
        fn core(&self) -> &Arc<EndpointCore> {
            &self.0
        }
        fn call<'a>(&'a self, tx: &'a Tx, _function: &'a str, args: Vec<Value>) -> CallFuture<'a> {
            Box::pin(async move {
                tx.list_append(args[0].as_obj()?, Value::Number(99.0)).await?;
                Ok(vec![args[0].clone()])
            })
        }
    }
    let target = EndpointRef(Arc::new(Appender(EndpointCore::new("Appender", vec![]))));
    let (mine, theirs) = transact("caller", &scratch(), &CallOptions::default(), |tx| {
        let target = target.clone();
        async move {
            let mine = Value::new_list(vec![Value::Number(1.0)]);
            let returned = target.call(&tx, "append", vec![mine.clone()]).await?;
            Ok((
                tx.list_items(mine.as_obj()?).await?.len(),
                tx.list_items(returned[0].as_obj()?).await?.len(),
            ))
        }
    })
    .await
    .expect("commits");
    assert_eq!((mine, theirs), (1, 2));
}

// ---------------------------------------------------------------- errors at run time

#[tokio::test]
async fn bad_indexes_and_missing_keys_raise_application_exceptions() {
    let outcome = transact("bad", &scratch(), &CallOptions::default(), |tx| async move {
        let l = Value::new_list(vec![Value::Number(1.0)]);
        tx.list_get(l.as_obj()?, 3.0).await
    })
    .await;
    assert_eq!(
        outcome.map(|_| ()),
        Err(Error::Application { message: "List index 3 is out of range for a List of 1 element".into() })
    );
    let outcome = transact("bad", &scratch(), &CallOptions::default(), |tx| async move {
        let l = Value::new_list(vec![Value::Number(1.0)]);
        tx.list_get(l.as_obj()?, 0.5).await
    })
    .await;
    assert_eq!(
        outcome.map(|_| ()),
        Err(Error::Application { message: "List index 0.5 is not a whole number".into() })
    );
    let outcome = transact("bad", &scratch(), &CallOptions::default(), |tx| async move {
        let m = Value::new_map(BTreeMap::new());
        tx.map_remove(m.as_obj()?, &Key::Text("k".into())).await
    })
    .await;
    assert_eq!(
        outcome,
        Err(Error::Application { message: "cannot remove key 'k': it is not in the Map".into() })
    );
}

#[tokio::test]
async fn deep_copies_keep_sharing_and_cycles() {
    let copied = transact("copy", &scratch(), &CallOptions::default(), |tx| async move {
        let inner = Value::new_list(vec![Value::Number(1.0)]);
        let outer = Value::new_list(vec![inner.clone(), inner.clone()]);
        // A struct that contains itself through a list.
        let node = Value::new_struct(vec![Value::new_list(vec![])]);
        let children = tx.field_get(node.as_obj()?, 0).await?;
        tx.list_append(children.as_obj()?, node.clone()).await?;
        let outer_copy = tx.deep_copy(&outer).await?;
        let node_copy = tx.deep_copy(&node).await?;
        let items = tx.list_items(outer_copy.as_obj()?).await?;
        let shared = items[0].as_obj()?.same(items[1].as_obj()?) && !items[0].as_obj()?.same(inner.as_obj()?);
        let kids = tx.field_get(node_copy.as_obj()?, 0).await?;
        let kid = tx.list_get(kids.as_obj()?, 0.0).await?;
        let cycle = kid.as_obj()?.same(node_copy.as_obj()?) && !kid.as_obj()?.same(node.as_obj()?);
        Ok((shared, cycle, tx.equals(&outer, &outer_copy).await?))
    })
    .await
    .expect("commits");
    assert_eq!(copied, (true, true, true));
}

// ---------------------------------------------------------------- externals

#[tokio::test]
async fn externals_are_written_transactionally() {
    let cell = External::new(10.0_f64);
    let ok = transact("ext", &scratch(), &CallOptions::default(), |tx| {
        let cell = cell.cell().clone();
        async move {
            let v = tx.ext_read(&cell).await?.as_number()?;
            tx.ext_write(&cell, Value::Number(v * 2.0)).await?;
            Ok(())
        }
    })
    .await;
    assert!(ok.is_ok());
    assert_eq!(cell.get(), 20.0);
    let failed = transact("ext", &scratch(), &CallOptions::default(), |tx| {
        let cell = cell.cell().clone();
        async move {
            tx.ext_write(&cell, Value::Number(-1.0)).await?;
            app_error::<()>("changed my mind")
        }
    })
    .await;
    assert!(failed.is_err());
    assert_eq!(cell.get(), 20.0, "an aborted write never reaches the host");

    let stock: External<BTreeMap<String, f64>> = External::new(BTreeMap::from([("apples".to_owned(), 3.0)]));
    transact("restock", &scratch(), &CallOptions::default(), |tx| {
        let cell = stock.cell().clone();
        async move {
            let map = tx.ext_for_write(&cell).await?;
            tx.map_set(map.as_obj()?, Key::Text("pears".into()), Value::Number(5.0)).await?;
            Ok(())
        }
    })
    .await
    .expect("commits");
    assert_eq!(stock.get(), BTreeMap::from([("apples".to_owned(), 3.0), ("pears".to_owned(), 5.0)]));
}

// ---------------------------------------------------------------- watchdog

#[tokio::test]
async fn the_watchdog_reports_code_that_does_not_yield() {
    waldo::watchdog::set_budget(Duration::from_millis(10));
    let before = waldo::watchdog::reports();
    transact("Busy.spin", &scratch(), &CallOptions::default(), |_tx| async move {
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(80) {
            std::hint::spin_loop();
        }
        Ok(())
    })
    .await
    .expect("commits");
    waldo::watchdog::set_budget(waldo::watchdog::DEFAULT_BUDGET);
    assert!(waldo::watchdog::reports() > before, "the watchdog reported the long poll");
}

// ---------------------------------------------------------------- one logical task per endpoint

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_endpoints_code_never_runs_on_two_threads_at_once() {
    let core = EndpointCore::new("Busy", vec![Value::Number(0.0)]);
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (core, inside, most) = (core.clone(), inside.clone(), most.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..200 {
                transact("Busy.work", &core, &CallOptions::default(), |tx| {
                    let (inside, most) = (inside.clone(), most.clone());
                    async move {
                        // A stretch of code with no wait: nothing else of this endpoint may run meanwhile.
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        let start = std::time::Instant::now();
                        while start.elapsed() < Duration::from_micros(20) {
                            std::hint::spin_loop();
                        }
                        inside.fetch_sub(1, Ordering::SeqCst);
                        tokio::task::yield_now().await; // a wait: others may run now
                        let _ = (tx.priority(), i);
                        Ok(())
                    }
                })
                .await
                .expect("commits");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task finished");
    }
    assert_eq!(most.load(Ordering::SeqCst), 1, "two transactions ran code of one endpoint at the same time");
}

#[tokio::test]
async fn an_endpoint_calling_itself_does_not_deadlock() {
    struct Recursive {
        core: Arc<EndpointCore>,
        me: parking_lot::Mutex<Option<EndpointRef>>,
    }
    impl DynEndpoint for Recursive {
        fn core(&self) -> &Arc<EndpointCore> {
            &self.core
        }
        fn call<'a>(&'a self, tx: &'a Tx, _f: &'a str, args: Vec<Value>) -> CallFuture<'a> {
            Box::pin(async move {
                let depth = args[0].as_number()?;
                if depth == 0.0 {
                    return Ok(vec![Value::Number(0.0)]);
                }
                let me = self.me.lock().clone().expect("set");
                let below = me.call(tx, "down", vec![Value::Number(depth - 1.0)]).await?;
                Ok(vec![Value::Number(below[0].as_number()? + 1.0)])
            })
        }
    }
    let r = Arc::new(Recursive {
        core: EndpointCore::new("Recursive", vec![]),
        me: parking_lot::Mutex::new(None),
    });
    let me = EndpointRef(r.clone());
    *r.me.lock() = Some(me.clone());
    let depth = tokio::time::timeout(
        Duration::from_secs(5),
        transact("Recursive.down", &r.core, &CallOptions::default(), |tx| {
            let me = me.clone();
            async move { me.call(&tx, "down", vec![Value::Number(5.0)]).await }
        }),
    )
    .await
    .expect("no deadlock")
    .expect("commits");
    *r.me.lock() = None; // break the reference cycle
    assert_eq!(depth[0].as_number().expect("a Number"), 5.0);
}

// ---------------------------------------------------------------- regressions from review

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn locking_two_objects_in_opposite_orders_never_deadlocks() {
    let core = scratch();
    let x = Value::new_list(vec![Value::Number(0.0)]);
    let y = Value::new_list(vec![Value::Number(0.0)]);
    let options = CallOptions::default().with_deadline(Duration::from_secs(10));
    let mut tasks = Vec::new();
    for t in 0..4 {
        let (core, x, y, options) = (core.clone(), x.clone(), y.clone(), options.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..300 {
                let (first, second) =
                    if t % 2 == 0 { (x.clone(), y.clone()) } else { (y.clone(), x.clone()) };
                transact("Swap.both", &core, &options, |tx| {
                    let (first, second) = (first.clone(), second.clone());
                    async move {
                        let a = tx.list_get(first.as_obj()?, 0.0).await?.as_number()?;
                        tx.list_set(first.as_obj()?, 0.0, Value::Number(a + 1.0)).await?;
                        tokio::task::yield_now().await;
                        let b = tx.list_get(second.as_obj()?, 0.0).await?.as_number()?;
                        tx.list_set(second.as_obj()?, 0.0, Value::Number(b + 1.0)).await?;
                        Ok(())
                    }
                })
                .await
                .expect("no deadlock: every transaction commits before the deadline");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task finished");
    }
    let total = transact("read", &core, &CallOptions::default(), |tx| {
        let (x, y) = (x.clone(), y.clone());
        async move {
            Ok(tx.list_get(x.as_obj()?, 0.0).await?.as_number()?
                + tx.list_get(y.as_obj()?, 0.0).await?.as_number()?)
        }
    })
    .await
    .expect("read");
    assert_eq!(total, 2400.0);
}

#[tokio::test]
async fn an_external_write_in_a_failed_try_is_undone() {
    let cell = External::new(0.0_f64);
    transact("ext", &scratch(), &CallOptions::default(), |tx| {
        let cell = cell.cell().clone();
        async move {
            tx.ext_write(&cell, Value::Number(1.0)).await?;
            let sp = tx.savepoint();
            tx.ext_write(&cell, Value::Number(2.0)).await?;
            tx.rollback_to(sp); // the try body raised
            Ok(())
        }
    })
    .await
    .expect("commits");
    assert_eq!(cell.get(), 1.0);
}

#[tokio::test]
async fn signals_run_after_every_lock_is_released_and_externals_installed() {
    let cell = External::new(0.0_f64);
    let seen = Arc::new(parking_lot::Mutex::new(None));
    let f = {
        let (cell, seen) = (cell.clone(), seen.clone());
        HostFn::new(move |_| {
            *seen.lock() = Some(cell.get());
            Ok(vec![])
        })
    };
    let core = scratch();
    transact("ext", &core, &CallOptions::default(), |tx| {
        let (cell, f, core) = (cell.cell().clone(), f.clone(), core.clone());
        async move {
            tx.ext_write(&cell, Value::Number(42.0)).await?;
            tx.signal(&core, f, vec![]).await?;
            Ok(())
        }
    })
    .await
    .expect("commits");
    assert_eq!(*seen.lock(), Some(42.0), "the signal ran after commit, and before the call returned");
}

#[tokio::test]
async fn a_panicking_signal_does_not_stop_other_effects() {
    let ran = Arc::new(AtomicUsize::new(0));
    let boom = HostFn::new(|_| panic!("a host function panicked"));
    let count = {
        let ran = ran.clone();
        HostFn::new(move |_| {
            ran.fetch_add(1, Ordering::SeqCst);
            Ok(vec![])
        })
    };
    let core = scratch();
    for _ in 0..2 {
        transact("effects", &core, &CallOptions::default(), |tx| {
            let (boom, count, core) = (boom.clone(), count.clone(), core.clone());
            async move {
                tx.signal(&core, boom, vec![]).await?;
                tx.signal(&core, count, vec![]).await?;
                Ok(())
            }
        })
        .await
        .expect("commits");
    }
    assert_eq!(ran.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_waldo_code_does_not_wedge_the_endpoint() {
    let counter = Arc::new(Counter::new());
    let panicking = {
        let counter = counter.clone();
        tokio::spawn(async move {
            transact("Counter.panics", &counter.core, &CallOptions::default(), |tx| {
                let core = counter.core.clone();
                async move {
                    tx.write(&core, COUNT, Value::Number(7.0)).await?;
                    if core.name() == "Counter" {
                        panic!("a host function panicked inside a transaction");
                    }
                    Ok(())
                }
            })
            .await
        })
    };
    assert!(panicking.await.is_err(), "the panic reaches the task");
    let after = tokio::time::timeout(Duration::from_secs(5), counter.increment()).await;
    assert_eq!(
        after.expect("the endpoint is not wedged").expect("commits"),
        1.0,
        "the panicked write left no trace"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_old_writer_is_not_starved_by_a_stream_of_young_readers() {
    let counter = Arc::new(Counter::new());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..3 {
        let (counter, stop) = (counter.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                transact("Counter.peek", &counter.core, &CallOptions::default(), |tx| {
                    let core = counter.core.clone();
                    async move {
                        let n = tx.read(&core, COUNT).await?;
                        tokio::task::yield_now().await; // readers overlap
                        Ok(n)
                    }
                })
                .await
                .expect("reader commits");
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    let written = tokio::time::timeout(Duration::from_secs(5), counter.increment()).await;
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.expect("reader finished");
    }
    assert_eq!(written.expect("the writer got through").expect("commits"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wound_stops_a_transaction_that_is_waiting_for_something_else() {
    let counter = Arc::new(Counter::new());
    let (locked_tx, locked) = tokio::sync::oneshot::channel();
    // The younger transaction takes the lock, then sleeps for a long time.
    let older_priority_holder = tokio::spawn({
        let counter = counter.clone();
        async move {
            // Let the older transaction get its priority first.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let mut locked_tx = Some(locked_tx);
            transact("Counter.sleepy", &counter.core, &CallOptions::default(), |tx| {
                let core = counter.core.clone();
                let locked_tx = locked_tx.take();
                async move {
                    tx.write(&core, COUNT, Value::Number(100.0)).await?;
                    if let Some(l) = locked_tx {
                        let _ = l.send(());
                        tokio::time::sleep(Duration::from_secs(30)).await; // only on the first attempt
                    }
                    Ok(())
                }
            })
            .await
        }
    });
    let started = std::time::Instant::now();
    let options = CallOptions::default();
    let older = transact("Counter.older", &counter.core, &options, |tx| {
        let core = counter.core.clone();
        let wait = tokio::time::sleep(Duration::from_millis(40));
        async move {
            wait.await; // the older transaction starts first but asks for the lock later
            let n = tx.read(&core, COUNT).await?.as_number()?;
            tx.write(&core, COUNT, Value::Number(n + 1.0)).await?;
            Ok(n + 1.0)
        }
    });
    let (older, _) = tokio::join!(older, locked);
    let older = older.expect("the older transaction commits");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the sleeping holder was wounded and released at once"
    );
    older_priority_holder.await.expect("holder finished").expect("the wounded holder retried and committed");
    // The wounded holder retries at once, without its sleep: whichever of the two then
    // commits first, the result is one of the two serial orders.
    match older {
        1.0 => assert_eq!(counter.get().await.expect("read"), 100.0, "the holder's retry went second"),
        101.0 => assert_eq!(counter.get().await.expect("read"), 101.0, "the holder's retry went first"),
        other => panic!("the older transaction saw {other}: neither serial order"),
    }
}

// ---------------------------------------------------------------- operations for generated code

#[tokio::test]
async fn operations_on_containers_and_text() {
    let outcome = transact("ops", &scratch(), &CallOptions::default(), |tx| async move {
        let list = Value::new_list(vec![Value::Number(1.0), Value::text("two")]);
        let map = Value::new_map(BTreeMap::from([
            (Key::number(3.0), Value::text("c")),
            (Key::number(-1.0), Value::text("a")),
        ]));
        let text = Value::text("hello");
        let found = (
            ops::contains(&tx, &Value::text("two"), &list).await?,
            ops::contains(&tx, &Value::Number(3.0), &map).await?,
            ops::contains(&tx, &Value::text("ell"), &text).await?,
            ops::contains(&tx, &Value::Number(9.0), &list).await?,
        );
        let lens = (ops::len(&tx, &list).await?, ops::len(&tx, &text).await?);
        let keys: Vec<f64> =
            ops::iteration(&tx, &map).await?.iter().map(|k| k.as_number().unwrap_or(f64::NAN)).collect();
        let second = ops::index_get(&tx, &text, &Value::Number(1.0)).await?;
        Ok((found, lens, keys, second.as_text()?.to_string()))
    })
    .await
    .expect("commits");
    assert_eq!(outcome, ((true, true, true, false), (2.0, 5.0), vec![-1.0, 3.0], "e".to_owned()));

    let missing = transact("ops", &scratch(), &CallOptions::default(), |tx| async move {
        let map = Value::new_map(BTreeMap::new());
        ops::index_get(&tx, &map, &Value::text("k")).await
    })
    .await;
    assert_eq!(missing.map(|_| ()), Err(Error::Application { message: "no key 'k' in the Map".into() }));

    let unbound = transact("ops", &scratch(), &CallOptions::default(), |tx| async move {
        ops::call_function(&tx, &Value::Nothing, vec![]).await
    })
    .await;
    assert_eq!(
        unbound.map(|_| ()),
        Err(Error::Application { message: "this Function variable was never given a function".into() })
    );
}

#[tokio::test]
async fn endpoints_created_in_a_clock_scope_take_their_priorities_from_it() {
    // A host of its own (as a simulated host would be): its endpoints share its clock, and
    // no other endpoint does.
    let clock = Arc::new(Clock::with_origin(7));
    let scoped = Clock::scope(clock.clone(), async { EndpointCore::new("Scoped", vec![]) }).await;
    let priority = |core: Arc<EndpointCore>| async move {
        transact("priority", &core, &CallOptions::default(), |tx| async move { Ok(tx.priority().parts()) })
            .await
            .expect("commits")
    };
    let (count, origin) = priority(scoped.clone()).await;
    assert_eq!(origin, 7, "the scope's clock handed it out");
    assert_eq!(clock.next().parts().0, count + 1, "the scope's clock moved on");
    let (_, elsewhere) = priority(scratch()).await;
    assert_ne!(elsewhere, 7, "an endpoint made outside the scope has the process's clock");
    assert_eq!(priority(scoped).await.1, 7);
}
