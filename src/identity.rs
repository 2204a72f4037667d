//! Visitor identity without cookies (SPEC §3):
//! `visitor_id = keyed_hash(salt(site, local_day), site, client_ip, user_agent)`.
//! The salt is random per site and local day and is deleted after the day, so an id
//! cannot be recomputed later and nobody can be followed across days.

use crate::domain::{LocalDay, SiteId, Timezone, VisitId, VisitorId};
use rand::RngCore;
use siphasher::sip::SipHasher24;
use std::hash::Hasher;
use std::net::IpAddr;

/// How long a salt outlives its day: long enough for requests that were in flight at
/// midnight to finish, short enough that identities become unlinkable quickly.
pub const SALT_GRACE_MS: i64 = 2 * 3600 * 1000;

#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DailySalt(pub [u8; 16]);

impl DailySalt {
    pub fn random() -> DailySalt {
        let mut b = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut b);
        DailySalt(b)
    }
}

impl std::fmt::Debug for DailySalt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DailySalt(<redacted>)")
    }
}

/// When the salt of `day` may be deleted.
pub fn salt_expiry_ms(tz: &Timezone, day: LocalDay) -> i64 {
    tz.day_bounds(day).1 + SALT_GRACE_MS
}

pub fn visitor_id(salt: &DailySalt, site: SiteId, ip: IpAddr, user_agent: &str) -> VisitorId {
    let mut h = SipHasher24::new_with_key(&salt.0);
    h.write_i64(site.0);
    match ip {
        IpAddr::V4(v4) => h.write(&v4.octets()),
        IpAddr::V6(v6) => h.write(&v6.octets()),
    }
    h.write_u8(0xff);
    h.write(user_agent.as_bytes());
    VisitorId(h.finish())
}

/// A visit is named by its visitor and the time of its first event, so the live path and
/// the import path, which split visits independently, give the same visit the same id.
pub fn visit_id(visitor: VisitorId, first_event_ms: i64) -> VisitId {
    let mut h = SipHasher24::new_with_keys(0x666f_6f74_6661_6c6c, 0x7669_7369_7473_0001);
    h.write_u64(visitor.0);
    h.write_i64(first_event_ms);
    VisitId(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visitor_ids_depend_on_every_input() {
        let salt = DailySalt([7; 16]);
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        let base = visitor_id(&salt, SiteId(1), ip, "UA");
        assert_eq!(base, visitor_id(&salt, SiteId(1), ip, "UA"));
        assert_ne!(base, visitor_id(&DailySalt([8; 16]), SiteId(1), ip, "UA"));
        assert_ne!(base, visitor_id(&salt, SiteId(2), ip, "UA"));
        assert_ne!(base, visitor_id(&salt, SiteId(1), "203.0.113.8".parse().unwrap(), "UA"));
        assert_ne!(base, visitor_id(&salt, SiteId(1), ip, "UA2"));
    }

    #[test]
    fn salts_are_random_and_never_printed() {
        assert_ne!(DailySalt::random(), DailySalt::random());
        assert_eq!(format!("{:?}", DailySalt([1; 16])), "DailySalt(<redacted>)");
    }
}
