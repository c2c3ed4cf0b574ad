//! The routing tree: each node's effective settings (inherited from its parent as Alertmanager's `dispatch.NewRoute` does) and `Match` with `continue`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use crate::notify::matcher::{Matcher, all_match};

/// How alerts of a route are grouped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    /// By these labels (none: one group for the route).
    Labels(BTreeSet<String>),
    /// `group_by: ['...']`: by every label, so each distinct alert is its own group.
    All,
}

impl GroupBy {
    /// The labels of `alert` that make its group key.
    pub fn group_labels(&self, alert: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        match self {
            GroupBy::All => alert.clone(),
            GroupBy::Labels(names) => alert
                .iter()
                .filter(|(k, _)| names.contains(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}

/// One route with its effective settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteNode {
    /// Its index in [`Route::nodes`] (depth-first, parents before children, in file order).
    pub index: usize,
    pub parent: Option<usize>,
    pub children: Vec<usize>,
    /// `matchers`, `match` and `match_re` together, sorted by name, value, then operator as
    /// Alertmanager sorts them (the order shows in [`RouteNode::key`]).
    pub matchers: Vec<Matcher>,
    /// `continue`: after this route matches, its later siblings are tried too.
    pub continue_matching: bool,
    /// Effective (inherited when not set here).
    pub receiver: String,
    pub group_by: GroupBy,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
    /// This route's own; Alertmanager does not inherit time intervals.
    pub mute_time_intervals: Vec<String>,
    pub active_time_intervals: Vec<String>,
    /// `fallback_receiver` and `fallback_after` (ocx-sentinel's; inherited like the receiver):
    /// where the group's notifications also go once its receiver has failed for that long.
    pub fallback: Option<(String, Duration)>,
    /// Alertmanager's `Route.Key()`: the matchers of every route from the root, `/`-joined, e.g.
    /// `{}/{severity="page"}`. Aggregation groups are keyed by it; two sibling routes with the
    /// same matchers share it (as in Alertmanager).
    pub key: String,
    /// Alertmanager's newer `Route.ID()`: the key with each route's position among its siblings,
    /// unique in the tree, e.g. `{}/{severity="page"}/0`.
    pub id: String,
}

/// The routing tree, root first.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    nodes: Vec<RouteNode>,
}

impl Route {
    pub(crate) fn from_nodes(nodes: Vec<RouteNode>) -> Route {
        debug_assert!(!nodes.is_empty() && nodes[0].parent.is_none());
        Route { nodes }
    }

    pub fn root(&self) -> &RouteNode {
        &self.nodes[0]
    }

    /// Every route, depth-first in file order (Alertmanager's `Route.Walk`).
    pub fn nodes(&self) -> &[RouteNode] {
        &self.nodes
    }

    pub fn node(&self, index: usize) -> Option<&RouteNode> {
        self.nodes.get(index)
    }

    /// The routes an alert with `labels` goes to, in tree order: Alertmanager's `Route.Match`.
    /// A route that matches hands the alert to its matching children (each child's matches
    /// stop the search at that level unless it has `continue`), and takes the alert itself only
    /// when no child does. The root always matches, so the result is never empty.
    pub fn match_labels(&self, labels: &BTreeMap<String, String>) -> Vec<&RouteNode> {
        let mut out = Vec::new();
        self.match_at(0, labels, &mut out);
        out
    }

    /// Appends the matches under `index`; returns whether `index` itself matched.
    fn match_at<'a>(
        &'a self,
        index: usize,
        labels: &BTreeMap<String, String>,
        out: &mut Vec<&'a RouteNode>,
    ) -> bool {
        let node = &self.nodes[index];
        if !all_match(&node.matchers, labels) {
            return false;
        }
        let before = out.len();
        for &child in &node.children {
            if self.match_at(child, labels, out) && !self.nodes[child].continue_matching {
                break;
            }
        }
        if out.len() == before {
            out.push(node);
        }
        true
    }

    /// The receivers `match_labels` gives, as `amtool config routes test` prints them.
    pub fn receivers_for(&self, labels: &BTreeMap<String, String>) -> Vec<&str> {
        self.match_labels(labels)
            .into_iter()
            .map(|n| n.receiver.as_str())
            .collect()
    }
}

/// Alertmanager's `Matchers.String()`: `{a="b",c=~"d"}`.
pub(crate) fn matchers_string(ms: &[Matcher]) -> String {
    let mut s = String::from("{");
    for (i, m) in ms.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{m}");
    }
    s.push('}');
    s
}

/// Alertmanager's matcher order: name, then value, then operator (`=`, `!=`, `=~`, `!~`).
pub(crate) fn sort_matchers(ms: &mut [Matcher]) {
    use crate::notify::matcher::MatchType;
    let rank = |t: MatchType| match t {
        MatchType::Equal => 0,
        MatchType::NotEqual => 1,
        MatchType::Regexp => 2,
        MatchType::NotRegexp => 3,
    };
    ms.sort_by(|a, b| (&a.name, &a.value, rank(a.op)).cmp(&(&b.name, &b.value, rank(b.op))));
}
