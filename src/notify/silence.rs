//! Silences as Alertmanager keeps them: the model, its validation, the store with Alertmanager's update/expire/GC semantics, the `silencedBy` lookup and a compact encoding for persistence. Pure: time comes in as unix milliseconds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::matcher::{MatchType, Matcher};

/// Alertmanager's `--data.retention` default: an expired silence is kept (and listed) for 120h.
pub const DEFAULT_RETENTION_MS: i64 = 120 * 3600 * 1000;

/// One silence. Times are unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Silence {
    /// A UUID v4 string; empty on a silence not stored yet.
    pub id: String,
    pub matchers: Vec<Matcher>,
    pub starts_at: i64,
    pub ends_at: i64,
    pub updated_at: i64,
    pub created_by: String,
    pub comment: String,
}

/// Where a silence is in its life, from the time alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SilenceState {
    Pending,
    Active,
    Expired,
}

impl SilenceState {
    pub fn as_str(self) -> &'static str {
        match self {
            SilenceState::Pending => "pending",
            SilenceState::Active => "active",
            SilenceState::Expired => "expired",
        }
    }
}

/// Why a write was refused; the text is Alertmanager's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SilenceError {
    #[error("silence not found")]
    NotFound,
    #[error("silence invalid: {0}")]
    Invalid(String),
}

impl Silence {
    /// Alertmanager's `CalcSilenceState`: pending before the start, active until the end, then
    /// expired. At exactly `ends_at` it is expired, so expiring "now" takes effect at once even at
    /// millisecond resolution.
    pub fn state(&self, now: i64) -> SilenceState {
        if now < self.starts_at {
            SilenceState::Pending
        } else if now < self.ends_at {
            SilenceState::Active
        } else {
            SilenceState::Expired
        }
    }

    /// Whether the matchers select `labels` (regardless of time).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matchers.iter().all(|m| m.matches(labels))
    }

    /// Alertmanager's `validateSilence`: at least one matcher, valid label names, not every
    /// matcher satisfied by the empty string (such a silence would mute every alert), and an end
    /// not before the start. Comment and author may be empty.
    pub fn validate(&self) -> Result<(), SilenceError> {
        if self.matchers.is_empty() {
            return Err(SilenceError::Invalid(
                "at least one matcher required".into(),
            ));
        }
        for (i, m) in self.matchers.iter().enumerate() {
            if !valid_label_name(&m.name) {
                return Err(SilenceError::Invalid(format!(
                    "invalid label matcher {i}: invalid label name {:?}",
                    m.name
                )));
            }
        }
        // `!=` and `!~` never count as matching the empty string here, as in Alertmanager.
        let all_match_empty = self
            .matchers
            .iter()
            .all(|m| m.op.is_equal() && m.matches_value(""));
        if all_match_empty {
            return Err(SilenceError::Invalid(
                "at least one matcher must not match the empty string".into(),
            ));
        }
        if self.starts_at == 0 {
            return Err(SilenceError::Invalid("invalid zero start timestamp".into()));
        }
        if self.ends_at == 0 {
            return Err(SilenceError::Invalid("invalid zero end timestamp".into()));
        }
        if self.ends_at < self.starts_at {
            return Err(SilenceError::Invalid(
                "end time must not be before start time".into(),
            ));
        }
        Ok(())
    }
}

/// Prometheus's (pre-UTF-8) label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A random (version 4) UUID, lower-case hyphenated, as Alertmanager's silence ids.
pub fn new_uuid_v4() -> String {
    let mut b = fastrand::u128(..).to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Whether `s` is a UUID in the 8-4-4-4-12 hex form (what the API accepts as a silence id).
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The silences, in the order they were created (Alertmanager's version index order).
#[derive(Debug, Clone)]
pub struct Silences {
    silences: Vec<Silence>,
    retention_ms: i64,
    version: u64,
}

impl Default for Silences {
    fn default() -> Self {
        Silences::new(DEFAULT_RETENTION_MS)
    }
}

impl Silences {
    /// An empty store keeping expired silences for `retention_ms` after their end.
    pub fn new(retention_ms: i64) -> Silences {
        Silences {
            silences: Vec::new(),
            retention_ms,
            version: 0,
        }
    }

    /// Bumped by every change (set, expire, GC that removed something, load): a cheap
    /// "did anything change" for the dispatcher and for persistence.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn len(&self) -> usize {
        self.silences.len()
    }

    pub fn is_empty(&self) -> bool {
        self.silences.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&Silence> {
        self.silences.iter().find(|s| s.id == id)
    }

    fn position(&self, id: &str) -> Option<usize> {
        self.silences.iter().position(|s| s.id == id)
    }

    /// Creates or updates a silence, returning its id, with Alertmanager's `Silences.Set`
    /// semantics:
    /// - an unknown non-empty id is `NotFound` (amtool's import then retries without the id);
    /// - a change that leaves the history intact (see [`can_update`]) is made in place;
    /// - otherwise a new silence is created with a fresh id and a start no earlier than `now`,
    ///   and the old one, if still pending or active, is expired so the record of what was
    ///   silenced when stays true.
    pub fn set(&mut self, mut sil: Silence, now: i64) -> Result<String, SilenceError> {
        if sil.starts_at == 0 {
            sil.starts_at = now;
        }
        sil.validate()?;
        let prev = if sil.id.is_empty() {
            None
        } else {
            Some(self.position(&sil.id).ok_or(SilenceError::NotFound)?)
        };
        if let Some(i) = prev
            && can_update(&self.silences[i], &sil, now)
        {
            sil.updated_at = now;
            self.silences[i] = sil;
            self.version += 1;
            return Ok(self.silences[i].id.clone());
        }
        sil.id = new_uuid_v4();
        sil.starts_at = sil.starts_at.max(now);
        sil.updated_at = now;
        // Checked again after moving the start, and before the old one is touched, so a refused
        // replacement leaves the store as it was.
        sil.validate()?;
        if let Some(i) = prev {
            let old_id = self.silences[i].id.clone();
            self.expire(&old_id, now)?;
        }
        let id = sil.id.clone();
        self.silences.push(sil);
        self.version += 1;
        Ok(id)
    }

    /// Ends a silence now (Alertmanager's `Expire`): an active one ends now, a pending one starts
    /// and ends now; an already expired one is left as is. Unknown ids are `NotFound`.
    pub fn expire(&mut self, id: &str, now: i64) -> Result<(), SilenceError> {
        let i = self.position(id).ok_or(SilenceError::NotFound)?;
        let s = &mut self.silences[i];
        match s.state(now) {
            SilenceState::Expired => return Ok(()),
            SilenceState::Active => s.ends_at = now,
            SilenceState::Pending => {
                s.starts_at = now;
                s.ends_at = now;
            }
        }
        s.updated_at = now;
        self.version += 1;
        Ok(())
    }

    /// Drops silences that ended more than the retention ago; returns how many.
    pub fn gc(&mut self, now: i64) -> usize {
        let before = self.silences.len();
        let retention = self.retention_ms;
        self.silences
            .retain(|s| s.ends_at.saturating_add(retention) > now);
        let removed = before - self.silences.len();
        if removed > 0 {
            self.version += 1;
        }
        removed
    }

    /// The silences listed by `GET /api/v2/silences`: those having, for every filter matcher, an
    /// identical matcher (same name, operator and value — the API's filter selects silences by
    /// their matchers, not by labels), ordered as Alertmanager lists them: active by end, then
    /// pending by start, then expired, most recently ended first.
    pub fn query(&self, filter: &[Matcher], now: i64) -> Vec<&Silence> {
        let mut out: Vec<&Silence> = self
            .silences
            .iter()
            .filter(|s| filter.iter().all(|f| s.matchers.contains(f)))
            .collect();
        let rank = |s: &Silence| match s.state(now) {
            SilenceState::Active => (0, s.ends_at),
            SilenceState::Pending => (1, s.starts_at),
            SilenceState::Expired => (2, -s.ends_at),
        };
        out.sort_by_key(|s| rank(s)); // stable: ties stay in creation order
        out
    }

    /// The ids (sorted) of the active silences that mute an alert with these labels.
    pub fn mutes(&self, labels: &BTreeMap<String, String>, now: i64) -> Vec<String> {
        let mut ids: Vec<String> = self
            .silences
            .iter()
            .filter(|s| s.state(now) == SilenceState::Active && s.matches(labels))
            .map(|s| s.id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// The next time after `now` at which some silence starts or ends: when muting must be
    /// looked at again even though nothing was written.
    pub fn next_change(&self, now: i64) -> Option<i64> {
        self.silences
            .iter()
            .flat_map(|s| [s.starts_at, s.ends_at])
            .filter(|&t| t > now)
            .min()
    }

    /// Every silence, in creation order.
    pub fn iter(&self) -> impl Iterator<Item = &Silence> {
        self.silences.iter()
    }

    /// The store as JSON (`{"version":1,"silences":[…]}`), for the data dir.
    pub fn encode(&self) -> Vec<u8> {
        let file = Encoded {
            version: 1,
            silences: self.silences.iter().map(EncodedSilence::from).collect(),
        };
        // UNWRAP: plain strings and integers always serialize.
        serde_json::to_vec(&file).unwrap()
    }

    /// Replaces the contents with an [`encode`](Silences::encode)d store (the retention stays as
    /// configured). A silence whose matchers no longer compile fails the whole load.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<(), String> {
        let file: Encoded = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if file.version != 1 {
            return Err(format!("unknown silences format version {}", file.version));
        }
        let silences = file
            .silences
            .into_iter()
            .map(Silence::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        self.silences = silences;
        self.version += 1;
        Ok(())
    }
}

/// Alertmanager's `canUpdate`: an edit may be made in place only if it does not rewrite what
/// was already silenced. Matchers must be unchanged; an active silence keeps its start (to the
/// second) and may not be moved to end in the past; a pending one may not be moved to start in
/// the past; an expired one is never edited.
pub fn can_update(old: &Silence, new: &Silence, now: i64) -> bool {
    if old.matchers != new.matchers {
        return false;
    }
    match old.state(now) {
        SilenceState::Active => {
            old.starts_at.div_euclid(1000) == new.starts_at.div_euclid(1000) && new.ends_at >= now
        }
        SilenceState::Pending => new.starts_at >= now,
        SilenceState::Expired => false,
    }
}

#[derive(Serialize, Deserialize)]
struct Encoded {
    version: u32,
    silences: Vec<EncodedSilence>,
}

#[derive(Serialize, Deserialize)]
struct EncodedSilence {
    id: String,
    /// `[name, op, value]` with op one of `=`, `!=`, `=~`, `!~`.
    matchers: Vec<(String, String, String)>,
    starts_at: i64,
    ends_at: i64,
    updated_at: i64,
    created_by: String,
    comment: String,
}

impl From<&Silence> for EncodedSilence {
    fn from(s: &Silence) -> Self {
        EncodedSilence {
            id: s.id.clone(),
            matchers: s
                .matchers
                .iter()
                .map(|m| (m.name.clone(), m.op.as_str().to_string(), m.value.clone()))
                .collect(),
            starts_at: s.starts_at,
            ends_at: s.ends_at,
            updated_at: s.updated_at,
            created_by: s.created_by.clone(),
            comment: s.comment.clone(),
        }
    }
}

impl TryFrom<EncodedSilence> for Silence {
    type Error = String;
    fn try_from(e: EncodedSilence) -> Result<Silence, String> {
        let matchers = e
            .matchers
            .iter()
            .map(|(name, op, value)| {
                let op = match op.as_str() {
                    "=" => MatchType::Equal,
                    "!=" => MatchType::NotEqual,
                    "=~" => MatchType::Regexp,
                    "!~" => MatchType::NotRegexp,
                    other => return Err(format!("silence {}: unknown matcher op {other:?}", e.id)),
                };
                Matcher::new(op, name, value).map_err(|err| format!("silence {}: {err}", e.id))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Silence {
            id: e.id,
            matchers,
            starts_at: e.starts_at,
            ends_at: e.ends_at,
            updated_at: e.updated_at,
            created_by: e.created_by,
            comment: e.comment,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3600 * 1000;
    const T0: i64 = 1_800_000_000_000;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sil(matchers: &str, starts_at: i64, ends_at: i64) -> Silence {
        Silence {
            id: String::new(),
            matchers: Matcher::parse_list(matchers).unwrap(),
            starts_at,
            ends_at,
            updated_at: 0,
            created_by: "me".into(),
            comment: "why".into(),
        }
    }

    #[test]
    fn ids_are_v4_uuids_and_distinct() {
        let a = new_uuid_v4();
        assert!(is_uuid(&a), "{a}");
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
        assert_ne!(a, new_uuid_v4());
        assert!(!is_uuid("notauuid"));
        assert!(!is_uuid("0000000000000000000000000000000000000"));
    }

    #[test]
    fn state_follows_time_and_ends_exactly_at_the_end() {
        let s = sil("a=b", T0, T0 + H);
        assert_eq!(s.state(T0 - 1), SilenceState::Pending);
        assert_eq!(s.state(T0), SilenceState::Active);
        assert_eq!(s.state(T0 + H - 1), SilenceState::Active);
        assert_eq!(s.state(T0 + H), SilenceState::Expired);
    }

    #[test]
    fn validation_is_alertmanagers() {
        let err = |s: Silence| s.validate().unwrap_err().to_string();
        let mut none = sil("a=b", T0, T0 + H);
        none.matchers.clear();
        assert_eq!(err(none), "silence invalid: at least one matcher required");
        assert_eq!(
            err(sil(r#"a="", b=~".*""#, T0, T0 + H)),
            "silence invalid: at least one matcher must not match the empty string"
        );
        // A negative matcher never counts as matching the empty string.
        assert!(sil(r#"a!="x""#, T0, T0 + H).validate().is_ok());
        assert!(sil(r#"a="", b="c""#, T0, T0 + H).validate().is_ok());
        assert_eq!(
            err(sil("a=b", T0, T0 - 1)),
            "silence invalid: end time must not be before start time"
        );
        assert!(
            sil("a=b", T0, T0).validate().is_ok(),
            "end == start is allowed"
        );
        let mut bad_name = sil("a=b", T0, T0 + H);
        bad_name.matchers = vec![Matcher::new(MatchType::Equal, "a-b", "x").unwrap()];
        assert_eq!(
            err(bad_name),
            r#"silence invalid: invalid label matcher 0: invalid label name "a-b""#
        );
        let mut anon = sil("a=b", T0, T0 + H);
        anon.created_by.clear();
        anon.comment.clear();
        assert!(anon.validate().is_ok(), "author and comment may be empty");
    }

    #[test]
    fn set_creates_with_a_start_no_earlier_than_now() {
        let mut st = Silences::default();
        let id = st.set(sil("a=b", T0 - H, T0 + H), T0).unwrap();
        let s = st.get(&id).unwrap();
        assert!(is_uuid(&id));
        assert_eq!((s.starts_at, s.updated_at), (T0, T0));
        let later = st.set(sil("a=b", T0 + H, T0 + 2 * H), T0).unwrap();
        assert_eq!(
            st.get(&later).unwrap().starts_at,
            T0 + H,
            "future start kept"
        );
        let mut unknown = sil("a=b", T0, T0 + H);
        unknown.id = new_uuid_v4();
        assert_eq!(st.set(unknown, T0), Err(SilenceError::NotFound));
        assert_eq!(st.len(), 2);
    }

    #[test]
    fn editing_an_active_silence_in_place_or_by_replacement() {
        let mut st = Silences::default();
        let id = st.set(sil("a=b", T0, T0 + H), T0).unwrap();
        let now = T0 + 10 * 60 * 1000;

        // Longer end and new comment, same matchers and start: in place.
        let mut edit = st.get(&id).unwrap().clone();
        edit.ends_at = T0 + 2 * H;
        edit.comment = "longer".into();
        assert_eq!(st.set(edit, now).unwrap(), id);
        let s = st.get(&id).unwrap();
        assert_eq!(
            (s.ends_at, s.updated_at, s.comment.as_str()),
            (T0 + 2 * H, now, "longer")
        );
        assert_eq!(st.len(), 1);

        // Changed matchers: the old one is expired now and a new id takes over.
        let mut edit = st.get(&id).unwrap().clone();
        edit.matchers = Matcher::parse_list("a=c").unwrap();
        let new_id = st.set(edit, now).unwrap();
        assert_ne!(new_id, id);
        assert_eq!(st.get(&id).unwrap().state(now), SilenceState::Expired);
        assert_eq!(st.get(&id).unwrap().ends_at, now);
        let n = st.get(&new_id).unwrap();
        assert_eq!((n.starts_at, n.state(now)), (now, SilenceState::Active));

        // Changed start of an active silence: replaced too.
        let mut edit = st.get(&new_id).unwrap().clone();
        edit.starts_at = now + 5000;
        let third = st.set(edit, now).unwrap();
        assert_ne!(third, new_id);
        assert_eq!(st.get(&new_id).unwrap().state(now), SilenceState::Expired);
        assert_eq!(st.get(&third).unwrap().state(now), SilenceState::Pending);

        // Start changed below a second: still the same start to Alertmanager, in place.
        let mut st = Silences::default();
        let id = st.set(sil("a=b", T0, T0 + H), T0).unwrap();
        let mut edit = st.get(&id).unwrap().clone();
        edit.starts_at = T0 + 500;
        assert_eq!(st.set(edit, now).unwrap(), id);
    }

    #[test]
    fn editing_pending_and_expired_silences() {
        let mut st = Silences::default();
        let id = st.set(sil("a=b", T0 + H, T0 + 2 * H), T0).unwrap();
        // A pending silence may move as long as it stays in the future.
        let mut edit = st.get(&id).unwrap().clone();
        edit.starts_at = T0 + 30 * 60 * 1000;
        assert_eq!(st.set(edit, T0).unwrap(), id);
        // Moving it to start in the past makes a new one (starting now), the old one expired.
        let mut edit = st.get(&id).unwrap().clone();
        edit.starts_at = T0 - H;
        let new_id = st.set(edit, T0).unwrap();
        assert_ne!(new_id, id);
        assert_eq!(st.get(&new_id).unwrap().starts_at, T0);
        assert_eq!(st.get(&id).unwrap().state(T0), SilenceState::Expired);
        // Editing an expired silence always makes a new one and leaves the old as it was.
        let before = st.get(&id).unwrap().clone();
        let mut edit = before.clone();
        edit.ends_at = T0 + 3 * H;
        let again = st.set(edit, T0 + 1).unwrap();
        assert_ne!(again, id);
        assert_eq!(st.get(&id).unwrap(), &before);
    }

    #[test]
    fn a_refused_replacement_leaves_the_old_silence_alone() {
        let mut st = Silences::default();
        let id = st.set(sil("a=b", T0, T0 + H), T0).unwrap();
        let mut edit = st.get(&id).unwrap().clone();
        edit.matchers = Matcher::parse_list("a=c").unwrap();
        edit.ends_at = T0 + 1000; // before the replacement's start (now)
        assert!(st.set(edit, T0 + 2000).is_err());
        assert_eq!(st.get(&id).unwrap().state(T0 + 2000), SilenceState::Active);
        assert_eq!(st.len(), 1);
    }

    #[test]
    fn expire_ends_now_and_is_idempotent() {
        let mut st = Silences::default();
        let active = st.set(sil("a=b", T0, T0 + H), T0).unwrap();
        let pending = st.set(sil("a=b", T0 + H, T0 + 2 * H), T0).unwrap();
        let now = T0 + 1000;
        st.expire(&active, now).unwrap();
        st.expire(&pending, now).unwrap();
        let a = st.get(&active).unwrap().clone();
        let p = st.get(&pending).unwrap().clone();
        assert_eq!((a.starts_at, a.ends_at, a.updated_at), (T0, now, now));
        assert_eq!((p.starts_at, p.ends_at), (now, now));
        assert_eq!(a.state(now), SilenceState::Expired);
        let v = st.version();
        st.expire(&active, now + 5).unwrap();
        assert_eq!(st.get(&active).unwrap(), &a, "expired stays as it was");
        assert_eq!(st.version(), v);
        assert_eq!(st.expire(&new_uuid_v4(), now), Err(SilenceError::NotFound));
    }

    #[test]
    fn mutes_lists_the_active_matching_silences() {
        let mut st = Silences::default();
        let btc = st
            .set(sil(r#"alertname=Foo, market=~"BTC.*""#, T0, T0 + H), T0)
            .unwrap();
        let all_foo = st.set(sil("alertname=Foo", T0, T0 + H), T0).unwrap();
        let _pending = st
            .set(sil("alertname=Foo", T0 + H, T0 + 2 * H), T0)
            .unwrap();
        let l = labels(&[("alertname", "Foo"), ("market", "BTC-PERP")]);
        let mut want = vec![btc.clone(), all_foo.clone()];
        want.sort();
        assert_eq!(st.mutes(&l, T0), want);
        let eth = labels(&[("alertname", "Foo"), ("market", "ETH-PERP")]);
        assert_eq!(st.mutes(&eth, T0), vec![all_foo.clone()]);
        st.expire(&all_foo, T0 + 1).unwrap();
        assert!(st.mutes(&eth, T0 + 1).is_empty());
        assert_eq!(st.next_change(T0 + 1), Some(T0 + H));
    }

    #[test]
    fn query_filters_by_identical_matchers_and_orders_as_alertmanager() {
        let mut st = Silences::default();
        let a1 = st.set(sil("a=b, c=d", T0, T0 + 2 * H), T0).unwrap();
        let a2 = st.set(sil("a=b", T0, T0 + H), T0).unwrap();
        let p = st.set(sil("a=b", T0 + H, T0 + 3 * H), T0).unwrap();
        let e1 = st.set(sil("a=b", T0, T0 + H), T0).unwrap();
        let e2 = st.set(sil("a=b", T0, T0 + H), T0).unwrap();
        st.expire(&e1, T0 + 1000).unwrap();
        st.expire(&e2, T0 + 2000).unwrap();
        let ids = |f: &str| -> Vec<String> {
            let f = Matcher::parse_list(f).unwrap();
            st.query(&f, T0 + 3000)
                .iter()
                .map(|s| s.id.clone())
                .collect()
        };
        assert_eq!(ids(""), [a2, a1.clone(), p, e2, e1]);
        assert_eq!(ids("c=d"), [a1]);
        assert!(ids(r#"a=~"b""#).is_empty(), "the operator must match too");
        assert!(ids("a=x").is_empty());
    }

    #[test]
    fn gc_drops_silences_past_retention() {
        let mut st = Silences::new(H);
        let id = st.set(sil("a=b", T0, T0 + H), T0).unwrap();
        let keep = st.set(sil("a=b", T0, T0 + 3 * H), T0).unwrap();
        assert_eq!(st.gc(T0 + 2 * H - 1), 0);
        assert!(st.get(&id).is_some(), "expired but still retained");
        assert_eq!(st.gc(T0 + 2 * H), 1);
        assert!(st.get(&id).is_none());
        assert!(st.get(&keep).is_some());
        assert_eq!(Silences::default().retention_ms, 120 * H);
    }

    #[test]
    fn encode_decode_round_trips() {
        let mut st = Silences::default();
        let a = st
            .set(
                sil(
                    r#"alertname=Foo, market=~"BTC.*", x!="a\"b", y!~"q|r""#,
                    T0,
                    T0 + H,
                ),
                T0,
            )
            .unwrap();
        let b = st.set(sil("a=b", T0 + H, T0 + 2 * H), T0).unwrap();
        st.expire(&b, T0 + 5).unwrap();
        let bytes = st.encode();
        let mut back = Silences::new(H);
        back.decode(&bytes).unwrap();
        let orig: Vec<&Silence> = st.iter().collect();
        let got: Vec<&Silence> = back.iter().collect();
        assert_eq!(got, orig);
        assert!(back.get(&a).unwrap().matchers[1].matches_value("BTC-PERP"));
        assert!(back.decode(b"{\"version\":2,\"silences\":[]}").is_err());
        assert!(back.decode(b"nope").is_err());
        assert_eq!(back.len(), 2, "a failed load changes nothing");
    }
}
