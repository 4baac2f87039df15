//! Spin variables.
//!
//! On WASIp3 every known variable is read once per instance and kept: Spin variables do
//! not change while Spin runs, and an instance serves up to 128 requests. On WASIp2 each
//! read is a host call made on first use (each costs about 100 µs, SPEC §7, so reading
//! all of them per request would cost more than the reads a route needs).

/// A variable lookup by name; `None` for unset, undeclared or invalid.
pub type Lookup = Box<dyn Fn(&str) -> Option<String>>;

/// The lookup for this request. `names` are the variables a build may read.
pub async fn lookup(names: &'static [&'static str]) -> Lookup {
    #[cfg(feature = "sdk6")]
    {
        kept::lookup(names).await
    }
    #[cfg(all(feature = "sdk5", not(feature = "sdk6")))]
    {
        let _ = names;
        Box::new(|name| sdk5::variables::get(name).ok())
    }
    #[cfg(not(any(feature = "sdk5", feature = "sdk6")))]
    {
        let _ = names;
        Box::new(|_| None)
    }
}

#[cfg(feature = "sdk6")]
mod kept {
    use super::Lookup;
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::rc::Rc;

    thread_local! {
        /// The instance's variables, read once. Safe to keep: Spin variables are fixed
        /// for the life of the process, and they hold no request's data.
        static KEPT: RefCell<Option<Rc<HashMap<&'static str, String>>>> = const { RefCell::new(None) };
    }

    pub async fn lookup(names: &'static [&'static str]) -> Lookup {
        let map = match KEPT.with(|k| k.borrow().clone()) {
            Some(map) => map,
            None => {
                let mut map = HashMap::new();
                for name in names {
                    if let Ok(v) = sdk6::variables::get(name).await {
                        map.insert(*name, v);
                    }
                }
                let map = Rc::new(map);
                KEPT.with(|k| *k.borrow_mut() = Some(map.clone()));
                map
            }
        };
        Box::new(move |name| map.get(name).cloned())
    }
}
