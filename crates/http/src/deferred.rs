//! Work a request leaves for after its response.
//!
//! Spin hands the response to the client as soon as the component has sent it, and lets
//! the component run on (a failure after that is only logged). Running a job there means
//! a tool that traps or never ends cannot turn into a 500 or a hung request: the client
//! already has its answer. One request is one WebAssembly instance on one thread, so a
//! thread-local queue is the whole mechanism; [`crate::io::send`] drains it.

use std::cell::RefCell;

type Work = Box<dyn FnOnce()>;

thread_local! {
    static AFTER_RESPONSE: RefCell<Vec<Work>> = const { RefCell::new(Vec::new()) };
}

/// Queues `work` to run once the response has been sent, in the order queued.
pub fn after_response(work: impl FnOnce() + 'static) {
    AFTER_RESPONSE.with(|q| q.borrow_mut().push(Box::new(work)));
}

/// Runs everything queued so far (work may queue more; that runs too).
pub fn run_queued() {
    while let Some(work) = AFTER_RESPONSE.with(|q| {
        let mut q = q.borrow_mut();
        (!q.is_empty()).then(|| q.remove(0))
    }) {
        work();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn queued_work_runs_once_in_order_including_work_it_queues() {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let (a, b) = (seen.clone(), seen.clone());
        after_response(move || {
            a.borrow_mut().push(1);
            let c = a.clone();
            after_response(move || c.borrow_mut().push(3));
        });
        after_response(move || b.borrow_mut().push(2));
        assert!(seen.borrow().is_empty(), "nothing runs before the response");
        run_queued();
        assert_eq!(*seen.borrow(), [1, 2, 3]);
        run_queued();
        assert_eq!(*seen.borrow(), [1, 2, 3], "each piece of work runs once");
    }
}
