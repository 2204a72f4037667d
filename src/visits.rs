//! Visits (sessions): the events of one visitor with no gap above 30 minutes (SPEC §3).
//! Visitor ids change at local midnight, so a visit never crosses it.
//!
//! Two paths split visits: the live path extends the visitor's current visit as events
//! arrive (`LiveVisits`), and the import path splits a whole day's events at once
//! (`assign_visits`). Both use `continues` and `identity::visit_id`, so they agree.

use crate::domain::{EventKind, SiteId, VisitId, VisitorId};
use crate::identity;
use std::collections::HashMap;
use std::sync::Mutex;

pub const VISIT_GAP_MS: i64 = 30 * 60 * 1000;

/// Whether an event at `ts_ms` belongs to a visit whose latest event was at `last_ms`.
pub fn continues(last_ms: i64, ts_ms: i64) -> bool {
    ts_ms - last_ms <= VISIT_GAP_MS
}

/// The live state of one visit, enough to extend it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveVisit {
    pub site: SiteId,
    pub visitor: VisitorId,
    pub visit: VisitId,
    pub last_ms: i64,
}

/// Hashes visit keys by mixing their integers. Visitor ids are already keyed hashes
/// under a secret daily salt, so clients cannot aim collisions at this map, and a
/// general-purpose keyed hasher would only cost time on every event.
#[derive(Default, Clone, Copy)]
pub struct VisitKeyHasher(u64);

impl std::hash::Hasher for VisitKeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(*b as u64);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn write_i64(&mut self, v: i64) {
        self.write_u64(v as u64)
    }
}

type VisitMap = HashMap<(SiteId, VisitorId), (VisitId, i64), std::hash::BuildHasherDefault<VisitKeyHasher>>;

/// In-process visit state for one machine. Sharded so that concurrent requests of
/// different visitors rarely contend on a lock.
pub struct LiveVisits {
    shards: Vec<Mutex<VisitMap>>,
}

impl Default for LiveVisits {
    fn default() -> Self {
        LiveVisits { shards: (0..64).map(|_| Mutex::new(VisitMap::default())).collect() }
    }
}

impl LiveVisits {
    fn shard(&self, visitor: VisitorId) -> &Mutex<VisitMap> {
        &self.shards[(visitor.0 % self.shards.len() as u64) as usize]
    }

    /// The visit an event at `ts_ms` belongs to, starting a new visit when needed.
    /// Engagement events never start a visit: without one they describe nothing and
    /// are dropped (`None`).
    pub fn touch(&self, site: SiteId, visitor: VisitorId, kind: EventKind, ts_ms: i64) -> Option<VisitId> {
        let mut map = self.shard(visitor).lock().expect("visit state poisoned");
        match map.get_mut(&(site, visitor)) {
            Some((visit, last)) if continues(*last, ts_ms) => {
                *last = (*last).max(ts_ms);
                Some(*visit)
            }
            _ if kind == EventKind::Engagement => None,
            _ => {
                let visit = identity::visit_id(visitor, ts_ms);
                map.insert((site, visitor), (visit, ts_ms));
                Some(visit)
            }
        }
    }

    /// Restores visits read back from storage after a restart.
    pub fn restore(&self, visits: impl IntoIterator<Item = LiveVisit>) {
        for v in visits {
            let mut map = self.shard(v.visitor).lock().expect("visit state poisoned");
            let entry = map.entry((v.site, v.visitor)).or_insert((v.visit, v.last_ms));
            if v.last_ms >= entry.1 {
                *entry = (v.visit, v.last_ms);
            }
        }
    }

    /// Forgets visits that can no longer be extended.
    pub fn evict_before(&self, now_ms: i64) -> usize {
        let mut removed = 0;
        for shard in &self.shards {
            let mut map = shard.lock().expect("visit state poisoned");
            let before = map.len();
            map.retain(|_, (_, last)| continues(*last, now_ms));
            removed += before - map.len();
        }
        removed
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().expect("visit state poisoned").len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One event of a day partition as the splitter sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timed {
    pub visitor: VisitorId,
    pub ts_ms: i64,
    pub kind: EventKind,
}

/// Splits a day's events into visits. Returns, for each input in the input order, its
/// visit, or `None` for an engagement event that has no visit to belong to.
pub fn assign_visits(events: &[Timed]) -> Vec<Option<VisitId>> {
    let mut order: Vec<usize> = (0..events.len()).collect();
    // Within one instant, counting events go before engagement so that an engagement
    // event sent in the same millisecond as its pageview still finds the visit.
    order.sort_by_key(|&i| {
        let e = &events[i];
        (e.visitor, e.ts_ms, e.kind == EventKind::Engagement, i)
    });
    let mut out = vec![None; events.len()];
    let mut current: Option<(VisitorId, VisitId, i64)> = None;
    for i in order {
        let e = &events[i];
        match current {
            Some((v, visit, last)) if v == e.visitor && continues(last, e.ts_ms) => {
                out[i] = Some(visit);
                current = Some((v, visit, e.ts_ms));
            }
            _ if e.kind == EventKind::Engagement => {
                // Keep the previous visit open: an orphan engagement event does not
                // break it, since it is dropped.
                if current.map(|(v, _, _)| v) != Some(e.visitor) {
                    current = None;
                }
            }
            _ => {
                let visit = identity::visit_id(e.visitor, e.ts_ms);
                out[i] = Some(visit);
                current = Some((e.visitor, visit, e.ts_ms));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIN: i64 = 60_000;

    #[test]
    fn live_visits_split_after_thirty_minutes() {
        let live = LiveVisits::default();
        let (s, v) = (SiteId(1), VisitorId(9));
        let a = live.touch(s, v, EventKind::Pageview, 0).unwrap();
        assert_eq!(live.touch(s, v, EventKind::Pageview, 30 * MIN), Some(a));
        assert_eq!(live.touch(s, v, EventKind::Engagement, 59 * MIN), Some(a));
        let b = live.touch(s, v, EventKind::Pageview, 89 * MIN + 1).unwrap();
        assert_ne!(a, b);
        assert_eq!(live.touch(s, VisitorId(10), EventKind::Engagement, 90 * MIN), None);
        assert_eq!(live.evict_before(200 * MIN), 1);
        assert!(live.is_empty());
    }

    /// An independent statement of the rule: walk each visitor's events in time order
    /// and start a visit whenever the gap exceeds 30 minutes.
    fn reference(events: &[Timed]) -> Vec<Option<(VisitorId, i64)>> {
        let mut out = vec![None; events.len()];
        let mut by_visitor: HashMap<VisitorId, Vec<usize>> = HashMap::new();
        for (i, e) in events.iter().enumerate() {
            by_visitor.entry(e.visitor).or_default().push(i);
        }
        for (_, mut idx) in by_visitor {
            idx.sort_by_key(|&i| (events[i].ts_ms, events[i].kind == EventKind::Engagement, i));
            let mut start: Option<i64> = None;
            let mut last = i64::MIN;
            for i in idx {
                let e = events[i];
                if let Some(first) = start.filter(|_| e.ts_ms - last <= VISIT_GAP_MS) {
                    out[i] = Some((e.visitor, first));
                    last = e.ts_ms;
                } else if e.kind != EventKind::Engagement {
                    start = Some(e.ts_ms);
                    last = e.ts_ms;
                    out[i] = Some((e.visitor, e.ts_ms));
                }
            }
        }
        out
    }

    fn timed() -> impl Strategy<Value = Timed> {
        (0u64..4, 0i64..(6 * 60), 0u8..10).prop_map(|(v, minute, k)| Timed {
            visitor: VisitorId(v),
            ts_ms: minute * MIN + (k as i64 % 3) * 1000,
            kind: match k {
                0 | 1 => EventKind::Engagement,
                2 => EventKind::Custom,
                _ => EventKind::Pageview,
            },
        })
    }

    proptest! {
        #[test]
        fn batch_split_matches_the_reference(events in proptest::collection::vec(timed(), 0..120)) {
            let got = assign_visits(&events);
            let want = reference(&events);
            for (g, w) in got.iter().zip(&want) {
                prop_assert_eq!(*g, w.map(|(v, start)| identity::visit_id(v, start)));
            }
        }

        #[test]
        fn live_split_matches_batch_split(mut events in proptest::collection::vec(timed(), 0..120)) {
            events.sort_by_key(|e| (e.ts_ms, e.kind == EventKind::Engagement));
            let live = LiveVisits::default();
            let got: Vec<_> = events.iter().map(|e| live.touch(SiteId(1), e.visitor, e.kind, e.ts_ms)).collect();
            prop_assert_eq!(got, assign_visits(&events));
        }
    }
}
