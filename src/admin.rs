//! Administrative commands: sites, users, API keys. They open the store directly, so they
//! work whether or not `serve` is running on the same data.

use crate::domain::{Domain, Goal, GoalKind, Site, Timezone};
use crate::storage::{NewApiKey, Store, StoreError};
use anyhow::{anyhow, bail, Context};
use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
use rand::Rng;
use sha2::{Digest, Sha256};

pub async fn add_site(store: &dyn Store, domain: &str, timezone: &str) -> anyhow::Result<Site> {
    let domain = Domain::parse(domain).map_err(|e| anyhow!("{e}"))?;
    let timezone = Timezone::parse(timezone).map_err(|e| anyhow!("{e}"))?;
    match store.add_site(&domain, timezone).await {
        Ok(site) => Ok(site),
        Err(StoreError::AlreadyExists(_)) => bail!("site {domain} already exists"),
        Err(e) => Err(e).context("while adding the site"),
    }
}

pub async fn add_user(store: &dyn Store, email: &str, password: &str, admin: bool) -> anyhow::Result<i64> {
    let email = email.trim().to_ascii_lowercase();
    let valid_email = email.len() <= 254
        && !email.chars().any(char::is_whitespace)
        && email.split_once('@').is_some_and(|(user, host)| !user.is_empty() && host.contains('.') && !host.contains('@'));
    if !valid_email {
        bail!("email: {email:?} is not an email address");
    }
    if password.chars().count() < 8 {
        bail!("password: must be at least 8 characters");
    }
    if password.len() > 1024 {
        bail!("password: must be at most 1024 bytes");
    }
    let salt = SaltString::generate(&mut OsRng);
    let hash = argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow!("while hashing the password: {e}"))?
        .to_string();
    match store.add_user(&email, &hash, admin).await {
        Ok(id) => Ok(id),
        Err(StoreError::AlreadyExists(_)) => bail!("user {email} already exists"),
        Err(e) => Err(e).context("while adding the user"),
    }
}

/// Stored form of an API key secret. Keys are long random strings, so a fast hash is
/// enough; a slow password hash would only slow every API call.
pub fn hash_api_key(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates an API key and returns the secret, which is shown once and never stored.
pub async fn create_api_key(store: &dyn Store, name: &str, site: Option<&str>) -> anyhow::Result<String> {
    let name = name.trim();
    if name.is_empty() || name.len() > 200 {
        bail!("name: must be 1 to 200 characters");
    }
    let site_id = match site {
        None => None,
        Some(d) => Some(find_site(store, d).await?.id),
    };
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    let body: String = (0..40).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect();
    let secret = format!("ff_{body}");
    store
        .add_api_key(NewApiKey { name: name.to_string(), site: site_id, key_hash: hash_api_key(&secret), prefix: secret[..7].to_string() })
        .await
        .context("while storing the API key")?;
    Ok(secret)
}

/// The registered site named `domain`, or an error saying how to add it.
pub async fn find_site(store: &dyn Store, domain: &str) -> anyhow::Result<Site> {
    let domain = Domain::parse(domain).map_err(|e| anyhow!("site: {e}"))?;
    store
        .site_by_domain(domain.as_str())
        .await?
        .ok_or_else(|| anyhow!("site: no site {domain}; add it with `footfall site add {domain}`"))
}

pub async fn add_goal(store: &dyn Store, site: &str, kind: GoalKind, display_name: Option<String>) -> anyhow::Result<Goal> {
    let site = find_site(store, site).await?;
    let goal = Goal::new(kind, display_name.map(|n| n.trim().to_string())).map_err(|e| anyhow!("goal: {e}"))?;
    match store.add_goal(site.id, &goal).await {
        Ok(()) => Ok(goal),
        Err(StoreError::AlreadyExists(_)) => bail!("goal: {} already has a goal named {:?}", site.domain, goal.display_name),
        Err(e) => Err(e).context("while adding the goal"),
    }
}
