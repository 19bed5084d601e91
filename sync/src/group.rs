//! gevent's `Group` and `Pool`: greenlets managed together.
//!
//! A `Group` keeps a [`Greenlet`] reference to each member it spawned; finished members are
//! dropped from the list lazily. A `Pool` is a group with a [`Semaphore`] of `size` permits:
//! `spawn` takes a permit first (waiting while the pool is full), and the member gives it back as
//! the last thing it does, before its result is delivered, so whoever joins it finds the slot
//! already free.

use crate::channel::channel;
use crate::semaphore::Semaphore;
use grove_runtime::{spawn, Greenlet, GreenletId, JoinHandle};
use std::panic::resume_unwind;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// gevent's `Group`: spawn, join and kill greenlets as a set.
#[derive(Default, Clone)]
pub struct Group {
    members: Arc<parking_lot::Mutex<Members>>,
}

/// The member list, pruned of finished members lazily: when it has doubled since the last
/// prune (`add` used to scan it on every call, which made a server's accept loop, adding a
/// member per connection, quadratic in its open connections).
#[derive(Default)]
struct Members {
    list: Vec<Greenlet>,
    prune_at: usize,
    /// `kill`s begun so far: a `map` that started before one starts no more members.
    kills: u64,
}

impl Members {
    fn push(&mut self, g: Greenlet) {
        if self.list.len() >= self.prune_at {
            self.prune();
        }
        self.list.push(g);
    }

    fn prune(&mut self) {
        self.list.retain(|g| !g.is_finished());
        self.prune_at = (self.list.len() * 2).max(64);
    }
}

impl Group {
    /// An empty group.
    pub fn new() -> Group {
        Group::default()
    }

    /// Runs `f` on every item, each in a member greenlet, and returns the results in input
    /// order (gevent's `Group.map`: a group has no size limit). A panicking call panics `map`
    /// with the same payload once every call has finished.
    pub fn map<I, F, T>(&self, items: I, f: F) -> Vec<T>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        let kills = self.kills();
        map_with(items, f, |job| {
            self.spawn_unless_killed_since(Some(kills), job)
        })
    }

    /// Spawns `f` as a member.
    pub fn spawn<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.spawn_unless_killed_since(None, f)
            .expect("grove: a spawn with no kill count to check refused")
    }

    /// Spawns `f` as a member, listed before it can run (spawned first and listed after, a
    /// member could start, and spawn members of its own, unseen by `len`, `join` or `kill`);
    /// `None`, dropping `f`, if the group was killed since it had `kills` kills.
    fn spawn_unless_killed_since<F, T>(&self, kills: Option<u64>, f: F) -> Option<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let mut m = self.members.lock();
        if kills.is_some_and(|k| k != m.kills) {
            return None;
        }
        let h = spawn(f);
        m.push(h.greenlet());
        Some(h)
    }

    /// True if `id` is a member still running (or not yet pruned).
    fn is_member(&self, id: GreenletId) -> bool {
        self.members.lock().list.iter().any(|g| g.id() == id)
    }

    /// `kill`s begun so far.
    fn kills(&self) -> u64 {
        self.members.lock().kills
    }

    /// Adds a greenlet spawned elsewhere.
    pub fn add(&self, g: Greenlet) {
        self.members.lock().push(g);
    }

    /// Members still running.
    pub fn len(&self) -> usize {
        let mut m = self.members.lock();
        m.prune();
        m.list.len()
    }

    /// True if no member is running.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Members still running, except the caller (a member that joins or kills its own group
    /// must not wait for itself) and the members `skip` names.
    fn others_but(&self, skip: &dyn Fn(GreenletId) -> bool) -> Vec<Greenlet> {
        let me = grove_runtime::current().map(|c| c.id());
        let mut m = self.members.lock();
        m.prune();
        m.list
            .iter()
            .filter(|g| Some(g.id()) != me && !skip(g.id()))
            .cloned()
            .collect()
    }

    /// [`join_timeout`](Self::join_timeout), not waiting for the members `skip` names (for a
    /// server whose handlers may stop it together: each must not wait for the others).
    #[doc(hidden)]
    pub fn join_timeout_but(&self, d: Duration, skip: &dyn Fn(GreenletId) -> bool) -> bool {
        // `None`: beyond any representable instant, no deadline.
        let until = Instant::now().checked_add(d);
        loop {
            let running = self.others_but(skip);
            if running.is_empty() {
                return true;
            }
            for g in running {
                let Some(until) = until else {
                    g.wait();
                    continue;
                };
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() || !g.wait_timeout(left) {
                    return self.others_but(skip).is_empty();
                }
            }
        }
    }

    /// [`kill`](Self::kill), sparing the members `skip` names.
    #[doc(hidden)]
    pub fn kill_but(&self, skip: &dyn Fn(GreenletId) -> bool) {
        self.members.lock().kills += 1;
        loop {
            let members = self.others_but(skip);
            if members.is_empty() {
                return;
            }
            // One process-wide fence for them all, not one each (`kill_all`).
            grove_runtime::kill_all(&members);
            for g in &members {
                g.wait();
            }
        }
    }

    /// Waits for every member, including members spawned while waiting (from a member: every
    /// other member).
    pub fn join(&self) {
        // No representable deadline that far: no deadline.
        self.join_timeout_but(Duration::MAX, &|_| false);
    }

    /// Waits at most `d` for every member; true if all finished.
    pub fn join_timeout(&self, d: Duration) -> bool {
        self.join_timeout_but(d, &|_| false)
    }

    /// Kills every member and waits for them to die (gevent's `kill(block=True)`), again while
    /// dying members spawn new ones. Called from a member, it kills every other member.
    pub fn kill(&self) {
        self.kill_but(&|_| false)
    }
}

// The member list is changed under its lock by this module alone (push, retain), never across
// user code, so an unwind leaves it whole.
impl std::panic::RefUnwindSafe for Group {}
impl std::panic::UnwindSafe for Group {}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("running", &self.len())
            .finish()
    }
}

/// gevent's `Pool`: a group that runs at most `size` members at once.
#[derive(Clone)]
pub struct Pool {
    group: Group,
    /// `imap_unordered`'s feeders: not members (they hold no slot and do not count in `len`),
    /// but `join` and `kill` reach them first, so a killed pool starts nothing more.
    feeders: Group,
    slots: Arc<Semaphore>,
    size: usize,
}

/// A member's slot, given back to its pool while the member waits for the pool (`join`): an
/// `imap_unordered` feeder waiting for a slot would otherwise wait for the member, and the
/// member for the feeder (with one slot, for ever). Taken back when the wait ends, shielded
/// from kills and timeouts (as a condvar re-takes its mutex): a member never ends up holding
/// no slot, nor the pool one slot more than its size.
struct LentSlot(Option<Arc<Semaphore>>);

impl LentSlot {
    fn lend_if_member(pool: &Pool) -> LentSlot {
        let member = grove_runtime::current().is_some_and(|c| pool.group.is_member(c.id()));
        if !member {
            return LentSlot(None);
        }
        pool.slots.add_permits(1);
        LentSlot(Some(pool.slots.clone()))
    }
}

impl Drop for LentSlot {
    fn drop(&mut self) {
        if let Some(slots) = self.0.take() {
            grove_runtime::shielded(|| slots.acquire().forget());
        }
    }
}

/// Gives a pool slot back when the member ends, however it ends.
struct Slot(Arc<Semaphore>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.add_permits(1);
    }
}

impl Pool {
    /// A pool of `size` slots.
    ///
    /// # Panics
    /// If `size` is 0 (nothing could ever run).
    pub fn new(size: usize) -> Pool {
        assert!(size > 0, "grove: a Pool needs at least one slot");
        Pool {
            group: Group::new(),
            feeders: Group::new(),
            slots: Arc::new(Semaphore::new(size)),
            size,
        }
    }

    /// Spawns `f` once a slot is free (waiting while the pool is full).
    pub fn spawn<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.spawn_with_slot(move |slot| {
            let r = f();
            drop(slot); // released before the result is delivered
            r
        })
    }

    /// Spawns `f` once a slot is free, handing it the slot so it can give it back before it
    /// delivers its result some other way (a channel, in `imap_unordered`).
    fn spawn_with_slot<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce(Slot) -> T + Send + 'static,
        T: Send + 'static,
    {
        self.spawn_with_slot_unless_killed_since(None, f)
            .expect("grove: a spawn with no kill count to check refused")
    }

    /// [`spawn_with_slot`](Self::spawn_with_slot); `None` (the slot given back) if the pool was
    /// killed since it had `kills` kills, which may happen while this waits for the slot.
    fn spawn_with_slot_unless_killed_since<F, T>(
        &self,
        kills: Option<u64>,
        f: F,
    ) -> Option<JoinHandle<T>>
    where
        F: FnOnce(Slot) -> T + Send + 'static,
        T: Send + 'static,
    {
        self.slots.acquire().forget();
        let slot = Slot(self.slots.clone());
        self.group.spawn_unless_killed_since(kills, move || f(slot))
    }

    /// Slots free right now.
    pub fn free_count(&self) -> usize {
        self.slots.available()
    }

    /// The pool's size.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Members running.
    pub fn len(&self) -> usize {
        self.group.len()
    }

    /// True if no member is running.
    pub fn is_empty(&self) -> bool {
        self.group.is_empty()
    }

    /// Waits for every member, and for what `imap_unordered` has yet to start.
    pub fn join(&self) {
        let _lent = LentSlot::lend_if_member(self);
        self.feeders.join();
        self.group.join()
    }

    /// Waits at most `d` for every member; true if all finished.
    pub fn join_timeout(&self, d: Duration) -> bool {
        let _lent = LentSlot::lend_if_member(self);
        let until = Instant::now().checked_add(d);
        if !self.feeders.join_timeout(d) {
            return false;
        }
        let left = until.map_or(d, |u| u.saturating_duration_since(Instant::now()));
        self.group.join_timeout(left)
    }

    /// Kills every member (and stops `imap_unordered` from starting more) and waits for them
    /// to die.
    pub fn kill(&self) {
        self.feeders.kill();
        self.group.kill()
    }

    /// Runs `f` on every item, at most `size` at once, and returns the results in input order.
    /// A panicking call panics `map` with the same payload once every call has finished.
    pub fn map<I, F, T>(&self, items: I, f: F) -> Vec<T>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        // A `kill` while this feeds (waiting for slots) stops it: `kill` cannot reach this
        // loop, which runs in the caller, and it started members after `kill` returned.
        let kills = self.group.kills();
        map_with(items, f, |job| {
            self.spawn_with_slot_unless_killed_since(Some(kills), move |slot| {
                let r = job();
                drop(slot); // released before the result is delivered
                r
            })
        })
    }

    /// [`Pool::imap_unordered`], with the results in input order (gevent's `Pool.imap`): a
    /// result that finishes early waits for those before it. A panicking call re-raises its
    /// panic at its place in the order.
    pub fn imap<I, F, T>(&self, items: I, f: F) -> Imap<T>
    where
        I: IntoIterator + Send + 'static,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        let inner = self.imap_unordered(Numbered(items), move |(i, item)| {
            (
                i,
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(item))),
            )
        });
        Imap {
            inner,
            next: 0,
            early: std::collections::BTreeMap::new(),
        }
    }

    /// Runs `f` on every item, at most `size` at once, yielding results as they finish. Items
    /// are fed from a greenlet of its own, so results can be consumed while later items wait
    /// for a slot. A panicking call re-raises its panic when its result would be yielded.
    pub fn imap_unordered<I, F, T>(&self, items: I, f: F) -> ImapUnordered<T>
    where
        I: IntoIterator + Send + 'static,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = channel();
        let pool = self.clone();
        let f = Arc::new(f);
        let feeder = self.feeders.spawn(move || {
            // A panic of the input iterator itself is delivered like a member's.
            let fed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                for item in items {
                    let (tx, f) = (tx.clone(), f.clone());
                    pool.spawn_with_slot(move |slot| {
                        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(item)));
                        drop(slot); // the slot is free before the result can be seen
                        let _ = tx.send(r);
                    });
                }
            }));
            if let Err(p) = fed {
                let _ = tx.send(Err(p));
            }
        });
        ImapUnordered {
            rx,
            _feeder: feeder,
        }
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("size", &self.size)
            .field("free", &self.free_count())
            .finish()
    }
}

/// Items with their index, numbered as the feeder takes them (so the input need not be `Send`
/// once turned into an iterator, as for `imap_unordered`).
struct Numbered<I>(I);

impl<I: IntoIterator> IntoIterator for Numbered<I> {
    type Item = (usize, I::Item);
    type IntoIter = std::iter::Enumerate<I::IntoIter>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter().enumerate()
    }
}

/// A job of `map`, for `Group::spawn` or `Pool::spawn`.
type MapJob<T> = Box<dyn FnOnce() -> T + Send>;

/// What `map` raises when the group or pool was killed before every item had its result: a
/// plain message, not the members' `Killed` (which made the caller look killed itself, though
/// nobody killed it).
pub const MAP_KILLED: &str =
    "grove: map: the group or pool was killed before every item had finished";

/// `map` for a group or a pool: spawns `f(item)` for every item with `spawn` (`None`: the
/// group or pool was killed, start no more), joins them all, then gives the results in input
/// order, re-raising the first panic, or [`MAP_KILLED`] if members were killed or never started.
fn map_with<I, F, T>(items: I, f: F, spawn: impl Fn(MapJob<T>) -> Option<JoinHandle<T>>) -> Vec<T>
where
    I: IntoIterator,
    I::Item: Send + 'static,
    F: Fn(I::Item) -> T + Send + Sync + 'static,
    T: Send + 'static,
{
    let f = Arc::new(f);
    let mut handles = Vec::new();
    let mut cut_short = false;
    for item in items {
        let f = f.clone();
        match spawn(Box::new(move || f(item))) {
            Some(h) => handles.push(h),
            None => {
                cut_short = true;
                break;
            }
        }
    }
    // Every member is joined before anything is raised.
    let results: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
    let mut values = Vec::with_capacity(results.len());
    let (mut killed, mut first_panic) = (cut_short, None);
    for r in results {
        match r {
            Ok(v) => values.push(v),
            Err(p) if p.is::<grove_runtime::Killed>() => killed = true,
            Err(p) => {
                first_panic.get_or_insert(p);
            }
        }
    }
    if let Some(p) = first_panic {
        resume_unwind(p);
    }
    if killed {
        resume_unwind(Box::new(MAP_KILLED.to_string()));
    }
    values
}

/// Results of [`Pool::imap`], in input order.
pub struct Imap<T> {
    inner: ImapUnordered<(usize, std::thread::Result<T>)>,
    /// The index the next result must have.
    next: usize,
    /// Results that finished before their turn.
    early: std::collections::BTreeMap<usize, std::thread::Result<T>>,
}

impl<T> Iterator for Imap<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        loop {
            if let Some(r) = self.early.remove(&self.next) {
                self.next += 1;
                match r {
                    Ok(v) => return Some(v),
                    // A member the pool's `kill` stopped has no result (as in `imap_unordered`).
                    Err(p) if p.is::<grove_runtime::Killed>() => continue,
                    Err(p) => resume_unwind(p),
                }
            }
            match self.inner.next() {
                Some((i, r)) => {
                    self.early.insert(i, r);
                }
                // All in: a result the pool's `kill` stopped never comes; go on past it.
                None => {
                    let (&i, _) = self.early.iter().next()?;
                    self.next = i;
                }
            }
        }
    }
}

/// Results of [`Pool::imap_unordered`], in the order they finish.
pub struct ImapUnordered<T> {
    rx: crate::channel::Receiver<std::thread::Result<T>>,
    _feeder: JoinHandle<()>,
}

impl<T> Iterator for ImapUnordered<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        // Ends once the feeder and every member are done (all senders dropped). A member the
        // pool's `kill` stopped has no result: it is skipped, not re-raised here.
        loop {
            match self.rx.recv().ok()? {
                Ok(v) => return Some(v),
                Err(p) if p.is::<grove_runtime::Killed>() => continue,
                Err(p) => resume_unwind(p),
            }
        }
    }
}
