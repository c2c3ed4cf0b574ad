//! The supported subset as our own tree: `promql-parser`'s AST is checked construct by construct
//! and converted, so evaluation never meets anything it cannot evaluate.

use std::sync::Arc;
use std::time::Duration;

use promql_parser::label::MatchOp;
use promql_parser::parser::token::{
    T_ADD, T_AVG, T_COUNT, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS,
    T_MAX, T_MIN, T_MOD, T_MUL, T_NEQ, T_POW, T_SUB, T_SUM,
};
use promql_parser::parser::{
    self as pp, AggregateExpr, BinaryExpr, Call, LabelModifier, Offset, VectorMatchCardinality,
    VectorSelector,
};

use super::PromqlError;
use super::labels::{Labels, METRIC_NAME};
use super::storage::{Matcher, Selector};

/// A validated expression node. Types are static: see [`Node::is_scalar`].
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Number(f64),
    /// An instant vector selector.
    Instant(Arc<Sel>),
    /// Parentheses survive conversion only because `timestamp` and `absent` look through them.
    Paren(Box<Node>),
    Neg(Box<Node>),
    Binary(Box<Binary>),
    Aggregate(Box<Aggregate>),
    Call(Box<Func>),
}

/// A selector with its offset; `range_ms` is 0 for instant selectors.
#[derive(Debug, Clone)]
pub(crate) struct Sel {
    pub selector: Selector,
    /// Milliseconds to look back from the evaluation time (negative looks ahead).
    pub offset_ms: i64,
    pub range_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl BinOp {
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Lt | BinOp::Ge | BinOp::Le
        )
    }

    pub fn is_set(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or | BinOp::Unless)
    }
}

/// Vector matching: which labels identify a match group, and the cardinality.
#[derive(Debug, Clone)]
pub(crate) struct Matching {
    /// `on(...)` when true, `ignoring(...)` (the default, with no labels) when false.
    pub on: bool,
    pub labels: Vec<String>,
    pub card: Card,
}

impl Matching {
    /// Whether matched series share their values of `label`: it is one of the `on` labels, or
    /// not one of the `ignoring` ones.
    pub fn matches_on(&self, label: &str) -> bool {
        self.labels.iter().any(|x| x == label) == self.on
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Card {
    OneToOne,
    /// `group_left(include...)`: the right side is the "one" side.
    ManyToOne(Vec<String>),
    /// `group_right(include...)`: the left side is the "one" side.
    OneToMany(Vec<String>),
    /// Set operators.
    ManyToMany,
}

#[derive(Debug, Clone)]
pub(crate) struct Binary {
    pub op: BinOp,
    pub lhs: Node,
    pub rhs: Node,
    pub return_bool: bool,
    pub matching: Matching,
}

impl Binary {
    /// Which side (`Some(true)`: the left) is looked up by the other side's match groups, so
    /// that only its series with the matched values matter: the right side of `and`, `unless`
    /// and `group_left`, the left side of `group_right`. `None` for one-to-one and `or`, whose
    /// sides both keep series by their own labels. Narrowing (`Node::narrowing`) and the
    /// evaluator's narrowed selectors (`eval::Evaluator::for_side`) both follow this.
    pub fn looked_up_left(&self) -> Option<bool> {
        match (self.op, &self.matching.card) {
            (BinOp::And | BinOp::Unless, _) | (_, Card::ManyToOne(_)) => Some(false),
            (_, Card::OneToMany(_)) => Some(true),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AggOp {
    Sum,
    Min,
    Max,
    Avg,
    Count,
}

#[derive(Debug, Clone)]
pub(crate) enum Grouping {
    /// `by (...)`; no clause at all is `by ()`.
    By(Vec<String>),
    Without(Vec<String>),
}

#[derive(Debug, Clone)]
pub(crate) struct Aggregate {
    pub op: AggOp,
    pub grouping: Grouping,
    pub expr: Node,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeFn {
    Rate,
    Increase,
    Delta,
    Changes,
    Resets,
    MinOverTime,
    MaxOverTime,
    AvgOverTime,
    SumOverTime,
    CountOverTime,
    LastOverTime,
}

#[derive(Debug, Clone)]
pub(crate) enum Func {
    Abs(Node),
    Time,
    /// The labels of the single output sample are fixed at load, from the argument's matchers.
    Absent(Node, Labels),
    ClampMin(Node, Node),
    ClampMax(Node, Node),
    Timestamp(Node),
    Vector(Node),
    Scalar(Node),
    HistogramQuantile(Node, Node),
    OverRange(RangeFn, Arc<Sel>),
}

impl Node {
    /// Whether the node yields a scalar (else an instant vector).
    pub fn is_scalar(&self) -> bool {
        match self {
            Node::Number(_) => true,
            Node::Instant(_) | Node::Aggregate(_) => false,
            Node::Paren(n) | Node::Neg(n) => n.is_scalar(),
            Node::Binary(b) => b.lhs.is_scalar() && b.rhs.is_scalar(),
            Node::Call(f) => matches!(**f, Func::Time | Func::Scalar(_)),
        }
    }

    /// Calls `f` on every selector, instant and range, in source order.
    pub fn visit_selectors(&self, f: &mut impl FnMut(&Sel)) {
        match self {
            Node::Number(_) => {}
            Node::Instant(s) => f(s),
            Node::Paren(n) | Node::Neg(n) => n.visit_selectors(f),
            Node::Binary(b) => {
                b.lhs.visit_selectors(f);
                b.rhs.visit_selectors(f);
            }
            Node::Aggregate(a) => a.expr.visit_selectors(f),
            Node::Call(c) => match &**c {
                Func::Time => {}
                Func::Abs(n)
                | Func::Absent(n, _)
                | Func::Timestamp(n)
                | Func::Vector(n)
                | Func::Scalar(n) => n.visit_selectors(f),
                Func::ClampMin(a, b) | Func::ClampMax(a, b) | Func::HistogramQuantile(a, b) => {
                    a.visit_selectors(f);
                    b.visit_selectors(f);
                }
                Func::OverRange(_, s) => f(s),
            },
        }
    }
}

impl Node {
    /// Whether the node's outputs with some values of the labels `part` can be computed from
    /// only some of the series: for each selector, those with the same values of the labels
    /// `f` is called with for it (once per selector, in source order). Every output then
    /// carries the values of `part` of the inputs it came from (a missing label counts as
    /// empty), so evaluating so gives exactly the outputs with those values, which is what lets
    /// a change pass evaluate one market instead of all of them. A selector gets fewer labels
    /// than `part` on the side of a binary operator that is looked up by the other side's
    /// match groups, when it matches on fewer: the outputs of one market of one account of
    /// `x unless on(account) y` need every `y` of that account and only that market's `x`.
    /// [`super::eval::Evaluator`] narrows the same way. Conservative: `false` when unsure.
    pub fn narrowing(&self, part: &[&str], f: &mut dyn FnMut(&Sel, &[&str])) -> bool {
        let has = |labels: &[String], l: &str| labels.iter().any(|x| x == l);
        match self {
            Node::Number(_) => true,
            Node::Instant(sel) => {
                f(sel, part);
                true
            }
            Node::Paren(n) | Node::Neg(n) => n.narrowing(part, f),
            Node::Binary(b) => match (b.lhs.is_scalar(), b.rhs.is_scalar()) {
                (true, true) => b.lhs.constant() && b.rhs.constant(),
                (true, false) => b.lhs.constant() && b.rhs.narrowing(part, f),
                (false, true) => b.rhs.constant() && b.lhs.narrowing(part, f),
                (false, false) => {
                    let m = &b.matching;
                    let matched: Vec<&str> =
                        part.iter().copied().filter(|l| m.matches_on(l)).collect();
                    // Labels copied from the "one" side must be matched on to stay in part.
                    let copies_kept = match &m.card {
                        Card::ManyToOne(include) | Card::OneToMany(include) => {
                            part.iter().all(|l| m.matches_on(l) || !has(include, l))
                        }
                        _ => true,
                    };
                    match b.looked_up_left() {
                        // The other side's samples, kept, dropped or joined by the looked-up
                        // side's group with their matched values: every series of it is needed.
                        Some(true) => {
                            copies_kept && b.lhs.narrowing(&matched, f) && b.rhs.narrowing(part, f)
                        }
                        Some(false) => {
                            copies_kept && b.lhs.narrowing(part, f) && b.rhs.narrowing(&matched, f)
                        }
                        // One-to-one keeps only the left side's labels, and `or` adds right
                        // side samples whose group no left side sample has: both sides must
                        // be matched on all of `part`.
                        None => {
                            matched.len() == part.len()
                                && b.lhs.narrowing(part, f)
                                && b.rhs.narrowing(part, f)
                        }
                    }
                }
            },
            Node::Aggregate(a) => {
                let kept = part.iter().all(|l| match &a.grouping {
                    Grouping::By(by) => has(by, l),
                    Grouping::Without(without) => !has(without, l),
                });
                kept && a.expr.narrowing(part, f)
            }
            Node::Call(c) => match &**c {
                Func::Time => true,
                Func::Abs(n) | Func::Timestamp(n) => n.narrowing(part, f),
                Func::ClampMin(v, s) | Func::ClampMax(v, s) => s.constant() && v.narrowing(part, f),
                Func::HistogramQuantile(phi, v) => {
                    phi.constant() && !part.contains(&"le") && v.narrowing(part, f)
                }
                Func::OverRange(_, sel) => {
                    f(sel, part);
                    true
                }
                // Their output does not carry the input's labels, or depends on all of it.
                Func::Absent(..) | Func::Vector(_) | Func::Scalar(_) => false,
            },
        }
    }

    /// A scalar that reads no series: the same whatever the series are.
    fn constant(&self) -> bool {
        let mut reads = false;
        self.visit_selectors(&mut |_| reads = true);
        self.is_scalar() && !reads
    }
}

/// Converts a parsed expression, rejecting everything outside the subset. `text` is the source,
/// used only to locate the offending construct for the error.
pub(crate) fn convert(e: &pp::Expr, text: &str) -> Result<Node, PromqlError> {
    Converter { text }.expr(e)
}

struct Converter<'a> {
    text: &'a str,
}

impl Converter<'_> {
    fn err(&self, message: impl Into<String>, at: Locate<'_>) -> PromqlError {
        let offset = locate(self.text, at).or_else(|| match at {
            // An aggregation's name may be followed by `by (...)` rather than its arguments.
            Locate::Call(word) => locate(self.text, Locate::Word(word)),
            _ => None,
        });
        PromqlError {
            message: message.into(),
            offset,
        }
    }

    fn expr(&self, e: &pp::Expr) -> Result<Node, PromqlError> {
        match e {
            pp::Expr::NumberLiteral(n) => Ok(Node::Number(n.val)),
            pp::Expr::StringLiteral(_) => Err(self.err(
                "string literals are not supported as values",
                Locate::StringLiteral,
            )),
            pp::Expr::VectorSelector(vs) => Ok(Node::Instant(Arc::new(self.selector(vs, 0)?))),
            pp::Expr::MatrixSelector(_) => Err(self.err(
                "range selectors are only supported as the argument of a range function \
                 such as rate()",
                Locate::Char('['),
            )),
            pp::Expr::Subquery(_) => {
                Err(self.err("subqueries are not supported", Locate::SubqueryColon))
            }
            pp::Expr::Paren(p) => Ok(Node::Paren(Box::new(self.expr(&p.expr)?))),
            pp::Expr::Unary(u) => Ok(Node::Neg(Box::new(self.expr(&u.expr)?))),
            pp::Expr::Binary(b) => self.binary(b),
            pp::Expr::Aggregate(a) => self.aggregate(a),
            pp::Expr::Call(c) => self.call(c),
            pp::Expr::Extension(x) => Err(self.err(
                format!("unsupported expression {:?}", x.expr.name()),
                Locate::Nothing,
            )),
        }
    }

    fn selector(&self, vs: &VectorSelector, range_ms: i64) -> Result<Sel, PromqlError> {
        if vs.at.is_some() {
            return Err(self.err("the @ modifier is not supported", Locate::Char('@')));
        }
        if !vs.matchers.or_matchers.is_empty() {
            return Err(self.err(
                "\"or\" inside a label matcher list is not supported",
                Locate::Nothing,
            ));
        }
        let offset_ms = match &vs.offset {
            None => 0,
            Some(Offset::Pos(d)) => duration_ms(d),
            Some(Offset::Neg(d)) => -duration_ms(d),
        };
        let mut matchers = Vec::with_capacity(vs.matchers.matchers.len() + 1);
        if let Some(name) = &vs.name {
            matchers.push(Matcher::equal(METRIC_NAME, name));
        }
        matchers.extend(
            vs.matchers
                .matchers
                .iter()
                .cloned()
                .map(Matcher::from_parsed),
        );
        // A `{__name__="x"}` selector has a fixed name just as `x` does; stores index by it.
        let name = vs.name.clone().or_else(|| {
            vs.matchers
                .matchers
                .iter()
                .find(|m| m.name == METRIC_NAME && m.op == MatchOp::Equal)
                .map(|m| m.value.clone())
        });
        Ok(Sel {
            selector: Selector { name, matchers },
            offset_ms,
            range_ms,
        })
    }

    fn binary(&self, b: &BinaryExpr) -> Result<Node, PromqlError> {
        let op = match b.op.id() {
            T_ADD => BinOp::Add,
            T_SUB => BinOp::Sub,
            T_MUL => BinOp::Mul,
            T_DIV => BinOp::Div,
            T_MOD => BinOp::Mod,
            T_POW => BinOp::Pow,
            T_EQLC => BinOp::Eq,
            T_NEQ => BinOp::Ne,
            T_GTR => BinOp::Gt,
            T_LSS => BinOp::Lt,
            T_GTE => BinOp::Ge,
            T_LTE => BinOp::Le,
            T_LAND => BinOp::And,
            T_LOR => BinOp::Or,
            T_LUNLESS => BinOp::Unless,
            _ => {
                let name = b.op.to_string();
                return Err(self.err(
                    format!("unsupported binary operator {name:?}"),
                    Locate::Word(&name),
                ));
            }
        };
        let lhs = self.expr(&b.lhs)?;
        let rhs = self.expr(&b.rhs)?;
        let mut matching = Matching {
            on: false,
            labels: Vec::new(),
            card: if op.is_set() {
                Card::ManyToMany
            } else {
                Card::OneToOne
            },
        };
        let mut return_bool = false;
        if let Some(m) = &b.modifier {
            if m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some() {
                let mut e = self.err("fill modifiers are not supported", Locate::Word("fill"));
                for word in ["fill_left", "fill_right"] {
                    e.offset = e.offset.or_else(|| locate(self.text, Locate::Word(word)));
                }
                return Err(e);
            }
            return_bool = m.return_bool;
            match &m.matching {
                Some(LabelModifier::Include(l)) => {
                    matching.on = true;
                    matching.labels = l.labels.clone();
                }
                Some(LabelModifier::Exclude(l)) => matching.labels = l.labels.clone(),
                None => {}
            }
            match &m.card {
                VectorMatchCardinality::ManyToOne(l) => {
                    matching.card = Card::ManyToOne(l.labels.clone())
                }
                VectorMatchCardinality::OneToMany(l) => {
                    matching.card = Card::OneToMany(l.labels.clone())
                }
                VectorMatchCardinality::OneToOne | VectorMatchCardinality::ManyToMany => {}
            }
        }
        // The parser enforces these already; checked again because evaluation relies on them.
        if op.is_comparison() && lhs.is_scalar() && rhs.is_scalar() && !return_bool {
            return Err(self.err(
                "comparisons between scalars must use BOOL modifier",
                Locate::Nothing,
            ));
        }
        if return_bool && !op.is_comparison() {
            return Err(self.err(
                "bool modifier can only be used on comparison operators",
                Locate::Word("bool"),
            ));
        }
        if op.is_set() && (lhs.is_scalar() || rhs.is_scalar()) {
            return Err(self.err(
                format!(
                    "set operator {:?} not allowed in binary scalar expression",
                    b.op.to_string()
                ),
                Locate::Nothing,
            ));
        }
        Ok(Node::Binary(Box::new(Binary {
            op,
            lhs,
            rhs,
            return_bool,
            matching,
        })))
    }

    fn aggregate(&self, a: &AggregateExpr) -> Result<Node, PromqlError> {
        let op = match a.op.id() {
            T_SUM => AggOp::Sum,
            T_MIN => AggOp::Min,
            T_MAX => AggOp::Max,
            T_AVG => AggOp::Avg,
            T_COUNT => AggOp::Count,
            _ => {
                let name = a.op.to_string();
                return Err(self.err(
                    format!("unsupported aggregation {name:?}"),
                    Locate::Call(&name),
                ));
            }
        };
        let grouping = match &a.modifier {
            None => Grouping::By(Vec::new()),
            Some(LabelModifier::Include(l)) => Grouping::By(l.labels.clone()),
            Some(LabelModifier::Exclude(l)) => Grouping::Without(l.labels.clone()),
        };
        let expr = self.expr(&a.expr)?;
        if expr.is_scalar() {
            return Err(self.err(
                "expected type instant vector in aggregation expression, got scalar",
                Locate::Call(&a.op.to_string()),
            ));
        }
        Ok(Node::Aggregate(Box::new(Aggregate { op, grouping, expr })))
    }

    fn call(&self, c: &Call) -> Result<Node, PromqlError> {
        let name = c.func.name;
        let args = &c.args.args;
        let range_fn = match name {
            "rate" => Some(RangeFn::Rate),
            "increase" => Some(RangeFn::Increase),
            "delta" => Some(RangeFn::Delta),
            "changes" => Some(RangeFn::Changes),
            "resets" => Some(RangeFn::Resets),
            "min_over_time" => Some(RangeFn::MinOverTime),
            "max_over_time" => Some(RangeFn::MaxOverTime),
            "avg_over_time" => Some(RangeFn::AvgOverTime),
            "sum_over_time" => Some(RangeFn::SumOverTime),
            "count_over_time" => Some(RangeFn::CountOverTime),
            "last_over_time" => Some(RangeFn::LastOverTime),
            _ => None,
        };
        let arity = |n: usize| -> Result<(), PromqlError> {
            if args.len() == n {
                Ok(())
            } else {
                Err(self.err(
                    format!(
                        "expected {n} argument(s) in call to {name:?}, got {}",
                        args.len()
                    ),
                    Locate::Call(name),
                ))
            }
        };
        if let Some(f) = range_fn {
            arity(1)?;
            let ms = match unwrap_parens(&args[0]) {
                pp::Expr::MatrixSelector(ms) => ms,
                pp::Expr::Subquery(_) => {
                    return Err(self.err("subqueries are not supported", Locate::SubqueryColon));
                }
                _ => {
                    return Err(self.err(
                        format!("expected a range selector such as x[5m] in call to {name:?}"),
                        Locate::Call(name),
                    ));
                }
            };
            let sel = self.selector(&ms.vs, duration_ms(&ms.range))?;
            return Ok(Node::Call(Box::new(Func::OverRange(f, Arc::new(sel)))));
        }
        let vector_arg = |i: usize| -> Result<Node, PromqlError> {
            let n = self.expr(&args[i])?;
            if n.is_scalar() {
                return Err(self.err(
                    format!(
                        "expected type instant vector in call to function {name:?}, got scalar"
                    ),
                    Locate::Call(name),
                ));
            }
            Ok(n)
        };
        let scalar_arg = |i: usize| -> Result<Node, PromqlError> {
            let n = self.expr(&args[i])?;
            if !n.is_scalar() {
                return Err(self.err(
                    format!(
                        "expected type scalar in call to function {name:?}, got instant vector"
                    ),
                    Locate::Call(name),
                ));
            }
            Ok(n)
        };
        let f = match name {
            "abs" => {
                arity(1)?;
                Func::Abs(vector_arg(0)?)
            }
            "time" => {
                arity(0)?;
                Func::Time
            }
            "absent" => {
                arity(1)?;
                let labels = absent_labels(unwrap_parens(&args[0]));
                Func::Absent(vector_arg(0)?, labels)
            }
            "clamp_min" => {
                arity(2)?;
                Func::ClampMin(vector_arg(0)?, scalar_arg(1)?)
            }
            "clamp_max" => {
                arity(2)?;
                Func::ClampMax(vector_arg(0)?, scalar_arg(1)?)
            }
            "timestamp" => {
                arity(1)?;
                Func::Timestamp(vector_arg(0)?)
            }
            "vector" => {
                arity(1)?;
                Func::Vector(scalar_arg(0)?)
            }
            "scalar" => {
                arity(1)?;
                Func::Scalar(vector_arg(0)?)
            }
            "histogram_quantile" => {
                arity(2)?;
                Func::HistogramQuantile(scalar_arg(0)?, vector_arg(1)?)
            }
            _ => {
                return Err(self.err(format!("unsupported function {name:?}"), Locate::Call(name)));
            }
        };
        Ok(Node::Call(Box::new(f)))
    }
}

fn unwrap_parens(mut e: &pp::Expr) -> &pp::Expr {
    while let pp::Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

fn duration_ms(d: &Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The labels `absent` gives its sample: those of the argument selector's equality matchers
/// (other than the metric name), except a label that also has another matcher, since its value
/// is then not determined by the selector alone. Any other argument gives no labels.
fn absent_labels(arg: &pp::Expr) -> Labels {
    let vs = match arg {
        pp::Expr::VectorSelector(vs) => vs,
        pp::Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::empty(),
    };
    let mut set: Vec<(&str, &str)> = Vec::new();
    let mut undetermined: Vec<&str> = Vec::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        if m.op == MatchOp::Equal && m.value.is_empty() {
            // Setting a label to "" is removing it, which it already is.
            continue;
        }
        if m.op == MatchOp::Equal && !set.iter().any(|(n, _)| *n == m.name) {
            set.push((&m.name, &m.value));
        } else {
            undetermined.push(&m.name);
        }
    }
    set.retain(|(n, _)| !undetermined.contains(n));
    Labels::new(set)
}

/// What to look for in the source to point an error at its construct.
#[derive(Debug, Clone, Copy)]
enum Locate<'a> {
    Nothing,
    /// A name followed by `(`.
    Call(&'a str),
    /// A bare word.
    Word(&'a str),
    Char(char),
    /// The `:` of a subquery's `[range:step]`.
    SubqueryColon,
    /// A string literal outside a label matcher list.
    StringLiteral,
}

/// Best-effort byte offset of a construct: the parser keeps no positions, so scan the source,
/// skipping quoted strings (and, for most constructs, label matcher lists).
fn locate(text: &str, what: Locate<'_>) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut braces = 0usize;
    let mut brackets = 0usize;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'"' | b'\'' | b'`' => {
                if braces == 0 && matches!(what, Locate::StringLiteral) {
                    return Some(i);
                }
                i = skip_string(bytes, i);
                continue;
            }
            b'#' => {
                // A comment runs to the end of the line.
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'{' => braces += 1,
            b'}' => braces = braces.saturating_sub(1),
            b'[' => brackets += 1,
            b']' => brackets = brackets.saturating_sub(1),
            _ => {}
        }
        if braces == 0 {
            match what {
                Locate::Char(ch) if c == ch as u8 => return Some(i),
                Locate::SubqueryColon if c == b':' && brackets > 0 => return Some(i),
                Locate::Call(word) | Locate::Word(word) if is_word_start(bytes, i) => {
                    let end = i + word.len();
                    if bytes.get(i..end) == Some(word.as_bytes())
                        && !bytes.get(end).is_some_and(|&b| is_ident(b))
                    {
                        let rest = text[end..].trim_start();
                        if matches!(what, Locate::Word(_)) || rest.starts_with('(') {
                            return Some(i);
                        }
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    None
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

fn is_word_start(bytes: &[u8], i: usize) -> bool {
    i == 0 || !is_ident(bytes[i - 1])
}

/// The index just past the string literal starting at `start`.
fn skip_string(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let mut i = start + 1;
    while i < bytes.len() {
        if bytes[i] == b'\\' && quote != b'`' {
            i += 2;
            continue;
        }
        if bytes[i] == quote {
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}
