//! Group commit: the requests an instance serves at once share one flush.
//!
//! A WASIp3 instance serves up to 16 requests concurrently (SPEC §7). When each of
//! them commits its own row and publishes its own event, every request pays a SQLite
//! hop to Spin's blocking pool, an fsync and a Redis round trip. With a
//! [`GroupCommit`], the first request to arrive flushes alone at once; the requests
//! that arrive while that flush is under way queue behind it, and the next of them
//! flushes them all together (up to a batch limit). Under no load nothing waits; under
//! load the batch grows with the load, and so does what each flush saves.
//!
//! Nothing is kept between requests but the queue of requests still waiting, each of
//! which holds its own item until its own answer is back. On the 5.2 line (one
//! request per instance) every flush is a batch of one.
//!
//! A waiting request is woken by the task that led its flush: a wake-up from one
//! component-model task to another, which wit-bindgen supports with its
//! `inter-task-wakeup` feature (enabled by this crate's `sdk6` feature).

use futures::channel::oneshot;
use std::cell::RefCell;

/// The flush that carried an item was dropped before it reported (its request went
/// away mid-flush): the item may or may not have been committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, thiserror::Error)]
#[error("the group commit carrying this request was interrupted")]
pub struct Interrupted;

/// A queue of items waiting for a flush; see the module docs. Keep one per instance
/// (a `thread_local`).
pub struct GroupCommit<T, R> {
    max_batch: usize,
    state: RefCell<State<T, R>>,
}

struct State<T, R> {
    /// Whether some request is leading a flush now (or has been handed the lead).
    leading: bool,
    queue: Vec<Waiter<T, R>>,
}

struct Waiter<T, R> {
    item: T,
    turn: oneshot::Sender<Turn<T, R>>,
}

/// What a waiting request is told.
enum Turn<T, R> {
    /// Its item was flushed: here is its result.
    Done(R),
    /// It leads the next flush (its item comes back to it, first in that batch).
    Lead(T),
}

impl<T, R> GroupCommit<T, R> {
    /// At most `max_batch` items (at least 1) per flush.
    pub const fn new(max_batch: usize) -> Self {
        GroupCommit {
            max_batch: if max_batch == 0 { 1 } else { max_batch },
            state: RefCell::new(State {
                leading: false,
                queue: Vec::new(),
            }),
        }
    }

    /// Submits `item` and answers its result once a flush has carried it. `flush`
    /// runs only if this request leads a flush: it gets the batch's items (this one
    /// first) and answers one result per item, in order. A missing result (a shorter
    /// answer) is [`Interrupted`] for its item.
    pub async fn submit<F>(&self, item: T, flush: F) -> Result<R, Interrupted>
    where
        F: AsyncFnOnce(Vec<T>) -> Vec<R>,
    {
        self.submit_then(item, flush, async |results| results).await
    }

    /// [`GroupCommit::submit`] in two steps: `flush` runs under the lead (the commit
    /// itself), then the lead passes to the next batch while `then` turns this batch's
    /// flushed items into their results (work that need not hold the next commit
    /// back, such as announcing what was committed).
    pub async fn submit_then<M, F, G>(&self, item: T, flush: F, then: G) -> Result<R, Interrupted>
    where
        F: AsyncFnOnce(Vec<T>) -> Vec<M>,
        G: AsyncFnOnce(Vec<M>) -> Vec<R>,
    {
        let waiting = {
            let mut state = self.state.borrow_mut();
            if state.leading {
                let (turn, told) = oneshot::channel();
                state.queue.push(Waiter { item, turn });
                Err(told)
            } else {
                state.leading = true;
                Ok(item)
            }
        };
        let own = match waiting {
            Ok(item) => item,
            Err(told) => match told.await {
                Ok(Turn::Done(result)) => return Ok(result),
                Ok(Turn::Lead(item)) => item,
                Err(oneshot::Canceled) => return Err(Interrupted),
            },
        };
        // This request leads: it flushes its own item and those queued behind the
        // last flush, then hands the lead to the first request still waiting, then
        // finishes its batch. The hand-over also happens if this request is dropped
        // mid-flush (its batch then hears `Interrupted` through their dropped senders).
        let lead = Lead(self);
        let others: Vec<Waiter<T, R>> = {
            let mut state = self.state.borrow_mut();
            let n = state.queue.len().min(self.max_batch - 1);
            state.queue.drain(..n).collect()
        };
        let mut items = Vec::with_capacity(others.len() + 1);
        items.push(own);
        let mut turns = Vec::with_capacity(others.len());
        for w in others {
            items.push(w.item);
            turns.push(w.turn);
        }
        let committed = flush(items).await;
        drop(lead);
        let mut results = then(committed).await.into_iter();
        let own = results.next();
        for (turn, result) in turns.into_iter().zip(results) {
            // A request that went away no longer needs its answer.
            let _ = turn.send(Turn::Done(result));
        }
        own.ok_or(Interrupted)
    }

    /// How many requests wait for a flush now (for tests and logs).
    pub fn waiting(&self) -> usize {
        self.state.borrow().queue.len()
    }

    /// Hands the lead to the first request still waiting, or ends it.
    fn pass_lead(&self) {
        let mut state = self.state.borrow_mut();
        while !state.queue.is_empty() {
            let w = state.queue.remove(0);
            // A waiter that went away cannot lead: try the next one.
            if w.turn.send(Turn::Lead(w.item)).is_ok() {
                return;
            }
        }
        state.leading = false;
    }
}

/// The lead, passed on when dropped (the flush ended, or its request went away).
struct Lead<'a, T, R>(&'a GroupCommit<T, R>);

impl<T, R> Drop for Lead<'_, T, R> {
    fn drop(&mut self) {
        self.0.pass_lead();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::LocalPool;
    use futures::task::LocalSpawnExt;
    use std::rc::Rc;

    /// A flush that can be held open by the test, so that requests pile up behind it.
    #[derive(Default)]
    struct Gate {
        open: RefCell<Option<oneshot::Sender<()>>>,
        batches: RefCell<Vec<Vec<u32>>>,
    }

    impl Gate {
        async fn flush(&self, items: Vec<u32>) -> Vec<u32> {
            let (tx, rx) = oneshot::channel();
            *self.open.borrow_mut() = Some(tx);
            let _ = rx.await;
            self.batches.borrow_mut().push(items.clone());
            items.into_iter().map(|i| i * 10).collect()
        }

        fn release(&self) -> bool {
            match self.open.borrow_mut().take() {
                Some(tx) => tx.send(()).is_ok(),
                None => false,
            }
        }
    }

    /// What each test request got, by its item.
    type Results = Rc<RefCell<Vec<(u32, Result<u32, Interrupted>)>>>;

    fn spawn_submit(
        pool: &LocalPool,
        gc: &Rc<GroupCommit<u32, u32>>,
        gate: &Rc<Gate>,
        item: u32,
        out: &Results,
    ) {
        let (gc, gate, out) = (gc.clone(), gate.clone(), out.clone());
        pool.spawner()
            .spawn_local(async move {
                let r = gc.submit(item, async |items| gate.flush(items).await).await;
                out.borrow_mut().push((item, r));
            })
            .expect("spawn");
    }

    #[test]
    fn a_lone_request_flushes_alone_and_requests_behind_a_flush_share_the_next() {
        let mut pool = LocalPool::new();
        let gc = Rc::new(GroupCommit::new(64));
        let gate = Rc::new(Gate::default());
        let out = Results::default();
        spawn_submit(&pool, &gc, &gate, 1, &out);
        pool.run_until_stalled();
        // 1 is flushing; 2, 3, 4 arrive meanwhile and wait.
        for i in 2..=4 {
            spawn_submit(&pool, &gc, &gate, i, &out);
        }
        pool.run_until_stalled();
        assert_eq!(gc.waiting(), 3);
        assert!(gate.release());
        pool.run_until_stalled();
        // 2 leads 2, 3, 4 in one flush.
        assert!(gate.release());
        pool.run_until_stalled();
        assert!(!gate.release(), "no third flush");
        assert_eq!(*gate.batches.borrow(), vec![vec![1], vec![2, 3, 4]]);
        let mut results = out.borrow().clone();
        results.sort();
        assert_eq!(
            results,
            vec![(1, Ok(10)), (2, Ok(20)), (3, Ok(30)), (4, Ok(40))]
        );
        assert_eq!(gc.waiting(), 0);
    }

    #[test]
    fn batches_are_capped_and_the_rest_wait_for_the_next_flush() {
        let mut pool = LocalPool::new();
        let gc = Rc::new(GroupCommit::new(2));
        let gate = Rc::new(Gate::default());
        let out = Results::default();
        for i in 1..=5 {
            spawn_submit(&pool, &gc, &gate, i, &out);
        }
        pool.run_until_stalled();
        while gate.release() {
            pool.run_until_stalled();
        }
        assert_eq!(
            *gate.batches.borrow(),
            vec![vec![1], vec![2, 3], vec![4, 5]]
        );
        assert_eq!(out.borrow().len(), 5);
        assert!(out.borrow().iter().all(|(i, r)| *r == Ok(i * 10)));
    }

    #[test]
    fn a_leader_dropped_mid_flush_interrupts_its_batch_and_passes_the_lead() {
        let mut pool = LocalPool::new();
        let gc = Rc::new(GroupCommit::<u32, u32>::new(64));
        let gate = Rc::new(Gate::default());
        let out = Results::default();
        // The first leader's request goes away while its flush is open.
        let (abort, abort_reg) = futures::future::AbortHandle::new_pair();
        {
            let (gc, gate) = (gc.clone(), gate.clone());
            pool.spawner()
                .spawn_local(async move {
                    let _ = futures::future::Abortable::new(
                        gc.submit(1, async |items| gate.flush(items).await),
                        abort_reg,
                    )
                    .await;
                })
                .expect("spawn");
        }
        pool.run_until_stalled();
        spawn_submit(&pool, &gc, &gate, 2, &out);
        pool.run_until_stalled();
        abort.abort();
        pool.run_until_stalled();
        // 2 was not in 1's batch: it was handed the lead and flushes itself.
        assert!(gate.release());
        pool.run_until_stalled();
        assert_eq!(*out.borrow(), vec![(2, Ok(20))]);
        assert_eq!(*gate.batches.borrow(), vec![vec![2]]);
    }

    #[test]
    fn a_short_answer_is_interrupted_for_the_items_it_misses() {
        let mut pool = LocalPool::new();
        let gc = Rc::new(GroupCommit::<u32, u32>::new(64));
        let gate = Rc::new(Gate::default());
        let out = Results::default();
        spawn_submit(&pool, &gc, &gate, 1, &out);
        pool.run_until_stalled();
        for i in 2..=3 {
            let (gc, out) = (gc.clone(), out.clone());
            pool.spawner()
                .spawn_local(async move {
                    // This flush answers only its first item.
                    let r = gc.submit(i, async |items| vec![items[0]]).await;
                    out.borrow_mut().push((i, r));
                })
                .expect("spawn");
        }
        pool.run_until_stalled();
        assert!(gate.release());
        pool.run_until_stalled();
        let mut results = out.borrow().clone();
        results.sort();
        assert_eq!(
            results,
            vec![(1, Ok(10)), (2, Ok(2)), (3, Err(Interrupted))]
        );
    }

    #[test]
    fn the_lead_passes_once_flushed_while_the_batch_is_still_finishing() {
        let mut pool = LocalPool::new();
        let gc = Rc::new(GroupCommit::<u32, u32>::new(64));
        let gate = Rc::new(Gate::default());
        let finishing = Rc::new(Gate::default());
        let out = Results::default();
        {
            let (gc, gate, finishing, out) =
                (gc.clone(), gate.clone(), finishing.clone(), out.clone());
            pool.spawner()
                .spawn_local(async move {
                    let r = gc
                        .submit_then(
                            1,
                            async |items| gate.flush(items).await,
                            async |results| finishing.flush(results).await,
                        )
                        .await;
                    out.borrow_mut().push((1, r));
                })
                .expect("spawn");
        }
        pool.run_until_stalled();
        spawn_submit(&pool, &gc, &gate, 2, &out);
        pool.run_until_stalled();
        // 1's commit ends: 2 leads its own flush while 1 is still finishing.
        assert!(gate.release());
        pool.run_until_stalled();
        assert_eq!(*gate.batches.borrow(), vec![vec![1]]);
        assert!(gate.release(), "2 flushes before 1 has finished");
        pool.run_until_stalled();
        assert_eq!(*out.borrow(), vec![(2, Ok(20))]);
        assert!(finishing.release());
        pool.run_until_stalled();
        assert_eq!(*out.borrow(), vec![(2, Ok(20)), (1, Ok(100))]);
    }
}
