//! `Labels`: a series' sorted label set (including `__name__`), cheap to clone and to compare.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

/// The label that carries the metric name.
pub const METRIC_NAME: &str = "__name__";

/// A sorted set of label pairs, `__name__` included. Clone is a reference-count bump: evaluation
/// passes the same label sets through many stages, and most of them keep labels unchanged.
///
/// An empty value means "no such label", as in Prometheus: constructors drop empty values. Order,
/// equality and hashing are by the pairs in name order, which is Prometheus's `labels.Compare`.
///
/// A label set remembers its version without `__name__` once asked for it: functions and
/// arithmetic drop the name of every series they read, and the live store's series are read by
/// every evaluation, so each is built once, not once per rule and pass.
#[derive(Clone)]
pub struct Labels(Arc<Inner>);

#[derive(Default)]
struct Inner {
    pairs: Box<[(Arc<str>, Arc<str>)]>,
    /// `without_metric_name`, once computed (only for sets that have a name).
    unnamed: OnceLock<Labels>,
}

impl Default for Labels {
    fn default() -> Labels {
        // One shared empty set: scalars turned vectors and `vector()` make many.
        static EMPTY: OnceLock<Labels> = OnceLock::new();
        EMPTY
            .get_or_init(|| Labels(Arc::new(Inner::default())))
            .clone()
    }
}

impl PartialEq for Labels {
    fn eq(&self, other: &Labels) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.pairs == other.0.pairs
    }
}

impl Eq for Labels {}

impl Hash for Labels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.pairs.hash(state);
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Labels) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Labels {
    fn cmp(&self, other: &Labels) -> std::cmp::Ordering {
        self.0.pairs.cmp(&other.0.pairs)
    }
}

impl Labels {
    /// The empty label set.
    pub fn empty() -> Labels {
        Labels::default()
    }

    /// Builds a label set from pairs in any order. Empty values are dropped; when a name repeats,
    /// the last value wins.
    pub fn new<I, K, V>(pairs: I) -> Labels
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut v: Vec<(Arc<str>, Arc<str>)> = Vec::new();
        for (k, val) in pairs {
            let (k, val) = (k.as_ref(), val.as_ref());
            match v.iter_mut().find(|(n, _)| &**n == k) {
                Some(slot) => slot.1 = Arc::from(val),
                None => v.push((Arc::from(k), Arc::from(val))),
            }
        }
        v.retain(|(_, val)| !val.is_empty());
        Self::from_vec(v)
    }

    /// From pairs that may be unsorted but have unique names and non-empty values.
    fn from_vec(mut v: Vec<(Arc<str>, Arc<str>)>) -> Labels {
        v.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Self::from_sorted(v.into())
    }

    fn from_sorted(pairs: Box<[(Arc<str>, Arc<str>)]>) -> Labels {
        Labels(Arc::new(Inner {
            pairs,
            unnamed: OnceLock::new(),
        }))
    }

    /// The value of `name`, if the set has it.
    pub fn get(&self, name: &str) -> Option<&str> {
        let pairs = &self.0.pairs;
        pairs
            .binary_search_by(|(n, _)| (**n).cmp(name))
            .ok()
            .map(|i| &*pairs[i].1)
    }

    /// The metric name (`__name__`), if any.
    pub fn metric_name(&self) -> Option<&str> {
        // `_` sorts before lower-case letters, so the name is nearly always first.
        match self.0.pairs.first() {
            Some((n, v)) if &**n == METRIC_NAME => Some(v),
            _ => self.get(METRIC_NAME),
        }
    }

    /// The pairs in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.pairs.iter().map(|(n, v)| (&**n, &**v))
    }

    pub fn len(&self) -> usize {
        self.0.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.pairs.is_empty()
    }

    /// The set without `__name__` (itself, uncopied, when it has none); built once per set.
    pub fn without_metric_name(&self) -> Labels {
        if self.metric_name().is_none() {
            return self.clone();
        }
        self.0
            .unnamed
            .get_or_init(|| self.filter(|n| n != METRIC_NAME))
            .clone()
    }

    /// The pairs whose name passes `keep`, in order.
    pub fn filter(&self, mut keep: impl FnMut(&str) -> bool) -> Labels {
        Self::from_sorted(
            self.0
                .pairs
                .iter()
                .filter(|(n, _)| keep(n))
                .cloned()
                .collect(),
        )
    }

    /// The set with `name` set to `value`; an empty `value` removes the label.
    pub fn with(&self, name: &str, value: &str) -> Labels {
        let mut v: Vec<(Arc<str>, Arc<str>)> = self
            .0
            .pairs
            .iter()
            .filter(|(n, _)| &**n != name)
            .cloned()
            .collect();
        if !value.is_empty() {
            v.push((Arc::from(name), Arc::from(value)));
        }
        Self::from_vec(v)
    }

    /// Sets (or, with an empty value, removes) each of `names` to its value in `from`.
    pub(crate) fn with_values_from(&self, names: &[String], from: &Labels) -> Labels {
        let mut v: Vec<(Arc<str>, Arc<str>)> = self
            .0
            .pairs
            .iter()
            .filter(|(n, _)| !names.iter().any(|x| **x == **n))
            .cloned()
            .collect();
        for name in names {
            // Clone the shared string rather than copy it: `from` already holds it.
            let pairs = &from.0.pairs;
            if let Ok(i) = pairs.binary_search_by(|(n, _)| (**n).cmp(name.as_str())) {
                v.push(pairs[i].clone());
            }
        }
        Self::from_vec(v)
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Labels {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        Labels::new(iter)
    }
}

/// Prometheus's rendering: `{__name__="x", a="1"}`, values quoted with Go-style escapes.
impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (n, v)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{n}=")?;
            write_quoted(f, v)?;
        }
        f.write_str("}")
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A double-quoted string with the escapes Go's `strconv.Quote` uses for the common cases.
fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if c.is_control() && (c as u32) < 0x80 => write!(f, "\\x{:02x}", c as u32)?,
            c if c.is_control() => write!(f, "\\u{:04x}", c as u32)?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}
