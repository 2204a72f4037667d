//! Site lookup for the hot path. Found sites are cached; unknown domains always ask the
//! store, so a site added by another process (`footfall site add`) is seen at once.

use crate::domain::Site;
use crate::storage::{Store, StoreResult};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

pub struct SiteDirectory {
    store: Arc<dyn Store>,
    cache: RwLock<HashMap<String, Arc<Site>>>,
}

impl SiteDirectory {
    pub fn new(store: Arc<dyn Store>) -> SiteDirectory {
        SiteDirectory { store, cache: RwLock::new(HashMap::new()) }
    }

    pub async fn lookup(&self, domain: &str) -> StoreResult<Option<Arc<Site>>> {
        if let Some(site) = self.cache.read().expect("site cache poisoned").get(domain) {
            return Ok(Some(site.clone()));
        }
        let found = self.store.site_by_domain(domain).await?.map(Arc::new);
        if let Some(site) = &found {
            self.cache.write().expect("site cache poisoned").insert(domain.to_string(), site.clone());
        }
        Ok(found)
    }
}
