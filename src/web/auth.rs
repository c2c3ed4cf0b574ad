//! `basic_auth_users`: checking a request's `Authorization: Basic` credentials against the bcrypt hashes, as the exporter-toolkit does (bcrypt for unknown users too, one bcrypt at a time, results cached), and the rate limit's token bucket.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::Duration;

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use tokio::time::Instant;

use super::config::{RateLimit, WebConfig};

/// How many checked credentials are remembered (the toolkit's size): bcrypt is slow on
/// purpose (cost 10 is 50-100 ms), and Prometheus sends the same credentials every scrape.
const CACHE_SIZE: usize = 100;

/// Checks credentials; one per listener, kept across reloads of the file (an entry's key
/// includes the hash, so a changed password never matches an old entry).
pub(crate) struct BasicAuth {
    /// Outcome by a 128-bit keyed hash of (user, hash, password), so no password is kept.
    cache: Mutex<HashMap<u128, bool>>,
    keys: (std::hash::RandomState, std::hash::RandomState),
    /// One bcrypt at a time, as the toolkit: a flood of guesses costs one core, not all.
    gate: tokio::sync::Mutex<()>,
}

impl Default for BasicAuth {
    fn default() -> Self {
        Self {
            cache: Mutex::new(HashMap::new()),
            keys: (std::hash::RandomState::new(), std::hash::RandomState::new()),
            gate: tokio::sync::Mutex::new(()),
        }
    }
}

/// Equal without stopping at the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The first `Authorization: Basic` credentials of the request, as (user, password) bytes.
/// Only the first is tried, so one request costs at most one bcrypt; other `Authorization`
/// values (the API's bearer token) may come beside it.
fn basic_credentials(headers: &HeaderMap) -> Option<(Vec<u8>, Vec<u8>)> {
    let encoded = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("basic").then_some(rest.trim())
        })?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    Some((decoded[..colon].to_vec(), decoded[colon + 1..].to_vec()))
}

impl BasicAuth {
    /// Whether the request carries the credentials of one of `config`'s users. A name that is
    /// not a user still costs a bcrypt (against the costliest user's hash), and names are
    /// compared without stopping early, so timing does not tell which names exist.
    pub async fn check(&self, config: &WebConfig, headers: &HeaderMap) -> bool {
        let Some((user, password)) = basic_credentials(headers) else {
            return false;
        };
        let mut found = None;
        for (i, (name, _)) in config.users.iter().enumerate() {
            if constant_time_eq(name.as_bytes(), &user) {
                found = Some(i);
            }
        }
        let Some((_, hash)) = config.users.get(found.unwrap_or(config.decoy)) else {
            return false;
        };
        let key = self.key(&user, hash.expose().as_bytes(), &password);
        if let Some(ok) = self.cached(key) {
            return ok && found.is_some();
        }
        let _one_at_a_time = self.gate.lock().await;
        // Another request may have checked the same credentials while this one waited.
        if let Some(ok) = self.cached(key) {
            return ok && found.is_some();
        }
        let hash = hash.expose().to_string();
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(&password, &hash))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false);
        // An unknown user is cached as refused whatever the password: `ok` was against
        // someone else's hash.
        let ok = ok && found.is_some();
        self.remember(key, ok);
        ok
    }

    fn key(&self, user: &[u8], hash: &[u8], password: &[u8]) -> u128 {
        let half = |state: &std::hash::RandomState| state.hash_one((user, hash, password));
        (u128::from(half(&self.keys.0)) << 64) | u128::from(half(&self.keys.1))
    }

    fn cached(&self, key: u128) -> Option<bool> {
        self.cache.lock().ok()?.get(&key).copied()
    }

    fn remember(&self, key: u128, ok: bool) {
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        if cache.len() >= CACHE_SIZE {
            // Random eviction of a tenth, as the toolkit: cheap, and no order to game.
            let victims: Vec<u128> = cache
                .keys()
                .filter(|_| fastrand::usize(..10) == 0)
                .copied()
                .collect();
            for v in victims {
                cache.remove(&v);
            }
            if cache.len() >= CACHE_SIZE
                && let Some(k) = cache.keys().next().copied()
            {
                cache.remove(&k);
            }
        }
        cache.insert(key, ok);
    }
}

/// `rate_limit:`'s token bucket (Go's `rate.Limiter`): `burst` tokens, one more every
/// `interval`; a request takes one or is refused.
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    state: Mutex<Option<(RateLimit, f64, Instant)>>,
}

impl Limiter {
    pub fn allow(&self, limit: Option<RateLimit>, now: Instant) -> bool {
        let Some(limit) = limit else {
            return true;
        };
        let Ok(mut state) = self.state.lock() else {
            return true;
        };
        let burst = f64::from(limit.burst);
        // A changed limit (the file was edited) starts full.
        let (tokens, last) = match *state {
            Some((l, tokens, last)) if l == limit => {
                let refill = now.saturating_duration_since(last).as_secs_f64()
                    / limit.interval.max(Duration::from_nanos(1)).as_secs_f64();
                ((tokens + refill).min(burst), now)
            }
            _ => (burst, now),
        };
        let allowed = tokens >= 1.0;
        *state = Some((limit, if allowed { tokens - 1.0 } else { tokens }, last));
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::config::parse_str;
    use axum::http::HeaderValue;

    fn config(users: &[(&str, &str)]) -> WebConfig {
        let mut yaml = String::from("basic_auth_users:\n");
        for (u, p) in users {
            yaml.push_str(&format!("  {u}: {}\n", bcrypt::hash(p, 4).unwrap()));
        }
        parse_str(&yaml, "web.yml", std::path::Path::new(".")).unwrap()
    }

    fn basic(user: &str, password: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        h.append(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {v}")).unwrap(),
        );
        h
    }

    #[tokio::test]
    async fn right_credentials_pass_and_everything_else_is_refused() {
        let c = config(&[("alice", "wonder:land"), ("bob", "builder")]);
        let auth = BasicAuth::default();
        // A colon in the password is part of it: only the first one splits.
        assert!(auth.check(&c, &basic("alice", "wonder:land")).await);
        assert!(auth.check(&c, &basic("bob", "builder")).await);
        assert!(!auth.check(&c, &basic("alice", "builder")).await);
        assert!(!auth.check(&c, &basic("carol", "builder")).await);
        assert!(!auth.check(&c, &basic("Alice", "wonder:land")).await);
        assert!(!auth.check(&c, &HeaderMap::new()).await);
        let mut bearer = HeaderMap::new();
        bearer.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert!(!auth.check(&c, &bearer).await);
        // Basic credentials beside a bearer token (the API token's header) still count.
        let mut both = basic("bob", "builder");
        both.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert!(auth.check(&c, &both).await);
        let mut junk = HeaderMap::new();
        junk.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert!(!auth.check(&c, &junk).await);
    }

    /// Results are cached by (user, hash, password): a cached success needs no bcrypt, and
    /// an unknown user checked against the decoy hash is never let in, cached or not.
    #[tokio::test]
    async fn cached_results_give_the_same_answers() {
        let c = config(&[("alice", "pw")]);
        let auth = BasicAuth::default();
        for _ in 0..3 {
            assert!(auth.check(&c, &basic("alice", "pw")).await);
            // The decoy hash is alice's, so "pw" matches it; the name still does not.
            assert!(!auth.check(&c, &basic("mallory", "pw")).await);
            assert!(!auth.check(&c, &basic("alice", "nope")).await);
        }
        assert_eq!(auth.cache.lock().unwrap().len(), 3);
        // The cache stays bounded.
        for i in 0..(CACHE_SIZE * 2) {
            auth.remember(i as u128, false);
        }
        assert!(auth.cache.lock().unwrap().len() <= CACHE_SIZE);
    }

    #[test]
    fn the_bucket_allows_a_burst_then_one_per_interval() {
        let l = Limiter::default();
        let limit = Some(RateLimit {
            interval: Duration::from_secs(1),
            burst: 2,
        });
        let t0 = Instant::now();
        assert!(l.allow(limit, t0));
        assert!(l.allow(limit, t0));
        assert!(!l.allow(limit, t0));
        assert!(!l.allow(limit, t0 + Duration::from_millis(500)));
        assert!(l.allow(limit, t0 + Duration::from_millis(1000)));
        assert!(!l.allow(limit, t0 + Duration::from_millis(1001)));
        assert!(l.allow(None, t0));
    }
}
