//! Go templates: alert label and annotation templates (the subset of Go's `text/template` that
//! Prometheus rule files use, with Prometheus's functions `humanize`, `printf`, `reReplaceAll`,
//! `query`, …) and notification templates (Alertmanager's dialect: `define`/`template`, its data
//! and functions, and an HTML mode for email bodies; see [`notification`]).
//!
//! Parsed once when the rule file loads ([`Template::parse`]; errors are reported with the rule),
//! rendered at every evaluation ([`Template::expand`]). Output and error text follow Prometheus
//! (Go 1.19's text/template, as in Prometheus 2.42) byte for byte where promtool could check them:
//! the four `{{$labels := .Labels}}…` definitions Prometheus prepends are prepended here too, so
//! error positions (`__alert_X:1:115`) come out the same. No IO and no clock: the evaluation time
//! and the PromQL `query` function come in with [`TemplateData`] (and a notification's `now` with
//! its data).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::Arc;

use super::gofmt;

pub mod notification;

/// What Prometheus prepends to every alert template so `$labels`, `$value`, … exist.
const DEFS: &str = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}";

/// Go's reflect name of Prometheus's template data type, as it appears in error messages.
const DATA_TYPE: &str = "struct { Labels map[string]string; ExternalLabels map[string]string; ExternalURL string; Value float64 }";

/// A template that failed to parse, or failed while rendering; the text is Go's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

/// One sample of a `query` result, as templates see it.
#[derive(Debug, Clone, PartialEq)]
pub struct QuerySample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The PromQL `query` template function: the caller evaluates at the rule's evaluation time.
pub trait TemplateQuery {
    fn query(&self, expr: &str) -> Result<Vec<QuerySample>, String>;
}

/// What a template can read while rendering one alert.
#[derive(Clone, Copy)]
pub struct TemplateData<'a> {
    /// The alert's labels from the expression result (`$labels`, `.Labels`).
    pub labels: &'a BTreeMap<String, String>,
    /// `$externalLabels` (empty unless configured).
    pub external_labels: &'a BTreeMap<String, String>,
    /// `$externalURL`.
    pub external_url: &'a str,
    /// The sample value (`$value`, `.Value`).
    pub value: f64,
    /// Backs the `query` function; `None` makes `query` fail with an error in the output.
    pub query: Option<&'a dyn TemplateQuery>,
}

/// Whose functions a template may call (and how `title` capitalises): Prometheus's, for rule
/// templates, or Alertmanager's, for notification templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Prometheus,
    Alertmanager,
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    /// The name an execution error says is running (`__alert_X`, `email.default.html`).
    name: String,
    /// The name parse and execution positions are given in: the rule's template, or the file or
    /// field a notification template came from.
    parse_name: Arc<str>,
    /// The full text parsed (for a rule template `DEFS` followed by the user's text); positions
    /// index into it. Shared by every template defined in one file.
    text: Arc<str>,
    nodes: Vec<Node>,
    /// Set when the user's text has no action at all: rendering is then a copy.
    literal: Option<String>,
    dialect: Dialect,
}

/// What [`Template::parse_in`] found: the text's own template and the ones it `define`s (or
/// `block`s), in order.
struct Parsed {
    main: Template,
    defines: Vec<Template>,
}

impl Template {
    /// Parse `text` as Prometheus does for alert rule `name` (the template is named
    /// `__alert_<name>`), with `$labels`, `$value`, `$externalLabels`, `$externalURL` defined.
    pub fn parse(alert_name: &str, text: &str) -> Result<Template, TemplateError> {
        let name = format!("__alert_{alert_name}");
        let full = format!("{DEFS}{text}");
        let literal = (!text.contains("{{")).then(|| text.to_string());
        let mut parsed = Template::parse_in(&name, &name, full, Dialect::Prometheus)?;
        parsed.main.literal = literal;
        Ok(parsed.main)
    }

    /// Parse `text` in `dialect`: the main template is `name`, positions are in `parse_name`.
    fn parse_in(
        name: &str,
        parse_name: &str,
        text: String,
        dialect: Dialect,
    ) -> Result<Parsed, TemplateError> {
        let tokens = lex(&text);
        let mut parser = Parser {
            name: parse_name,
            tokens: &tokens,
            i: 0,
            max_seen: 0,
            vars: vec!["$".to_string()],
            action_line: 0,
            dialect,
            defines: Vec::new(),
        };
        let nodes = parser.parse()?;
        let defined = parser.defines;
        let text: Arc<str> = Arc::from(text);
        let parse_name: Arc<str> = Arc::from(parse_name);
        let make = |name: String, nodes: Vec<Node>| Template {
            name,
            parse_name: parse_name.clone(),
            text: text.clone(),
            nodes,
            literal: None,
            dialect,
        };
        Ok(Parsed {
            main: make(name.to_string(), nodes),
            defines: defined.into_iter().map(|(n, body)| make(n, body)).collect(),
        })
    }

    /// The user's text, without the prepended definitions.
    pub fn source(&self) -> &str {
        &self.text[DEFS.len()..]
    }

    /// Whether the template has nothing but whitespace text (Go's `parse.IsEmptyTree`): such a
    /// definition does not replace an existing one of the same name.
    fn is_empty(&self) -> bool {
        self.nodes
            .iter()
            .all(|n| matches!(n, Node::Text(t) if t.trim().is_empty()))
    }

    /// Render; a failure is Go's error text (`error executing template __alert_X: …`).
    pub fn render(&self, data: &TemplateData<'_>) -> Result<String, TemplateError> {
        if let Some(l) = &self.literal {
            return Ok(l.clone());
        }
        let root = Val::Data(Rc::new(DataVal {
            labels: Rc::new(data.labels.clone()),
            external_labels: Rc::new(data.external_labels.clone()),
            external_url: Rc::from(data.external_url),
            value: data.value,
        }));
        self.execute(root, data, Env::default())
            .map_err(|Fail(msg)| {
                TemplateError(format!("error executing template {}: {msg}", self.name))
            })
    }

    /// Walk the template with `root` as dot and `$`.
    fn execute<'t>(
        &'t self,
        root: Val,
        data: &TemplateData<'_>,
        env: Env<'t>,
    ) -> Result<String, Fail> {
        let mut st = Exec {
            tmpl: self,
            data,
            out: String::new(),
            vars: vec![("$".to_string(), root.clone())],
            at: None,
            env,
            depth: 0,
        };
        st.walk_list(&root, &self.nodes)?;
        Ok(st.out)
    }

    /// Render as Prometheus does for alerts: a failure becomes the output text
    /// `<error expanding template: …>`.
    pub fn expand(&self, data: &TemplateData<'_>) -> String {
        self.render(data)
            .unwrap_or_else(|e| format!("<error expanding template: {e}>"))
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer (Go 1.19 text/template/parse/lex.go semantics).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Error,
    Bool,
    Char,
    CharConstant,
    Complex,
    Assign,
    Declare,
    Eof,
    Field,
    Identifier,
    LeftDelim,
    LeftParen,
    Number,
    Pipe,
    RawString,
    RightDelim,
    RightParen,
    Space,
    Str,
    Text,
    Variable,
    // Keywords.
    Block,
    Break,
    Continue,
    Dot,
    Define,
    Else,
    End,
    If,
    Nil,
    Range,
    Template,
    With,
}

impl Kind {
    fn is_keyword(self) -> bool {
        matches!(
            self,
            Kind::Block
                | Kind::Break
                | Kind::Continue
                | Kind::Dot
                | Kind::Define
                | Kind::Else
                | Kind::End
                | Kind::If
                | Kind::Nil
                | Kind::Range
                | Kind::Template
                | Kind::With
        )
    }
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    pos: usize,
    val: String,
    line: usize,
}

impl Token {
    /// Go's `item.String()`, used in "unexpected X in Y".
    fn describe(&self) -> String {
        match self.kind {
            Kind::Eof => "EOF".into(),
            Kind::Error => self.val.clone(),
            k if k.is_keyword() => format!("<{}>", self.val),
            _ if self.val.chars().count() > 10 => {
                let head: String = self.val.chars().take(10).collect();
                format!("{}...", gofmt::quote(&head))
            }
            _ => gofmt::quote(&self.val),
        }
    }
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphabetic() || c.is_numeric()
}

fn has_left_trim(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && b[0] == b'-' && is_space(b[1] as char)
}

fn has_right_trim(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && is_space(b[0] as char) && b[1] == b'-'
}

fn go_rune(c: char) -> String {
    format!("U+{:04X} '{c}'", c as u32)
}

struct Lexer<'s> {
    input: &'s str,
    pos: usize,
    start: usize,
    paren_depth: i64,
    items: Vec<Token>,
}

fn lex(input: &str) -> Vec<Token> {
    let mut l = Lexer {
        input,
        pos: 0,
        start: 0,
        paren_depth: 0,
        items: Vec::new(),
    };
    l.run();
    l.items
}

#[derive(Clone, Copy)]
enum State {
    Text,
    LeftDelim,
    Comment,
    RightDelim,
    InsideAction,
    Space,
    Identifier,
    Field,
    Variable,
    Char,
    Number,
    Quote,
    RawQuote,
}

impl Lexer<'_> {
    fn line_at(&self, pos: usize) -> usize {
        1 + self.input[..pos].matches('\n').count()
    }

    fn peek(&self) -> Option<char> {
        self.input[self.pos..].chars().next()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn backup(&mut self, c: Option<char>) {
        if let Some(c) = c {
            self.pos -= c.len_utf8();
        }
    }

    fn accept(&mut self, valid: &str) -> bool {
        match self.peek() {
            Some(c) if valid.contains(c) => {
                self.pos += c.len_utf8();
                true
            }
            _ => false,
        }
    }

    fn accept_run(&mut self, valid: &str) {
        while self.accept(valid) {}
    }

    fn emit(&mut self, kind: Kind) {
        let val = self.input[self.start..self.pos].to_string();
        let line = self.line_at(self.start);
        self.items.push(Token {
            kind,
            pos: self.start,
            val,
            line,
        });
        self.start = self.pos;
    }

    fn error(&mut self, msg: String) -> Option<State> {
        let line = self.line_at(self.start);
        self.items.push(Token {
            kind: Kind::Error,
            pos: self.start,
            val: msg,
            line,
        });
        None
    }

    fn at_right_delim(&self) -> (bool, bool) {
        let rest = &self.input[self.pos..];
        if has_right_trim(rest) && rest[2..].starts_with("}}") {
            (true, true)
        } else {
            (rest.starts_with("}}"), false)
        }
    }

    fn at_terminator(&self) -> bool {
        match self.peek() {
            None => true,
            Some(c) => is_space(c) || ".,|:)(}".contains(c),
        }
    }

    fn run(&mut self) {
        let mut state = Some(State::Text);
        while let Some(s) = state {
            state = self.step(s);
        }
    }

    fn step(&mut self, s: State) -> Option<State> {
        match s {
            State::Text => self.lex_text(),
            State::LeftDelim => self.lex_left_delim(),
            State::Comment => self.lex_comment(),
            State::RightDelim => self.lex_right_delim(),
            State::InsideAction => self.lex_inside_action(),
            State::Space => self.lex_space(),
            State::Identifier => self.lex_identifier(),
            State::Field => self.lex_field_or_variable(Kind::Field),
            State::Variable => {
                if self.at_terminator() {
                    self.emit(Kind::Variable);
                    return Some(State::InsideAction);
                }
                self.lex_field_or_variable(Kind::Variable)
            }
            State::Char => self.lex_quoted('\'', "unterminated character constant"),
            State::Number => self.lex_number(),
            State::Quote => self.lex_quoted('"', "unterminated quoted string"),
            State::RawQuote => match self.input[self.pos..].find('`') {
                Some(i) => {
                    self.pos += i + 1;
                    self.emit(Kind::RawString);
                    Some(State::InsideAction)
                }
                None => self.error("unterminated raw quoted string".into()),
            },
        }
    }

    fn lex_text(&mut self) -> Option<State> {
        match self.input[self.pos..].find("{{") {
            Some(x) => {
                if x > 0 {
                    let delim = self.pos + x;
                    let mut end = delim;
                    if has_left_trim(&self.input[delim + 2..]) {
                        end = self.start
                            + self.input[self.start..delim]
                                .trim_end_matches([' ', '\t', '\r', '\n'])
                                .len();
                    }
                    self.pos = end;
                    if self.pos > self.start {
                        self.emit(Kind::Text);
                    }
                    self.pos = delim;
                    self.start = delim;
                }
                Some(State::LeftDelim)
            }
            None => {
                self.pos = self.input.len();
                if self.pos > self.start {
                    self.emit(Kind::Text);
                }
                self.emit(Kind::Eof);
                None
            }
        }
    }

    fn lex_left_delim(&mut self) -> Option<State> {
        self.pos += 2;
        let trim = has_left_trim(&self.input[self.pos..]);
        let after = if trim { 2 } else { 0 };
        if self.input[self.pos + after..].starts_with("/*") {
            self.pos += after;
            self.start = self.pos;
            return Some(State::Comment);
        }
        self.emit(Kind::LeftDelim);
        self.pos += after;
        self.start = self.pos;
        self.paren_depth = 0;
        Some(State::InsideAction)
    }

    fn lex_comment(&mut self) -> Option<State> {
        self.pos += 2;
        let Some(x) = self.input[self.pos..].find("*/") else {
            return self.error("unclosed comment".into());
        };
        self.pos += x + 2;
        let (delim, trim) = self.at_right_delim();
        if !delim {
            return self.error("comment ends before closing delimiter".into());
        }
        if trim {
            self.pos += 2;
        }
        self.pos += 2;
        if trim {
            let rest = &self.input[self.pos..];
            self.pos += rest.len() - rest.trim_start_matches([' ', '\t', '\r', '\n']).len();
        }
        self.start = self.pos;
        Some(State::Text)
    }

    fn lex_right_delim(&mut self) -> Option<State> {
        let (_, trim) = self.at_right_delim();
        if trim {
            self.pos += 2;
            self.start = self.pos;
        }
        self.pos += 2;
        self.emit(Kind::RightDelim);
        if trim {
            let rest = &self.input[self.pos..];
            self.pos += rest.len() - rest.trim_start_matches([' ', '\t', '\r', '\n']).len();
            self.start = self.pos;
        }
        Some(State::Text)
    }

    fn lex_inside_action(&mut self) -> Option<State> {
        let (delim, _) = self.at_right_delim();
        if delim {
            if self.paren_depth == 0 {
                return Some(State::RightDelim);
            }
            return self.error("unclosed left paren".into());
        }
        let Some(c) = self.next() else {
            return self.error("unclosed action".into());
        };
        match c {
            c if is_space(c) => {
                self.backup(Some(c));
                return Some(State::Space);
            }
            '=' => self.emit(Kind::Assign),
            ':' => {
                if self.next() != Some('=') {
                    return self.error("expected :=".into());
                }
                self.emit(Kind::Declare);
            }
            '|' => self.emit(Kind::Pipe),
            '"' => return Some(State::Quote),
            '`' => return Some(State::RawQuote),
            '$' => return Some(State::Variable),
            '\'' => return Some(State::Char),
            '.' if !self.peek().is_some_and(|c| c.is_ascii_digit()) => {
                return Some(State::Field);
            }
            '.' | '+' | '-' | '0'..='9' => {
                self.backup(Some(c));
                return Some(State::Number);
            }
            c if is_alnum(c) => {
                self.backup(Some(c));
                return Some(State::Identifier);
            }
            '(' => {
                self.emit(Kind::LeftParen);
                self.paren_depth += 1;
            }
            ')' => {
                self.emit(Kind::RightParen);
                self.paren_depth -= 1;
                if self.paren_depth < 0 {
                    return self.error(format!("unexpected right paren {}", go_rune(c)));
                }
            }
            c if c.is_ascii() && !c.is_ascii_control() => self.emit(Kind::Char),
            c => return self.error(format!("unrecognized character in action: {}", go_rune(c))),
        }
        Some(State::InsideAction)
    }

    fn lex_space(&mut self) -> Option<State> {
        let mut n = 0;
        while self.peek().is_some_and(is_space) {
            self.next();
            n += 1;
        }
        // A trim-marked closing delimiter (" -}}") starts with the last space.
        if has_right_trim(&self.input[self.pos - 1..])
            && self.input[self.pos + 1..].starts_with("}}")
        {
            self.pos -= 1;
            if n == 1 {
                return Some(State::RightDelim);
            }
        }
        self.emit(Kind::Space);
        Some(State::InsideAction)
    }

    fn lex_identifier(&mut self) -> Option<State> {
        while self.peek().is_some_and(is_alnum) {
            self.next();
        }
        if !self.at_terminator() {
            let c = self.peek().unwrap_or(' ');
            return self.error(format!("bad character {}", go_rune(c)));
        }
        let kind = match &self.input[self.start..self.pos] {
            "block" => Kind::Block,
            "break" => Kind::Break,
            "continue" => Kind::Continue,
            "define" => Kind::Define,
            "else" => Kind::Else,
            "end" => Kind::End,
            "if" => Kind::If,
            "range" => Kind::Range,
            "nil" => Kind::Nil,
            "template" => Kind::Template,
            "with" => Kind::With,
            "true" | "false" => Kind::Bool,
            _ => Kind::Identifier,
        };
        self.emit(kind);
        Some(State::InsideAction)
    }

    fn lex_field_or_variable(&mut self, kind: Kind) -> Option<State> {
        if self.at_terminator() {
            self.emit(if kind == Kind::Variable {
                Kind::Variable
            } else {
                Kind::Dot
            });
            return Some(State::InsideAction);
        }
        while self.peek().is_some_and(is_alnum) {
            self.next();
        }
        if !self.at_terminator() {
            let c = self.peek().unwrap_or(' ');
            return self.error(format!("bad character {}", go_rune(c)));
        }
        self.emit(kind);
        Some(State::InsideAction)
    }

    fn lex_quoted(&mut self, quote: char, unterminated: &str) -> Option<State> {
        loop {
            match self.next() {
                Some('\\') => match self.next() {
                    Some(c) if c != '\n' => {}
                    _ => return self.error(unterminated.into()),
                },
                None | Some('\n') => return self.error(unterminated.into()),
                Some(c) if c == quote => break,
                Some(_) => {}
            }
        }
        self.emit(if quote == '"' {
            Kind::Str
        } else {
            Kind::CharConstant
        });
        Some(State::InsideAction)
    }

    fn scan_number(&mut self) -> bool {
        self.accept("+-");
        let mut digits = "0123456789_";
        if self.accept("0") {
            if self.accept("xX") {
                digits = "0123456789abcdefABCDEF_";
            } else if self.accept("oO") {
                digits = "01234567_";
            } else if self.accept("bB") {
                digits = "01_";
            }
        }
        self.accept_run(digits);
        if self.accept(".") {
            self.accept_run(digits);
        }
        if digits.len() == 11 && self.accept("eE") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        if digits.len() == 23 && self.accept("pP") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        self.accept("i");
        if self.peek().is_some_and(is_alnum) {
            self.next();
            return false;
        }
        true
    }

    fn lex_number(&mut self) -> Option<State> {
        if !self.scan_number() {
            let text = self.input[self.start..self.pos].to_string();
            return self.error(format!("bad number syntax: {}", gofmt::quote(&text)));
        }
        if matches!(self.peek(), Some('+' | '-')) {
            if !self.scan_number() || !self.input[..self.pos].ends_with('i') {
                let text = self.input[self.start..self.pos].to_string();
                return self.error(format!("bad number syntax: {}", gofmt::quote(&text)));
            }
            self.emit(Kind::Complex);
        } else {
            self.emit(Kind::Number);
        }
        Some(State::InsideAction)
    }
}

// ---------------------------------------------------------------------------------------------
// Parse tree.

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action {
        pos: usize,
        pipe: Pipe,
    },
    /// `if`, `with` and `range` share a shape.
    Control {
        kind: Control,
        pos: usize,
        pipe: Pipe,
        list: Vec<Node>,
        else_list: Option<Vec<Node>>,
    },
    /// `{{template "name" pipeline}}` (notification templates only).
    Template {
        pos: usize,
        name: String,
        pipe: Option<Pipe>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    If,
    With,
    Range,
}

#[derive(Debug, Clone)]
struct Pipe {
    pos: usize,
    is_assign: bool,
    decl: Vec<String>,
    cmds: Vec<Cmd>,
}

#[derive(Debug, Clone)]
struct Cmd {
    pos: usize,
    args: Vec<Arg>,
}

#[derive(Debug, Clone)]
struct Arg {
    pos: usize,
    kind: ArgKind,
}

#[derive(Debug, Clone)]
enum ArgKind {
    Field(Vec<String>),
    Variable(Vec<String>),
    Ident(Func),
    Dot,
    Nil,
    Bool(bool),
    Number(Number),
    Str { quoted: String, text: String },
    Pipe(Box<Pipe>),
    Chain(Box<Arg>, Vec<String>),
}

#[derive(Debug, Clone)]
struct Number {
    text: String,
    int: Option<i64>,
    float: Option<f64>,
}

impl Pipe {
    fn describe(&self) -> String {
        let mut s = String::new();
        if !self.decl.is_empty() {
            s.push_str(&self.decl.join(", "));
            s.push_str(if self.is_assign { " = " } else { " := " });
        }
        let cmds: Vec<String> = self.cmds.iter().map(Cmd::describe).collect();
        s.push_str(&cmds.join(" | "));
        s
    }
}

impl Cmd {
    fn describe(&self) -> String {
        let parts: Vec<String> = self
            .args
            .iter()
            .map(|a| match &a.kind {
                ArgKind::Pipe(p) => format!("({})", p.describe()),
                _ => a.describe(),
            })
            .collect();
        parts.join(" ")
    }
}

impl Arg {
    fn describe(&self) -> String {
        match &self.kind {
            ArgKind::Field(id) => id.iter().map(|f| format!(".{f}")).collect(),
            ArgKind::Variable(id) => id.join("."),
            ArgKind::Ident(f) => f.name().to_string(),
            ArgKind::Dot => ".".into(),
            ArgKind::Nil => "nil".into(),
            ArgKind::Bool(b) => b.to_string(),
            ArgKind::Number(n) => n.text.clone(),
            ArgKind::Str { quoted, .. } => quoted.clone(),
            ArgKind::Pipe(p) => p.describe(),
            ArgKind::Chain(node, fields) => {
                let mut s = match &node.kind {
                    ArgKind::Pipe(p) => format!("({})", p.describe()),
                    _ => node.describe(),
                };
                for f in fields {
                    s.push('.');
                    s.push_str(f);
                }
                s
            }
        }
    }
}

/// The node an execution error is reported at, as Go's `state.at`.
#[derive(Clone, Copy)]
enum At<'t> {
    Arg(&'t Arg),
    Cmd(&'t Cmd),
    Pipe(&'t Pipe),
    Node(&'t Node),
}

impl At<'_> {
    fn pos(&self) -> usize {
        match self {
            At::Arg(a) => a.pos,
            At::Cmd(c) => c.pos,
            At::Pipe(p) => p.pos,
            At::Node(Node::Text(_)) => 0,
            At::Node(
                Node::Action { pos, .. } | Node::Control { pos, .. } | Node::Template { pos, .. },
            ) => *pos,
        }
    }

    fn describe(&self) -> String {
        match self {
            At::Arg(a) => a.describe(),
            At::Cmd(c) => c.describe(),
            At::Pipe(p) => p.describe(),
            At::Node(Node::Text(t)) => gofmt::quote(t),
            At::Node(Node::Action { pipe, .. }) => format!("{{{{{}}}}}", pipe.describe()),
            At::Node(Node::Control { kind, pipe, .. }) => {
                let k = match kind {
                    Control::If => "if",
                    Control::With => "with",
                    Control::Range => "range",
                };
                format!("{{{{{k} {}}}}}", pipe.describe())
            }
            At::Node(Node::Template { name, pipe, .. }) => match pipe {
                Some(p) => format!("{{{{template {} {}}}}}", gofmt::quote(name), p.describe()),
                None => format!("{{{{template {}}}}}", gofmt::quote(name)),
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Functions.

/// A parameter's Go type, for argument checking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PType {
    /// `interface{}`.
    Any,
    /// `reflect.Value` (the builtins): anything.
    Reflect,
    Str,
    /// `template.queryResult`.
    Vector,
    /// `*template.sample`.
    Sample,
    /// `[]string` (a `template.Strings` is assignable).
    Strings,
    /// `time.Time`.
    Time,
    /// `[]interface {}`.
    List,
}

impl PType {
    fn go_name(self) -> &'static str {
        match self {
            PType::Any => "interface {}",
            PType::Reflect => "reflect.Value",
            PType::Str => "string",
            PType::Vector => "template.queryResult",
            PType::Sample => "*template.sample",
            PType::Strings => "[]string",
            PType::Time => "time.Time",
            PType::List => "[]interface {}",
        }
    }

    fn can_be_nil(self) -> bool {
        matches!(
            self,
            PType::Any
                | PType::Reflect
                | PType::Vector
                | PType::Sample
                | PType::Strings
                | PType::List
        )
    }
}

macro_rules! funcs {
    ($($variant:ident $name:literal [$($p:ident),*] $variadic:expr;)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Func { $($variant),* }
        impl Func {
            fn lookup(name: &str) -> Option<Func> {
                match name { $($name => Some(Func::$variant),)* _ => None }
            }
            fn name(self) -> &'static str {
                match self { $(Func::$variant => $name),* }
            }
            fn params(self) -> (&'static [PType], Option<PType>) {
                match self { $(Func::$variant => (&[$(PType::$p),*], $variadic)),* }
            }
        }
    };
}

funcs! {
    And "and" [Reflect] Some(PType::Reflect);
    Or "or" [Reflect] Some(PType::Reflect);
    Not "not" [Reflect] None;
    Eq "eq" [Reflect] Some(PType::Reflect);
    Ne "ne" [Reflect, Reflect] None;
    Lt "lt" [Reflect, Reflect] None;
    Le "le" [Reflect, Reflect] None;
    Gt "gt" [Reflect, Reflect] None;
    Ge "ge" [Reflect, Reflect] None;
    Len "len" [Reflect] None;
    Index "index" [Reflect] Some(PType::Reflect);
    Print "print" [] Some(PType::Any);
    Printf "printf" [Str] Some(PType::Any);
    Println "println" [] Some(PType::Any);
    Urlquery "urlquery" [] Some(PType::Any);
    Humanize "humanize" [Any] None;
    Humanize1024 "humanize1024" [Any] None;
    HumanizeDuration "humanizeDuration" [Any] None;
    HumanizePercentage "humanizePercentage" [Any] None;
    HumanizeTimestamp "humanizeTimestamp" [Any] None;
    ToTime "toTime" [Any] None;
    Title "title" [Str] None;
    ToUpper "toUpper" [Str] None;
    ToLower "toLower" [Str] None;
    ReReplaceAll "reReplaceAll" [Str, Str, Str] None;
    Match "match" [Str, Str] None;
    StripPort "stripPort" [Str] None;
    StripDomain "stripDomain" [Str] None;
    ParseDuration "parseDuration" [Str] None;
    SafeHtml "safeHtml" [Str] None;
    GraphLink "graphLink" [Str] None;
    TableLink "tableLink" [Str] None;
    ExternalUrl "externalURL" [] None;
    PathPrefix "pathPrefix" [] None;
    Query "query" [Str] None;
    First "first" [Vector] None;
    Label "label" [Str, Sample] None;
    Value "value" [Sample] None;
    StrValue "strvalue" [Sample] None;
    SortByLabel "sortByLabel" [Str, Vector] None;
    // Alertmanager's (`template.DefaultFuncs`).
    TrimSpace "trimSpace" [Str] None;
    Join "join" [Str, Strings] None;
    SafeUrl "safeUrl" [Str] None;
    UrlUnescape "urlUnescape" [Str] None;
    StringSlice "stringSlice" [] Some(PType::Str);
    Date "date" [Str, Time] None;
    Now "now" [] None;
    Since "since" [Time] None;
    ToJson "toJson" [Any] None;
    Base64Encode "base64encode" [Str] None;
    Base64Decode "base64decode" [Str] None;
    List "list" [] Some(PType::Any);
    Append "append" [List] Some(PType::Any);
    Dict "dict" [] Some(PType::Any);
}

impl Func {
    /// Whether a template of `dialect` may call it: Go's builtins and the functions both define
    /// are everywhere, the rest only where Prometheus or Alertmanager defines them.
    fn in_dialect(self, dialect: Dialect) -> bool {
        use Func::*;
        match self {
            Humanize | Humanize1024 | HumanizePercentage | HumanizeTimestamp | ToTime
            | StripPort | StripDomain | ParseDuration | GraphLink | TableLink | ExternalUrl
            | PathPrefix | Query | First | Label | Value | StrValue | SortByLabel => {
                dialect == Dialect::Prometheus
            }
            TrimSpace | Join | SafeUrl | UrlUnescape | StringSlice | Date | Now | Since
            | ToJson | Base64Encode | Base64Decode | List | Append | Dict => {
                dialect == Dialect::Alertmanager
            }
            _ => true,
        }
    }
}

/// Functions Go or Prometheus define that this engine does not implement: reported at load.
const UNSUPPORTED: &[&str] = &["args", "call", "html", "js", "slice"];

/// Alertmanager's functions this engine does not implement (time zones and date parsing, route
/// labels), beyond [`UNSUPPORTED`].
const UNSUPPORTED_ALERTMANAGER: &[&str] = &["tz", "toDate", "mustToDate", "routeLabels"];

// ---------------------------------------------------------------------------------------------
// Parser (Go 1.19 text/template/parse/parse.go semantics).

struct Parser<'a> {
    name: &'a str,
    tokens: &'a [Token],
    i: usize,
    max_seen: usize,
    vars: Vec<String>,
    action_line: usize,
    dialect: Dialect,
    /// `define`d and `block`ed templates met so far (Alertmanager's dialect only).
    defines: Vec<(String, Vec<Node>)>,
}

type PResult<T> = Result<T, TemplateError>;

/// What ends an item list.
enum Stop {
    End,
    Else { pos: usize, else_if: bool },
}

impl Parser<'_> {
    fn tok(&mut self, i: usize) -> &Token {
        let i = i.min(self.tokens.len().saturating_sub(1));
        self.max_seen = self.max_seen.max(i);
        &self.tokens[i]
    }

    fn next(&mut self) -> Token {
        let t = self.tok(self.i).clone();
        self.i += 1;
        t
    }

    fn backup(&mut self) {
        self.i -= 1;
    }

    fn peek(&mut self) -> Token {
        self.tok(self.i).clone()
    }

    fn next_non_space(&mut self) -> Token {
        loop {
            let t = self.next();
            if t.kind != Kind::Space {
                return t;
            }
        }
    }

    fn peek_non_space(&mut self) -> Token {
        let save = self.i;
        let t = self.next_non_space();
        self.i = save;
        // Go consumes the spaces; it does not matter for what follows.
        while self.i < self.tokens.len() && self.tokens[self.i].kind == Kind::Space {
            self.i += 1;
        }
        t
    }

    fn errorf(&mut self, msg: impl std::fmt::Display) -> TemplateError {
        let line = self.tokens[self.max_seen.min(self.tokens.len() - 1)].line;
        TemplateError(format!("template: {}:{line}: {msg}", self.name))
    }

    fn unexpected(&mut self, t: &Token, context: &str) -> TemplateError {
        if t.kind == Kind::Error {
            let mut extra = String::new();
            if self.action_line != 0 && self.action_line != t.line {
                extra = format!(" in action started at {}:{}", self.name, self.action_line);
                if t.val.ends_with(" action") {
                    extra = extra[" in action".len()..].to_string();
                }
            }
            return self.errorf(format!("{}{extra}", t.val));
        }
        self.errorf(format!("unexpected {} in {context}", t.describe()))
    }

    fn parse(&mut self) -> PResult<Vec<Node>> {
        let mut nodes = Vec::new();
        while self.peek().kind != Kind::Eof {
            if self.peek().kind == Kind::LeftDelim {
                let save = self.i;
                self.next();
                if self.next_non_space().kind == Kind::Define {
                    if self.dialect == Dialect::Prometheus {
                        return Err(self.errorf("{{define}} is not supported"));
                    }
                    self.definition()?;
                    continue;
                }
                self.i = save;
            }
            match self.text_or_action()? {
                Item::Node(n) => nodes.push(n),
                Item::End => return Err(self.errorf("unexpected {{end}}")),
                Item::Else(..) => return Err(self.errorf("unexpected {{else}}")),
            }
        }
        Ok(nodes)
    }

    fn item_list(&mut self) -> PResult<(Vec<Node>, Stop)> {
        let mut list = Vec::new();
        while self.peek_non_space().kind != Kind::Eof {
            match self.text_or_action()? {
                Item::Node(n) => list.push(n),
                Item::End => return Ok((list, Stop::End)),
                Item::Else(pos, else_if) => return Ok((list, Stop::Else { pos, else_if })),
            }
        }
        Err(self.errorf("unexpected EOF"))
    }

    fn text_or_action(&mut self) -> PResult<Item> {
        let t = self.next_non_space();
        match t.kind {
            Kind::Text => Ok(Item::Node(Node::Text(t.val))),
            Kind::LeftDelim => {
                self.action_line = t.line;
                let r = self.action();
                self.action_line = 0;
                r
            }
            _ => Err(self.unexpected(&t, "input")),
        }
    }

    fn action(&mut self) -> PResult<Item> {
        let t = self.next_non_space();
        match t.kind {
            Kind::Else => return self.else_control(),
            Kind::End => {
                let t = self.next_non_space();
                if t.kind != Kind::RightDelim {
                    return Err(self.unexpected(&t, "end"));
                }
                return Ok(Item::End);
            }
            Kind::If => return self.control(Control::If, true),
            Kind::Range => return self.control(Control::Range, false),
            Kind::With => return self.control(Control::With, false),
            Kind::Template if self.dialect == Dialect::Alertmanager => {
                return self.template_control();
            }
            Kind::Block if self.dialect == Dialect::Alertmanager => return self.block_control(),
            Kind::Block | Kind::Template => {
                return Err(self.errorf(format!("{{{{{}}}}} is not supported", t.val)));
            }
            Kind::Break | Kind::Continue => {
                return Err(self.errorf(format!("{{{{{}}}}} is not supported", t.val)));
            }
            _ => {}
        }
        self.backup();
        let t = self.peek();
        let pipe = self.pipeline("command", Kind::RightDelim)?;
        Ok(Item::Node(Node::Action { pos: t.pos, pipe }))
    }

    /// `{{define "name"}}…{{end}}` after its `define`: the body, with only `$` declared.
    fn definition(&mut self) -> PResult<()> {
        const CONTEXT: &str = "define clause";
        let t = self.next_non_space();
        let name = self.template_name(&t, CONTEXT)?;
        let t = self.next_non_space();
        if t.kind != Kind::RightDelim {
            return Err(self.unexpected(&t, CONTEXT));
        }
        let body = self.body(CONTEXT)?;
        self.defines.push((name, body));
        Ok(())
    }

    /// A `define` or `block` body up to its `{{end}}`, in a scope of its own.
    fn body(&mut self, context: &str) -> PResult<Vec<Node>> {
        let outer = std::mem::replace(&mut self.vars, vec!["$".to_string()]);
        let (list, stop) = self.item_list()?;
        self.vars = outer;
        match stop {
            Stop::End => Ok(list),
            Stop::Else { .. } => Err(self.errorf(format!("unexpected {{{{else}}}} in {context}"))),
        }
    }

    fn template_name(&mut self, t: &Token, context: &str) -> PResult<String> {
        match t.kind {
            Kind::Str | Kind::RawString => match unquote(&t.val) {
                Some(n) => Ok(n),
                None => Err(self.errorf("invalid syntax")),
            },
            _ => Err(self.unexpected(t, context)),
        }
    }

    /// `{{template "name"}}` or `{{template "name" pipeline}}`.
    fn template_control(&mut self) -> PResult<Item> {
        const CONTEXT: &str = "template clause";
        let t = self.next_non_space();
        let name = self.template_name(&t, CONTEXT)?;
        let pipe = if self.next_non_space().kind == Kind::RightDelim {
            None
        } else {
            self.backup();
            Some(self.pipeline(CONTEXT, Kind::RightDelim)?)
        };
        Ok(Item::Node(Node::Template {
            pos: t.pos,
            name,
            pipe,
        }))
    }

    /// `{{block "name" pipeline}}default{{end}}`: defines `name` and calls it.
    fn block_control(&mut self) -> PResult<Item> {
        const CONTEXT: &str = "block clause";
        let t = self.next_non_space();
        let name = self.template_name(&t, CONTEXT)?;
        let pipe = self.pipeline(CONTEXT, Kind::RightDelim)?;
        let body = self.body(CONTEXT)?;
        self.defines.push((name.clone(), body));
        Ok(Item::Node(Node::Template {
            pos: t.pos,
            name,
            pipe: Some(pipe),
        }))
    }

    fn else_control(&mut self) -> PResult<Item> {
        let peek = self.peek_non_space();
        if peek.kind == Kind::If {
            return Ok(Item::Else(peek.pos, true));
        }
        let t = self.next_non_space();
        if t.kind != Kind::RightDelim {
            return Err(self.unexpected(&t, "else"));
        }
        Ok(Item::Else(t.pos, false))
    }

    fn control(&mut self, kind: Control, allow_else_if: bool) -> PResult<Item> {
        let context = match kind {
            Control::If => "if",
            Control::With => "with",
            Control::Range => "range",
        };
        let mark = self.vars.len();
        let pipe = self.pipeline(context, Kind::RightDelim)?;
        let (list, stop) = self.item_list()?;
        let else_list = match stop {
            Stop::End => None,
            Stop::Else { pos, else_if } => {
                if allow_else_if && else_if {
                    // `{{else if b}}` is `{{else}}{{if b}}…{{end}}` sharing the one `{{end}}`.
                    self.next_non_space();
                    match self.control(Control::If, true)? {
                        Item::Node(n) => Some(vec![n]),
                        _ => return Err(self.errorf("internal error in else if")),
                    }
                } else {
                    if else_if {
                        // `{{else if}}` inside with/range: Go 1.19 parses the `if` as an
                        // action keyword and fails; say so plainly.
                        return Err(self.errorf("unexpected <if> in input"));
                    }
                    let _ = pos;
                    let (l, stop) = self.item_list()?;
                    if !matches!(stop, Stop::End) {
                        return Err(self.errorf("expected end; found {{else}}"));
                    }
                    Some(l)
                }
            }
        };
        self.vars.truncate(mark);
        Ok(Item::Node(Node::Control {
            kind,
            pos: pipe.pos,
            pipe,
            list,
            else_list,
        }))
    }

    fn pipeline(&mut self, context: &str, end: Kind) -> PResult<Pipe> {
        let first = self.peek_non_space();
        let mut pipe = Pipe {
            pos: first.pos,
            is_assign: false,
            decl: Vec::new(),
            cmds: Vec::new(),
        };
        loop {
            let v = self.peek_non_space();
            if v.kind != Kind::Variable {
                break;
            }
            let save = self.i;
            self.next();
            let next = self.peek_non_space();
            match next.kind {
                Kind::Assign | Kind::Declare => {
                    pipe.is_assign = next.kind == Kind::Assign;
                    self.next_non_space();
                    pipe.decl.push(v.val.clone());
                    self.vars.push(v.val);
                    break;
                }
                Kind::Char if next.val == "," => {
                    self.next_non_space();
                    pipe.decl.push(v.val.clone());
                    self.vars.push(v.val);
                    if context == "range" && pipe.decl.len() < 2 {
                        match self.peek_non_space().kind {
                            Kind::Variable | Kind::RightDelim | Kind::RightParen => continue,
                            _ => return Err(self.errorf("range can only initialize variables")),
                        }
                    }
                    return Err(self.errorf(format!("too many declarations in {context}")));
                }
                _ => {
                    self.i = save;
                    break;
                }
            }
        }
        loop {
            let t = self.next_non_space();
            match t.kind {
                k if k == end => {
                    if pipe.cmds.is_empty() {
                        return Err(self.errorf(format!("missing value for {context}")));
                    }
                    for (i, c) in pipe.cmds.iter().enumerate().skip(1) {
                        if matches!(
                            c.args[0].kind,
                            ArgKind::Bool(_)
                                | ArgKind::Dot
                                | ArgKind::Nil
                                | ArgKind::Number(_)
                                | ArgKind::Str { .. }
                        ) {
                            return Err(self.errorf(format!(
                                "non executable command in pipeline stage {}",
                                i + 1
                            )));
                        }
                    }
                    return Ok(pipe);
                }
                Kind::Bool
                | Kind::CharConstant
                | Kind::Complex
                | Kind::Dot
                | Kind::Field
                | Kind::Identifier
                | Kind::Number
                | Kind::Nil
                | Kind::RawString
                | Kind::Str
                | Kind::Variable
                | Kind::LeftParen => {
                    self.backup();
                    let cmd = self.command()?;
                    pipe.cmds.push(cmd);
                }
                _ => return Err(self.unexpected(&t, context)),
            }
        }
    }

    fn command(&mut self) -> PResult<Cmd> {
        let pos = self.peek_non_space().pos;
        let mut cmd = Cmd {
            pos,
            args: Vec::new(),
        };
        loop {
            self.peek_non_space();
            if let Some(op) = self.operand()? {
                cmd.args.push(op);
            }
            let t = self.next();
            match t.kind {
                Kind::Space => continue,
                Kind::RightDelim | Kind::RightParen => self.backup(),
                Kind::Pipe => {}
                _ => return Err(self.unexpected(&t, "operand")),
            }
            break;
        }
        if cmd.args.is_empty() {
            return Err(self.errorf("empty command"));
        }
        Ok(cmd)
    }

    fn operand(&mut self) -> PResult<Option<Arg>> {
        let Some(node) = self.term()? else {
            return Ok(None);
        };
        if self.peek().kind != Kind::Field {
            return Ok(Some(node));
        }
        let pos = self.peek().pos;
        let mut fields = Vec::new();
        while self.peek().kind == Kind::Field {
            fields.push(self.next().val[1..].to_string());
        }
        Ok(Some(match node.kind {
            ArgKind::Field(mut id) => {
                id.extend(fields);
                Arg {
                    pos,
                    kind: ArgKind::Field(id),
                }
            }
            ArgKind::Variable(mut id) => {
                id.extend(fields);
                Arg {
                    pos,
                    kind: ArgKind::Variable(id),
                }
            }
            ArgKind::Bool(_)
            | ArgKind::Str { .. }
            | ArgKind::Number(_)
            | ArgKind::Nil
            | ArgKind::Dot => {
                let d = node.describe();
                return Err(self.errorf(format!("unexpected . after term {}", gofmt::quote(&d))));
            }
            _ => Arg {
                pos,
                kind: ArgKind::Chain(Box::new(node), fields),
            },
        }))
    }

    fn term(&mut self) -> PResult<Option<Arg>> {
        let t = self.next_non_space();
        let kind = match t.kind {
            Kind::Error => return Err(self.unexpected(&t, "operand")),
            Kind::Identifier => match Func::lookup(&t.val).filter(|f| f.in_dialect(self.dialect)) {
                Some(f) => ArgKind::Ident(f),
                None if UNSUPPORTED.contains(&t.val.as_str())
                    || (self.dialect == Dialect::Alertmanager
                        && UNSUPPORTED_ALERTMANAGER.contains(&t.val.as_str())) =>
                {
                    return Err(self.errorf(format!(
                        "function {} is not supported by ocx-sentinel",
                        gofmt::quote(&t.val)
                    )));
                }
                None => {
                    return Err(
                        self.errorf(format!("function {} not defined", gofmt::quote(&t.val)))
                    );
                }
            },
            Kind::Dot => ArgKind::Dot,
            Kind::Nil => ArgKind::Nil,
            Kind::Variable => {
                let id: Vec<String> = t.val.split('.').map(str::to_string).collect();
                if !self.vars.contains(&id[0]) {
                    return Err(self.errorf(format!("undefined variable {}", gofmt::quote(&id[0]))));
                }
                ArgKind::Variable(id)
            }
            Kind::Field => ArgKind::Field(t.val[1..].split('.').map(str::to_string).collect()),
            Kind::Bool => ArgKind::Bool(t.val == "true"),
            Kind::CharConstant | Kind::Complex => {
                return Err(self.errorf(format!(
                    "{} constants are not supported by ocx-sentinel",
                    if t.kind == Kind::Complex {
                        "complex"
                    } else {
                        "character"
                    }
                )));
            }
            Kind::Number => ArgKind::Number(self.number(&t.val)?),
            Kind::LeftParen => {
                let pipe = self.pipeline("parenthesized pipeline", Kind::RightParen)?;
                return Ok(Some(Arg {
                    pos: t.pos,
                    kind: ArgKind::Pipe(Box::new(pipe)),
                }));
            }
            Kind::Str | Kind::RawString => {
                let text = match unquote(&t.val) {
                    Some(s) => s,
                    None => return Err(self.errorf("invalid syntax")),
                };
                ArgKind::Str {
                    quoted: t.val.clone(),
                    text,
                }
            }
            _ => {
                self.backup();
                return Ok(None);
            }
        };
        Ok(Some(Arg { pos: t.pos, kind }))
    }

    fn number(&mut self, text: &str) -> PResult<Number> {
        let int = gofmt::parse_go_int(text);
        let mut float = int.map(|i| i as f64);
        if int.is_none() {
            match gofmt::parse_go_float(text) {
                Some(_) if !text.contains(['.', 'e', 'E', 'p', 'P']) => {
                    return Err(self.errorf(format!("integer overflow: {}", gofmt::quote(text))));
                }
                Some(f) => float = Some(f),
                None => {}
            }
        }
        if int.is_none() && float.is_none() {
            return Err(self.errorf(format!("illegal number syntax: {}", gofmt::quote(text))));
        }
        let int = int.or_else(|| {
            float
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
                .map(|f| f as i64)
        });
        Ok(Number {
            text: text.to_string(),
            int,
            float,
        })
    }
}

enum Item {
    Node(Node),
    End,
    Else(usize, bool),
}

/// `strconv.Unquote` for "…" and `…` literals.
pub(crate) fn unquote(s: &str) -> Option<String> {
    if let Some(raw) = s.strip_prefix('`') {
        return raw.strip_suffix('`').map(|r| r.replace('\r', ""));
    }
    let body = s.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'a' => out.push('\u{7}'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\u{b}'),
            '\\' => out.push('\\'),
            '"' => out.push('"'),
            '\'' => return None,
            'x' => {
                let h: String = chars.by_ref().take(2).collect();
                out.push(char::from(u8::from_str_radix(&h, 16).ok()?));
            }
            'u' | 'U' => {
                let n = if c == 'u' { 4 } else { 8 };
                let h: String = chars.by_ref().take(n).collect();
                out.push(char::from_u32(u32::from_str_radix(&h, 16).ok()?)?);
            }
            d @ '0'..='7' => {
                let rest: String = chars.by_ref().take(2).collect();
                let v = u32::from_str_radix(&format!("{d}{rest}"), 8).ok()?;
                out.push(char::from_u32(v).filter(|_| v < 256)?);
            }
            _ => return None,
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// Values and execution (Go 1.19 text/template/exec.go and funcs.go semantics).

#[derive(Debug)]
struct DataVal {
    labels: Rc<BTreeMap<String, String>>,
    external_labels: Rc<BTreeMap<String, String>>,
    external_url: Rc<str>,
    value: f64,
}

#[derive(Debug)]
struct SampleVal {
    labels: Rc<BTreeMap<String, String>>,
    value: f64,
}

/// Alertmanager's `template.Alert`, with the sample value ocx-sentinel adds.
#[derive(Debug)]
struct AlertVal {
    status: Rc<str>,
    labels: Rc<BTreeMap<String, String>>,
    annotations: Rc<BTreeMap<String, String>>,
    starts_at: i64,
    /// Go's zero time for a firing alert, as Alertmanager's data has it.
    ends_at: i64,
    generator_url: Rc<str>,
    fingerprint: Rc<str>,
    value: f64,
}

/// Alertmanager's `*template.Data`: what a notification template renders.
#[derive(Debug)]
struct NoteVal {
    receiver: Rc<str>,
    status: Rc<str>,
    alerts: Rc<Vec<Rc<AlertVal>>>,
    group_labels: Rc<BTreeMap<String, String>>,
    common_labels: Rc<BTreeMap<String, String>>,
    common_annotations: Rc<BTreeMap<String, String>>,
    external_url: Rc<str>,
}

#[derive(Debug, Clone)]
enum Val {
    /// Go's invalid `reflect.Value`: an untyped nil, prints `<no value>`.
    Invalid,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    /// `html/template.HTML` (from `safeHtml`): a string that is not a `string`.
    Html(Rc<str>),
    Map(Rc<BTreeMap<String, String>>),
    Data(Rc<DataVal>),
    Vector(Rc<Vec<Rc<SampleVal>>>),
    /// `*template.sample`; `None` is a nil pointer.
    Sample(Option<Rc<SampleVal>>),
    /// `*time.Time`, as Unix milliseconds.
    Time(i64),
    // Alertmanager's notification data and functions.
    /// `html/template.URL` (from `safeUrl`): a URL the HTML mode does not filter.
    Url(Rc<str>),
    /// `template.KV`: a label set with `SortedPairs`, `Names`, `Values` and `Remove`.
    Kv(Rc<BTreeMap<String, String>>),
    /// `template.Pairs`, from `SortedPairs`: `Names` and `Values`.
    Pairs(Rc<Vec<(String, String)>>),
    /// `template.Pair`: `Name` and `Value`.
    Pair(Rc<(String, String)>),
    /// `template.Strings` (with `Join`) when `named`, else `[]string`.
    Strings(Rc<Vec<String>>, bool),
    /// `template.Alerts` (with `Firing` and `Resolved`) when `named`, else `[]template.Alert`.
    Alerts(Rc<Vec<Rc<AlertVal>>>, bool),
    Alert(Rc<AlertVal>),
    Note(Rc<NoteVal>),
    /// `time.Time` in UTC, as Unix milliseconds.
    GoTime(i64),
    /// `time.Duration`, in nanoseconds.
    Duration(i64),
    /// `[]interface {}` (from `list` and `append`).
    List(Rc<Vec<Val>>),
    /// `map[string]interface {}` (from `dict`).
    Dict(Rc<BTreeMap<String, Val>>),
}

impl Val {
    fn str(s: &str) -> Val {
        Val::Str(Rc::from(s))
    }

    fn go_type(&self) -> &'static str {
        match self {
            Val::Invalid => "<nil>",
            Val::Bool(_) => "bool",
            Val::Int(_) => "int",
            Val::Float(_) => "float64",
            Val::Str(_) => "string",
            Val::Html(_) => "template.HTML",
            Val::Map(_) => "map[string]string",
            Val::Data(_) => DATA_TYPE,
            Val::Vector(_) => "template.queryResult",
            Val::Sample(_) => "*template.sample",
            Val::Time(_) => "*time.Time",
            Val::Url(_) => "template.URL",
            Val::Kv(_) => "template.KV",
            Val::Pairs(_) => "template.Pairs",
            Val::Pair(_) => "template.Pair",
            Val::Strings(_, true) => "template.Strings",
            Val::Strings(_, false) => "[]string",
            Val::Alerts(_, true) => "template.Alerts",
            Val::Alerts(_, false) => "[]template.Alert",
            Val::Alert(_) => "template.Alert",
            Val::Note(_) => "*template.Data",
            Val::GoTime(_) => "time.Time",
            Val::Duration(_) => "time.Duration",
            Val::List(_) => "[]interface {}",
            Val::Dict(_) => "map[string]interface {}",
        }
    }

    /// Go's `isTrue`.
    fn truth(&self) -> bool {
        match self {
            Val::Invalid => false,
            Val::Bool(b) => *b,
            Val::Int(i) => *i != 0,
            Val::Float(f) => *f != 0.0,
            Val::Str(s) | Val::Html(s) => !s.is_empty(),
            Val::Map(m) => !m.is_empty(),
            Val::Data(_) => true,
            Val::Vector(v) => !v.is_empty(),
            Val::Sample(s) => s.is_some(),
            Val::Time(_) => true,
            Val::Url(s) => !s.is_empty(),
            Val::Kv(m) => !m.is_empty(),
            Val::Pairs(p) => !p.is_empty(),
            Val::Strings(v, _) => !v.is_empty(),
            Val::Alerts(v, _) => !v.is_empty(),
            Val::List(v) => !v.is_empty(),
            Val::Dict(m) => !m.is_empty(),
            Val::Duration(d) => *d != 0,
            Val::Pair(_) | Val::Alert(_) | Val::Note(_) | Val::GoTime(_) => true,
        }
    }

    /// A collection's length, as `len` sees it.
    fn length(&self) -> Option<usize> {
        Some(match self {
            Val::Str(s) | Val::Html(s) | Val::Url(s) => s.len(),
            Val::Map(m) | Val::Kv(m) => m.len(),
            Val::Vector(v) => v.len(),
            Val::Pairs(p) => p.len(),
            Val::Strings(v, _) => v.len(),
            Val::Alerts(v, _) => v.len(),
            Val::List(v) => v.len(),
            Val::Dict(m) => m.len(),
            _ => return None,
        })
    }

    /// `fmt.Sprint` of the value (as the template prints it).
    fn print(&self) -> String {
        match self {
            Val::Invalid => "<no value>".into(),
            Val::Bool(b) => b.to_string(),
            Val::Int(i) => i.to_string(),
            Val::Float(f) => gofmt::format_v(*f),
            Val::Str(s) | Val::Html(s) => s.to_string(),
            Val::Map(m) => print_map(m),
            Val::Data(d) => format!(
                "{{{} {} {} {}}}",
                print_map(&d.labels),
                print_map(&d.external_labels),
                d.external_url,
                gofmt::format_v(d.value)
            ),
            Val::Vector(v) => {
                let items: Vec<String> = v.iter().map(|s| print_sample(s)).collect();
                format!("[{}]", items.join(" "))
            }
            Val::Sample(Some(s)) => print_sample(s),
            Val::Sample(None) => "<nil>".into(),
            Val::Time(ms) | Val::GoTime(ms) => gofmt::go_time_utc(*ms),
            Val::Url(s) => s.to_string(),
            // KV and Pairs are Stringers: `alertname=X, market=BTC-PERP`.
            Val::Kv(m) => notification::pairs_string(&notification::sorted_pairs(m)),
            Val::Pairs(p) => notification::pairs_string(p),
            Val::Pair(p) => format!("{{{} {}}}", p.0, p.1),
            Val::Strings(v, _) => format!("[{}]", v.join(" ")),
            Val::Alerts(v, _) => {
                let items: Vec<String> = v.iter().map(|a| print_alert(a)).collect();
                format!("[{}]", items.join(" "))
            }
            Val::Alert(a) => print_alert(a),
            Val::Note(n) => {
                let alerts: Vec<String> = n.alerts.iter().map(|a| print_alert(a)).collect();
                format!(
                    "&{{{} {} [{}] {} {} {} {}}}",
                    n.receiver,
                    n.status,
                    alerts.join(" "),
                    notification::pairs_string(&notification::sorted_pairs(&n.group_labels)),
                    notification::pairs_string(&notification::sorted_pairs(&n.common_labels)),
                    notification::pairs_string(&notification::sorted_pairs(&n.common_annotations)),
                    n.external_url
                )
            }
            Val::Duration(ns) => gofmt::go_duration(ns / 1_000_000),
            Val::List(v) => {
                let items: Vec<String> = v.iter().map(Val::print).collect();
                format!("[{}]", items.join(" "))
            }
            Val::Dict(m) => {
                let items: Vec<String> = m
                    .iter()
                    .map(|(k, v)| format!("{k}:{}", v.print()))
                    .collect();
                format!("map[{}]", items.join(" "))
            }
        }
    }

    /// A time's Unix milliseconds, for the `time.Time` methods.
    fn time_ms(&self) -> Option<i64> {
        match self {
            Val::Time(ms) | Val::GoTime(ms) => Some(*ms),
            _ => None,
        }
    }
}

/// `fmt.Sprint` of a `template.Alert` struct (its label sets print as their `String()`).
fn print_alert(a: &AlertVal) -> String {
    format!(
        "{{{} {} {} {} {} {} {} {}}}",
        a.status,
        notification::pairs_string(&notification::sorted_pairs(&a.labels)),
        notification::pairs_string(&notification::sorted_pairs(&a.annotations)),
        gofmt::go_time_utc(a.starts_at),
        gofmt::go_time_utc(a.ends_at),
        a.generator_url,
        a.fingerprint,
        gofmt::format_v(a.value)
    )
}

fn print_map(m: &BTreeMap<String, String>) -> String {
    let items: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    format!("map[{}]", items.join(" "))
}

fn print_sample(s: &SampleVal) -> String {
    format!("{{{} {}}}", print_map(&s.labels), gofmt::format_v(s.value))
}

/// An execution failure carrying Go's full message.
struct Fail(String);

type EResult<T> = Result<T, Fail>;

struct Exec<'t, 'd> {
    tmpl: &'t Template,
    data: &'d TemplateData<'d>,
    out: String,
    vars: Vec<(String, Val)>,
    at: Option<At<'t>>,
    env: Env<'t>,
    /// Nested `{{template}}` calls.
    depth: usize,
}

/// What a notification render adds to an execution; empty for a rule template.
#[derive(Default, Clone, Copy)]
struct Env<'t> {
    /// The rendered text's own definitions, looked up before the set's (they were parsed last).
    local: Option<&'t HashMap<String, Template>>,
    /// The named templates `{{template}}` may call.
    set: Option<&'t HashMap<String, Template>>,
    /// Escape printed values for HTML, as Go's `html/template` (in part; see `notification`).
    html: bool,
    /// What `now` returns.
    now_ms: i64,
}

/// How deep `{{template}}` calls may nest. Go allows 100000; each level here costs native stack
/// on a task's stack, and real notification templates nest a handful deep.
const MAX_TEMPLATE_DEPTH: usize = 100;

/// A function's own error, reported as "error calling f: …".
struct CallErr(String);

/// A slice's elements with their indexes, as `range` assigns them.
fn indexed(items: impl Iterator<Item = Val>) -> Vec<(Val, Val)> {
    items
        .enumerate()
        .map(|(i, v)| (Val::Int(i as i64), v))
        .collect()
}

impl<'t> Exec<'t, '_> {
    fn fail(&self, msg: impl std::fmt::Display) -> Fail {
        let name = &self.tmpl.name;
        let parse_name = &self.tmpl.parse_name;
        match self.at {
            None => Fail(format!("template: {name}: {msg}")),
            Some(at) => {
                let pos = at.pos();
                let before = &self.tmpl.text[..pos];
                let col = match before.rfind('\n') {
                    None => pos,
                    Some(nl) => pos - (nl + 1),
                };
                let line = 1 + before.matches('\n').count();
                Fail(format!(
                    "template: {parse_name}:{line}:{col}: executing {} at <{}>: {msg}",
                    gofmt::quote(name),
                    at.describe()
                ))
            }
        }
    }

    fn walk_list(&mut self, dot: &Val, nodes: &'t [Node]) -> EResult<()> {
        for n in nodes {
            self.walk(dot, n)?;
        }
        Ok(())
    }

    fn walk(&mut self, dot: &Val, node: &'t Node) -> EResult<()> {
        self.at = Some(At::Node(node));
        match node {
            Node::Text(t) => self.out.push_str(t),
            Node::Action { pipe, .. } => {
                let v = self.eval_pipeline(dot, pipe)?;
                if pipe.decl.is_empty() {
                    self.at = Some(At::Node(node));
                    if self.env.html {
                        notification::write_html(&mut self.out, &v);
                    } else {
                        let s = v.print();
                        self.out.push_str(&s);
                    }
                }
            }
            Node::Template { name, pipe, .. } => {
                let Some(callee) = self.lookup(name) else {
                    return Err(self.fail(format!("template {} not defined", gofmt::quote(name))));
                };
                let dot = match pipe {
                    Some(p) => self.eval_pipeline(dot, p)?,
                    None => Val::Invalid,
                };
                self.at = Some(At::Node(node));
                if self.depth + 1 >= MAX_TEMPLATE_DEPTH {
                    return Err(self.fail(format!(
                        "exceeded maximum template depth ({MAX_TEMPLATE_DEPTH})"
                    )));
                }
                // A called template sees only `$`, set to its dot.
                let vars = std::mem::replace(&mut self.vars, vec![("$".to_string(), dot.clone())]);
                let caller = std::mem::replace(&mut self.tmpl, callee);
                self.depth += 1;
                let r = self.walk_list(&dot, &callee.nodes);
                self.depth -= 1;
                self.tmpl = caller;
                self.vars = vars;
                self.at = Some(At::Node(node));
                r?;
            }
            Node::Control {
                kind,
                pipe,
                list,
                else_list,
                ..
            } => {
                let mark = self.vars.len();
                let r = self.walk_control(*kind, dot, node, pipe, list, else_list.as_deref());
                self.vars.truncate(mark);
                r?;
            }
        }
        Ok(())
    }

    /// A `{{template}}` target: the rendered text's own definitions first, then the set's.
    fn lookup(&self, name: &str) -> Option<&'t Template> {
        self.env
            .local
            .and_then(|l| l.get(name))
            .or_else(|| self.env.set.and_then(|s| s.get(name)))
    }

    fn walk_control(
        &mut self,
        kind: Control,
        dot: &Val,
        node: &'t Node,
        pipe: &'t Pipe,
        list: &'t [Node],
        else_list: Option<&'t [Node]>,
    ) -> EResult<()> {
        let val = self.eval_pipeline(dot, pipe)?;
        if kind != Control::Range {
            if val.truth() {
                let d = if kind == Control::With { &val } else { dot };
                return self.walk_list(d, list);
            }
            if let Some(e) = else_list {
                return self.walk_list(dot, e);
            }
            return Ok(());
        }
        self.at = Some(At::Node(node));
        let items: Vec<(Val, Val)> = match &val {
            // Go ranges over a map in key order.
            Val::Map(m) | Val::Kv(m) => m.iter().map(|(k, v)| (Val::str(k), Val::str(v))).collect(),
            Val::Vector(v) => v
                .iter()
                .enumerate()
                .map(|(i, s)| (Val::Int(i as i64), Val::Sample(Some(s.clone()))))
                .collect(),
            Val::Pairs(p) => indexed(p.iter().map(|p| Val::Pair(Rc::new(p.clone())))),
            Val::Strings(v, _) => indexed(v.iter().map(|s| Val::str(s))),
            Val::Alerts(v, _) => indexed(v.iter().map(|a| Val::Alert(a.clone()))),
            Val::List(v) => indexed(v.iter().cloned()),
            Val::Dict(m) => m.iter().map(|(k, v)| (Val::str(k), v.clone())).collect(),
            Val::Invalid => Vec::new(),
            other => return Err(self.fail(format!("range can't iterate over {}", other.print()))),
        };
        if items.is_empty() {
            if let Some(e) = else_list {
                return self.walk_list(dot, e);
            }
            return Ok(());
        }
        let mark = self.vars.len();
        for (index, elem) in items {
            let n = self.vars.len();
            if !pipe.decl.is_empty() {
                self.vars[n - 1].1 = elem.clone();
            }
            if pipe.decl.len() > 1 {
                self.vars[n - 2].1 = index;
            }
            self.walk_list(&elem, list)?;
            self.vars.truncate(mark);
        }
        Ok(())
    }

    fn eval_pipeline(&mut self, dot: &Val, pipe: &'t Pipe) -> EResult<Val> {
        self.at = Some(At::Pipe(pipe));
        let mut value: Option<Val> = None;
        for cmd in &pipe.cmds {
            value = Some(self.eval_command(dot, cmd, value)?);
        }
        let value = value.unwrap_or(Val::Invalid);
        for name in &pipe.decl {
            if pipe.is_assign {
                match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                    Some(slot) => slot.1 = value.clone(),
                    None => return Err(self.fail(format!("undefined variable: {name}"))),
                }
            } else {
                self.vars.push((name.clone(), value.clone()));
            }
        }
        Ok(value)
    }

    fn not_a_function(&self, cmd: &'t Cmd, final_: &Option<Val>) -> EResult<()> {
        if cmd.args.len() > 1 || final_.is_some() {
            return Err(self.fail(format!(
                "can't give argument to non-function {}",
                cmd.args[0].describe()
            )));
        }
        Ok(())
    }

    fn eval_command(&mut self, dot: &Val, cmd: &'t Cmd, final_: Option<Val>) -> EResult<Val> {
        let first = &cmd.args[0];
        match &first.kind {
            ArgKind::Field(id) => {
                self.at = Some(At::Arg(first));
                return self.eval_field_chain(dot, dot.clone(), id, &cmd.args, final_);
            }
            ArgKind::Chain(node, fields) => {
                self.at = Some(At::Arg(first));
                let recv = self.eval_arg(dot, PType::Any, node)?;
                self.at = Some(At::Arg(first));
                return self.eval_field_chain(dot, recv, fields, &cmd.args, final_);
            }
            ArgKind::Ident(f) => {
                return self.eval_function(dot, *f, first, At::Cmd(cmd), &cmd.args, final_);
            }
            ArgKind::Pipe(p) => {
                self.not_a_function(cmd, &final_)?;
                return self.eval_pipeline(dot, p);
            }
            ArgKind::Variable(id) => return self.eval_variable(dot, first, id, Some(cmd), final_),
            _ => {}
        }
        self.at = Some(At::Arg(first));
        self.not_a_function(cmd, &final_)?;
        match &first.kind {
            ArgKind::Bool(b) => Ok(Val::Bool(*b)),
            ArgKind::Dot => Ok(dot.clone()),
            ArgKind::Nil => Err(self.fail("nil is not a command")),
            ArgKind::Number(n) => self.ideal_constant(first, n),
            ArgKind::Str { text, .. } => Ok(Val::str(text)),
            _ => Err(self.fail(format!("can't evaluate command {}", first.describe()))),
        }
    }

    fn ideal_constant(&mut self, node: &'t Arg, n: &Number) -> EResult<Val> {
        self.at = Some(At::Arg(node));
        let hex = n.text.len() > 2
            && n.text.starts_with('0')
            && matches!(n.text.as_bytes()[1], b'x' | b'X')
            && !n.text.contains(['p', 'P']);
        match (n.float, n.int) {
            (Some(f), _) if !hex && n.text.contains(['.', 'e', 'E', 'p', 'P']) => Ok(Val::Float(f)),
            (_, Some(i)) => Ok(Val::Int(i)),
            _ => Err(self.fail(format!("{} overflows int", n.text))),
        }
    }

    fn eval_variable(
        &mut self,
        dot: &Val,
        node: &'t Arg,
        id: &[String],
        cmd: Option<&'t Cmd>,
        final_: Option<Val>,
    ) -> EResult<Val> {
        self.at = Some(At::Arg(node));
        let Some(value) = self
            .vars
            .iter()
            .rev()
            .find(|(n, _)| *n == id[0])
            .map(|(_, v)| v.clone())
        else {
            return Err(self.fail(format!("undefined variable: {}", id[0])));
        };
        let args: &'t [Arg] = cmd.map(|c| c.args.as_slice()).unwrap_or(&[]);
        if id.len() == 1 {
            if let Some(c) = cmd {
                self.not_a_function(c, &final_)?;
            } else if final_.is_some() {
                return Err(self.fail(format!(
                    "can't give argument to non-function {}",
                    node.describe()
                )));
            }
            return Ok(value);
        }
        self.eval_field_chain(dot, value, &id[1..], args, final_)
    }

    fn eval_field_chain(
        &mut self,
        dot: &Val,
        mut receiver: Val,
        idents: &[String],
        args: &'t [Arg],
        final_: Option<Val>,
    ) -> EResult<Val> {
        let n = idents.len();
        let mut final_ = final_;
        for (i, name) in idents.iter().enumerate() {
            // Only the last name gets the command's arguments (if it is a method, they are its).
            let (args, fin) = if i == n - 1 {
                (args, final_.take())
            } else {
                (&[][..], None)
            };
            receiver = self.eval_field(dot, name, args, fin, receiver)?;
        }
        Ok(receiver)
    }

    /// Go's `evalField`: a method of the receiver's type first, then a struct field or map key.
    fn eval_field(
        &mut self,
        dot: &Val,
        name: &str,
        args: &'t [Arg],
        final_: Option<Val>,
        receiver: Val,
    ) -> EResult<Val> {
        if let Some(m) = notification::Method::of(&receiver, name) {
            return self.call_method(dot, m, &receiver, args, final_);
        }
        let has_args = args.len() > 1 || final_.is_some();
        let found = match &receiver {
            Val::Invalid => return Ok(Val::Invalid),
            Val::Data(d) => match name {
                "Labels" => Some(Val::Map(d.labels.clone())),
                "ExternalLabels" => Some(Val::Map(d.external_labels.clone())),
                "ExternalURL" => Some(Val::Str(d.external_url.clone())),
                "Value" => Some(Val::Float(d.value)),
                _ => None,
            },
            Val::Sample(s) => {
                if !matches!(name, "Labels" | "Value") {
                    None
                } else {
                    let Some(s) = s else {
                        return Err(
                            self.fail(format!("nil pointer evaluating *template.sample.{name}"))
                        );
                    };
                    Some(if name == "Labels" {
                        Val::Map(s.labels.clone())
                    } else {
                        Val::Float(s.value)
                    })
                }
            }
            Val::Map(m) | Val::Kv(m) => {
                if has_args {
                    return Err(self.fail(format!("{name} is not a method but has arguments")));
                }
                return Ok(Val::str(m.get(name).map_or("", String::as_str)));
            }
            Val::Dict(m) => {
                if has_args {
                    return Err(self.fail(format!("{name} is not a method but has arguments")));
                }
                // missingkey=zero: the zero `interface{}` is nil.
                return Ok(m.get(name).cloned().unwrap_or(Val::Invalid));
            }
            Val::Pair(p) => match name {
                "Name" => Some(Val::str(&p.0)),
                "Value" => Some(Val::str(&p.1)),
                _ => None,
            },
            Val::Alert(a) => notification::alert_field(a, name),
            Val::Note(n) => notification::note_field(n, name),
            _ => None,
        };
        match found {
            Some(_) if has_args => Err(self.fail(format!(
                "{name} has arguments but cannot be invoked as function"
            ))),
            Some(v) => Ok(v),
            None => Err(self.fail(format!(
                "can't evaluate field {name} in type {}",
                receiver.go_type()
            ))),
        }
    }

    /// Go's `evalCall` for a method: arguments checked and converted as for a function.
    fn call_method(
        &mut self,
        dot: &Val,
        m: notification::Method,
        receiver: &Val,
        args: &'t [Arg],
        final_: Option<Val>,
    ) -> EResult<Val> {
        let args: &'t [Arg] = if args.is_empty() { args } else { &args[1..] };
        let params = m.params();
        let num_in = args.len() + usize::from(final_.is_some());
        if num_in != params.len() {
            return Err(self.fail(format!(
                "wrong number of args for {}: want {} got {num_in}",
                m.name(),
                params.len()
            )));
        }
        let mut argv = Vec::with_capacity(num_in);
        for (a, t) in args.iter().zip(params) {
            argv.push(self.eval_arg(dot, *t, a)?);
        }
        if let Some(fv) = final_ {
            argv.push(self.validate(fv, params[argv.len()])?);
        }
        m.call(receiver, &argv)
            .map_err(|CallErr(e)| self.fail(format!("error calling {}: {e}", m.name())))
    }

    /// Go's `validateType`: may the value be passed as a parameter of type `t`?
    fn validate(&self, v: Val, t: PType) -> EResult<Val> {
        match (&v, t) {
            (_, PType::Any | PType::Reflect) => Ok(v),
            (Val::Invalid, t) if t.can_be_nil() => Ok(match t {
                PType::Vector => Val::Vector(Rc::new(Vec::new())),
                PType::Sample => Val::Sample(None),
                PType::Strings => Val::Strings(Rc::new(Vec::new()), false),
                PType::List => Val::List(Rc::new(Vec::new())),
                _ => Val::Invalid,
            }),
            (Val::Invalid, t) => Err(self.fail(format!("invalid value; expected {}", t.go_name()))),
            (Val::Str(_), PType::Str)
            | (Val::Vector(_), PType::Vector)
            | (Val::Sample(_), PType::Sample)
            | (Val::Strings(..), PType::Strings)
            | (Val::GoTime(_), PType::Time)
            | (Val::List(_), PType::List) => Ok(v),
            _ => Err(self.fail(format!(
                "wrong type for value; expected {}; got {}",
                t.go_name(),
                v.go_type()
            ))),
        }
    }

    fn eval_arg(&mut self, dot: &Val, t: PType, arg: &'t Arg) -> EResult<Val> {
        self.at = Some(At::Arg(arg));
        match &arg.kind {
            ArgKind::Dot => return self.validate(dot.clone(), t),
            ArgKind::Nil => {
                if t.can_be_nil() {
                    return self.validate(Val::Invalid, t);
                }
                return Err(self.fail(format!("cannot assign nil to {}", t.go_name())));
            }
            ArgKind::Field(id) => {
                let v =
                    self.eval_field_chain(dot, dot.clone(), id, std::slice::from_ref(arg), None)?;
                return self.validate(v, t);
            }
            ArgKind::Variable(id) => {
                let v = self.eval_variable(dot, arg, id, None, None)?;
                return self.validate(v, t);
            }
            ArgKind::Pipe(p) => {
                let v = self.eval_pipeline(dot, p)?;
                return self.validate(v, t);
            }
            ArgKind::Ident(f) => {
                let v = self.eval_function(dot, *f, arg, At::Arg(arg), &[], None)?;
                return self.validate(v, t);
            }
            ArgKind::Chain(node, fields) => {
                let recv = self.eval_arg(dot, PType::Any, node)?;
                self.at = Some(At::Arg(arg));
                let v = self.eval_field_chain(dot, recv, fields, &[], None)?;
                return self.validate(v, t);
            }
            _ => {}
        }
        match (t, &arg.kind) {
            (PType::Str, ArgKind::Str { text, .. }) => Ok(Val::str(text)),
            (PType::Str, _) => Err(self.fail(format!("expected string; found {}", arg.describe()))),
            (PType::Any | PType::Reflect, ArgKind::Bool(b)) => Ok(Val::Bool(*b)),
            (PType::Any | PType::Reflect, ArgKind::Number(n)) => self.ideal_constant(arg, n),
            (PType::Any | PType::Reflect, ArgKind::Str { text, .. }) => Ok(Val::str(text)),
            _ => Err(self.fail(format!(
                "can't handle {} for arg of type {}",
                arg.describe(),
                t.go_name()
            ))),
        }
    }

    fn eval_function(
        &mut self,
        dot: &Val,
        f: Func,
        ident: &'t Arg,
        call_node: At<'t>,
        args: &'t [Arg],
        final_: Option<Val>,
    ) -> EResult<Val> {
        self.at = Some(At::Arg(ident));
        let args: &'t [Arg] = if args.is_empty() { args } else { &args[1..] };
        let (fixed, variadic) = f.params();
        let num_in = args.len() + usize::from(final_.is_some());
        match variadic {
            Some(_) if num_in < fixed.len() => {
                return Err(self.fail(format!(
                    "wrong number of args for {}: want at least {} got {}",
                    f.name(),
                    fixed.len(),
                    args.len()
                )));
            }
            None if num_in != fixed.len() => {
                return Err(self.fail(format!(
                    "wrong number of args for {}: want {} got {num_in}",
                    f.name(),
                    fixed.len()
                )));
            }
            _ => {}
        }
        let param = |i: usize| fixed.get(i).copied().or(variadic).unwrap_or(PType::Any);
        // and/or evaluate their arguments lazily and return one of them.
        if matches!(f, Func::And | Func::Or) {
            let want = f == Func::Or;
            let mut v = Val::Invalid;
            for a in args {
                v = self.eval_arg(dot, PType::Reflect, a)?;
                if v.truth() == want {
                    return Ok(v);
                }
            }
            if let Some(fv) = final_ {
                v = fv;
            }
            return Ok(v);
        }
        let mut argv = Vec::with_capacity(num_in);
        for (i, a) in args.iter().enumerate() {
            argv.push(self.eval_arg(dot, param(i), a)?);
        }
        if let Some(fv) = final_ {
            let v = self.validate(fv, param(argv.len()))?;
            argv.push(v);
        }
        match self.call(f, argv) {
            Ok(v) => Ok(v),
            Err(CallErr(e)) => {
                self.at = Some(call_node);
                Err(self.fail(format!("error calling {}: {e}", f.name())))
            }
        }
    }

    fn call(&mut self, f: Func, a: Vec<Val>) -> Result<Val, CallErr> {
        let s = |v: &Val| match v {
            Val::Str(s) => s.to_string(),
            _ => String::new(),
        };
        Ok(match f {
            Func::And | Func::Or => Val::Invalid,
            Func::Not => Val::Bool(!a[0].truth()),
            Func::Eq => Val::Bool(eq(&a[0], &a[1..])?),
            Func::Ne => Val::Bool(!eq(&a[0], &a[1..2])?),
            Func::Lt => Val::Bool(lt(&a[0], &a[1])?),
            Func::Le => Val::Bool(le(&a[0], &a[1])?),
            Func::Gt => Val::Bool(!le(&a[0], &a[1])?),
            Func::Ge => Val::Bool(!lt(&a[0], &a[1])?),
            Func::Len => Val::Int(match (&a[0], a[0].length()) {
                (_, Some(n)) => n as i64,
                (Val::Invalid, None) => return Err(CallErr("len of nil pointer".into())),
                (other, None) => return Err(CallErr(format!("len of type {}", other.go_type()))),
            }),
            Func::Index => index(&a[0], &a[1..])?,
            Func::Print => Val::str(&sprint(&a, false)),
            Func::Println => Val::str(&sprint(&a, true)),
            Func::Printf => Val::str(&sprintf(&s(&a[0]), &a[1..])),
            Func::Urlquery => {
                let text = match a.as_slice() {
                    [Val::Str(x)] => x.to_string(),
                    _ => sprint(&a, false),
                };
                Val::str(&query_escape(&text))
            }
            Func::Humanize => Val::str(&humanize(to_float(&a[0])?)),
            Func::Humanize1024 => Val::str(&humanize1024(to_float(&a[0])?)),
            Func::HumanizeDuration => Val::str(&humanize_duration(to_float(&a[0])?)),
            Func::HumanizePercentage => Val::str(&format!(
                "{}%",
                gofmt::format_g(to_float(&a[0])? * 100.0, Some(4))
            )),
            Func::HumanizeTimestamp => {
                let v = to_float(&a[0])?;
                if v.is_nan() || v.is_infinite() {
                    Val::str(&gofmt::format_g(v, Some(4)))
                } else {
                    Val::str(&gofmt::go_time_utc(float_to_ms(v)?))
                }
            }
            Func::ToTime => {
                let v = to_float(&a[0])?;
                if v.is_nan() || v.is_infinite() {
                    return Err(CallErr("value is NaN or Inf".into()));
                }
                Val::Time(float_to_ms(v)?)
            }
            Func::Title => Val::str(&match self.tmpl.dialect {
                Dialect::Prometheus => title(&s(&a[0])),
                Dialect::Alertmanager => notification::title_case(&s(&a[0])),
            }),
            Func::ToUpper => Val::str(&s(&a[0]).chars().map(simple_upper).collect::<String>()),
            Func::ToLower => Val::str(&s(&a[0]).chars().map(simple_lower).collect::<String>()),
            Func::ReReplaceAll => {
                let pattern = s(&a[0]);
                let re = regex::Regex::new(&pattern).map_err(|e| {
                    CallErr(format!(
                        "regexp: Compile({}): {}",
                        backquote(&pattern),
                        first_line(&e.to_string())
                    ))
                })?;
                Val::str(&re.replace_all(&s(&a[2]), s(&a[1]).as_str()))
            }
            Func::Match => {
                let re = regex::Regex::new(&s(&a[0])).map_err(|e| {
                    CallErr(format!(
                        "error parsing regexp: {}",
                        first_line(&e.to_string())
                    ))
                })?;
                Val::Bool(re.is_match(&s(&a[1])))
            }
            Func::StripPort => {
                let hp = s(&a[0]);
                Val::str(&split_host_port(&hp).map_or(hp.clone(), |(h, _)| h))
            }
            Func::StripDomain => Val::str(&strip_domain(&s(&a[0]))),
            Func::ParseDuration => {
                let d = s(&a[0]);
                let ms = parse_model_duration(&d).map_err(CallErr)?;
                Val::Float(ms as f64 / 1000.0)
            }
            Func::SafeHtml => Val::Html(Rc::from(s(&a[0]).as_str())),
            Func::GraphLink => Val::str(&format!(
                "/graph?g0.expr={}&g0.tab=0",
                query_escape(&s(&a[0]))
            )),
            Func::TableLink => Val::str(&format!(
                "/graph?g0.expr={}&g0.tab=1",
                query_escape(&s(&a[0]))
            )),
            Func::ExternalUrl => Val::str(self.data.external_url),
            Func::PathPrefix => Val::str(url_path(self.data.external_url)),
            Func::Query => {
                let Some(q) = self.data.query else {
                    return Err(CallErr("queries are not available here".into()));
                };
                let result = q.query(&s(&a[0])).map_err(CallErr)?;
                Val::Vector(Rc::new(
                    result
                        .into_iter()
                        .map(|s| {
                            Rc::new(SampleVal {
                                labels: Rc::new(s.labels),
                                value: s.value,
                            })
                        })
                        .collect(),
                ))
            }
            Func::First => match &a[0] {
                Val::Vector(v) if !v.is_empty() => Val::Sample(Some(v[0].clone())),
                _ => return Err(CallErr("first() called on vector with no elements".into())),
            },
            Func::Label => match &a[1] {
                Val::Sample(Some(smp)) => {
                    Val::str(smp.labels.get(&s(&a[0])).map_or("", String::as_str))
                }
                _ => return Err(CallErr(NIL_DEREF.into())),
            },
            Func::Value => match &a[0] {
                Val::Sample(Some(smp)) => Val::Float(smp.value),
                _ => return Err(CallErr(NIL_DEREF.into())),
            },
            Func::StrValue => match &a[0] {
                Val::Sample(Some(smp)) => {
                    Val::str(smp.labels.get("__value__").map_or("", String::as_str))
                }
                _ => return Err(CallErr(NIL_DEREF.into())),
            },
            Func::SortByLabel => {
                let label = s(&a[0]);
                let mut v: Vec<Rc<SampleVal>> = match &a[1] {
                    Val::Vector(v) => v.as_ref().clone(),
                    _ => Vec::new(),
                };
                v.sort_by(|x, y| {
                    let get = |s: &SampleVal| s.labels.get(&label).cloned().unwrap_or_default();
                    get(x).cmp(&get(y))
                });
                Val::Vector(Rc::new(v))
            }
            Func::TrimSpace => Val::str(s(&a[0]).trim()),
            Func::Join => match &a[1] {
                Val::Strings(v, _) => Val::str(&v.join(&s(&a[0]))),
                _ => Val::str(""),
            },
            Func::SafeUrl => Val::Url(Rc::from(s(&a[0]).as_str())),
            Func::UrlUnescape => {
                Val::str(&notification::query_unescape(&s(&a[0])).map_err(CallErr)?)
            }
            Func::StringSlice => Val::Strings(Rc::new(a.iter().map(&s).collect()), false),
            Func::Date => match &a[1] {
                Val::GoTime(ms) => Val::str(&gofmt::go_time_format(*ms, &s(&a[0]))),
                _ => Val::Invalid,
            },
            Func::Now => Val::GoTime(self.env.now_ms),
            Func::Since => match &a[0] {
                Val::GoTime(ms) => Val::Duration((self.env.now_ms - ms).saturating_mul(1_000_000)),
                _ => Val::Invalid,
            },
            Func::ToJson => Val::str(&notification::to_json(&a[0])?),
            Func::Base64Encode => Val::str(&notification::base64_url_encode(s(&a[0]).as_bytes())),
            Func::Base64Decode => {
                Val::str(&notification::base64_url_decode(&s(&a[0])).map_err(CallErr)?)
            }
            Func::List => Val::List(Rc::new(a)),
            Func::Append => {
                let mut v = match &a[0] {
                    Val::List(l) => l.as_ref().clone(),
                    _ => Vec::new(),
                };
                v.extend(a[1..].iter().cloned());
                Val::List(Rc::new(v))
            }
            Func::Dict => {
                if !a.len().is_multiple_of(2) {
                    return Err(CallErr("dict requires an even number of arguments".into()));
                }
                let mut m = BTreeMap::new();
                for kv in a.chunks(2) {
                    let Val::Str(k) = &kv[0] else {
                        return Err(CallErr("dict keys must be strings".into()));
                    };
                    m.insert(k.to_string(), kv[1].clone());
                }
                Val::Dict(Rc::new(m))
            }
        })
    }
}

const NIL_DEREF: &str = "runtime error: invalid memory address or nil pointer dereference";

fn first_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn backquote(s: &str) -> String {
    if s.contains('`') {
        gofmt::quote(s)
    } else {
        format!("`{s}`")
    }
}

/// Go's `basicKind` classes for comparisons.
#[derive(PartialEq, Eq, Clone, Copy)]
enum BasicKind {
    Bool,
    Int,
    Float,
    Str,
}

fn basic_kind(v: &Val) -> Option<BasicKind> {
    match v {
        Val::Bool(_) => Some(BasicKind::Bool),
        // A `time.Duration` is an int64 underneath, as Go's reflection sees it.
        Val::Int(_) | Val::Duration(_) => Some(BasicKind::Int),
        Val::Float(_) => Some(BasicKind::Float),
        Val::Str(_) | Val::Html(_) | Val::Url(_) => Some(BasicKind::Str),
        _ => None,
    }
}

const BAD_COMPARISON_TYPE: &str = "invalid type for comparison";
const BAD_COMPARISON: &str = "incompatible types for comparison";

/// Maps and slices, which Go cannot compare.
fn uncomparable(v: &Val) -> bool {
    matches!(
        v,
        Val::Map(_)
            | Val::Vector(_)
            | Val::Kv(_)
            | Val::Pairs(_)
            | Val::Strings(..)
            | Val::Alerts(..)
            | Val::List(_)
            | Val::Dict(_)
    )
}

fn eq(a1: &Val, rest: &[Val]) -> Result<bool, CallErr> {
    if uncomparable(a1) {
        return Err(CallErr(format!(
            "uncomparable type {}: {}",
            a1.go_type(),
            a1.print()
        )));
    }
    if rest.is_empty() {
        return Err(CallErr("missing argument for comparison".into()));
    }
    let k1 = basic_kind(a1);
    for a in rest {
        let k2 = basic_kind(a);
        let truth = if k1 != k2 {
            if !matches!(a1, Val::Invalid) && !matches!(a, Val::Invalid) {
                return Err(CallErr(BAD_COMPARISON.into()));
            }
            false
        } else {
            match (a1, a) {
                (Val::Bool(x), Val::Bool(y)) => x == y,
                (Val::Int(x) | Val::Duration(x), Val::Int(y) | Val::Duration(y)) => x == y,
                (Val::Float(x), Val::Float(y)) => x == y,
                (
                    Val::Str(x) | Val::Html(x) | Val::Url(x),
                    Val::Str(y) | Val::Html(y) | Val::Url(y),
                ) => x == y,
                (Val::Invalid, Val::Invalid) => true,
                (Val::Invalid, _) | (_, Val::Invalid) => false,
                (Val::Map(_), _) | (_, Val::Map(_)) => {
                    return Err(CallErr(format!(
                        "uncomparable type map[string]string: {}",
                        a.print()
                    )));
                }
                (Val::Vector(_), _) | (_, Val::Vector(_)) => {
                    return Err(CallErr(format!(
                        "uncomparable type template.queryResult: {}",
                        a.print()
                    )));
                }
                (Val::Sample(x), Val::Sample(y)) => match (x, y) {
                    (Some(x), Some(y)) => Rc::ptr_eq(x, y),
                    (None, None) => true,
                    _ => false,
                },
                (Val::Time(x), Val::Time(y)) | (Val::GoTime(x), Val::GoTime(y)) => x == y,
                (Val::Data(x), Val::Data(y)) => Rc::ptr_eq(x, y),
                (Val::Pair(x), Val::Pair(y)) => x == y,
                (a, _) | (_, a) if uncomparable(a) => {
                    return Err(CallErr(format!(
                        "uncomparable type {}: {}",
                        a.go_type(),
                        a.print()
                    )));
                }
                _ => false,
            }
        };
        if truth {
            return Ok(true);
        }
    }
    Ok(false)
}

fn lt(a1: &Val, a2: &Val) -> Result<bool, CallErr> {
    let k1 = basic_kind(a1).ok_or_else(|| CallErr(BAD_COMPARISON_TYPE.into()))?;
    let k2 = basic_kind(a2).ok_or_else(|| CallErr(BAD_COMPARISON_TYPE.into()))?;
    if k1 != k2 {
        return Err(CallErr(BAD_COMPARISON.into()));
    }
    Ok(match (a1, a2) {
        (Val::Int(x) | Val::Duration(x), Val::Int(y) | Val::Duration(y)) => x < y,
        (Val::Float(x), Val::Float(y)) => x < y,
        (Val::Str(x) | Val::Html(x) | Val::Url(x), Val::Str(y) | Val::Html(y) | Val::Url(y)) => {
            x < y
        }
        _ => return Err(CallErr(BAD_COMPARISON_TYPE.into())),
    })
}

fn le(a1: &Val, a2: &Val) -> Result<bool, CallErr> {
    if lt(a1, a2)? {
        return Ok(true);
    }
    eq(a1, std::slice::from_ref(a2))
}

fn index(item: &Val, idx: &[Val]) -> Result<Val, CallErr> {
    let mut item = item.clone();
    for i in idx {
        item = match (&item, i) {
            (Val::Invalid, _) => return Err(CallErr("index of untyped nil".into())),
            (Val::Map(m) | Val::Kv(m), Val::Str(k)) => {
                Val::str(m.get(k.as_ref()).map_or("", String::as_str))
            }
            (Val::Map(_) | Val::Kv(_), Val::Invalid) => Val::str(""),
            (Val::Dict(m), Val::Str(k)) => m.get(k.as_ref()).cloned().unwrap_or(Val::Invalid),
            (Val::Dict(_), Val::Invalid) => Val::Invalid,
            (Val::Map(_) | Val::Kv(_) | Val::Dict(_), other) => {
                return Err(CallErr(format!(
                    "value has type {}; should be string",
                    other.go_type()
                )));
            }
            (Val::Vector(v), Val::Int(n)) => {
                match usize::try_from(*n).ok().and_then(|n| v.get(n)) {
                    Some(s) => Val::Sample(Some(s.clone())),
                    None => return Err(CallErr(format!("index out of range: {n}"))),
                }
            }
            (Val::Pairs(_) | Val::Strings(..) | Val::Alerts(..) | Val::List(_), Val::Int(n)) => {
                let n = *n;
                let at = usize::try_from(n).ok();
                let got = match &item {
                    Val::Pairs(p) => at
                        .and_then(|i| p.get(i))
                        .map(|p| Val::Pair(Rc::new(p.clone()))),
                    Val::Strings(v, _) => at.and_then(|i| v.get(i)).map(|s| Val::str(s)),
                    Val::Alerts(v, _) => at.and_then(|i| v.get(i)).map(|a| Val::Alert(a.clone())),
                    Val::List(v) => at.and_then(|i| v.get(i)).cloned(),
                    _ => None,
                };
                match got {
                    Some(v) => v,
                    None => return Err(CallErr(format!("index out of range: {n}"))),
                }
            }
            (
                Val::Vector(_) | Val::Pairs(_) | Val::Strings(..) | Val::Alerts(..) | Val::List(_),
                _,
            ) => return Err(CallErr("cannot index slice/array with nil".into())),
            (other, _) => {
                return Err(CallErr(format!(
                    "can't index item of type {}",
                    other.go_type()
                )));
            }
        };
    }
    Ok(item)
}

/// `fmt.Sprint` (spaces between operands when neither is a string) or `fmt.Sprintln`.
fn sprint(args: &[Val], ln: bool) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        let is_str = |v: &Val| matches!(v, Val::Str(_) | Val::Html(_) | Val::Url(_));
        if i > 0 && (ln || (!is_str(a) && !is_str(&args[i - 1]))) {
            out.push(' ');
        }
        out.push_str(&format_arg(a, 'v', &Spec::default()));
    }
    if ln {
        out.push('\n');
    }
    out
}

#[derive(Default, Clone)]
struct Spec {
    minus: bool,
    plus: bool,
    zero: bool,
    space: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

fn pad(s: String, spec: &Spec, numeric: bool) -> String {
    let Some(w) = spec.width else { return s };
    let n = s.chars().count();
    if n >= w {
        return s;
    }
    let fill = w - n;
    if spec.minus {
        return format!("{s}{}", " ".repeat(fill));
    }
    if spec.zero && numeric {
        let (sign, digits) = match s.strip_prefix(['-', '+']) {
            Some(rest) => (&s[..1], rest),
            None => ("", s.as_str()),
        };
        if digits.starts_with(|c: char| c.is_ascii_digit()) {
            return format!("{sign}{}{digits}", "0".repeat(fill));
        }
    }
    format!("{}{s}", " ".repeat(fill))
}

fn bad_verb(verb: char, v: &Val) -> String {
    match v {
        Val::Invalid => format!("%!{verb}(<nil>)"),
        _ => format!("%!{verb}({}={})", v.go_type(), v.print()),
    }
}

fn sign_float(s: String, spec: &Spec) -> String {
    if !s.starts_with('-') && s != "NaN" {
        if spec.plus && !s.starts_with('+') {
            return format!("+{s}");
        }
        if spec.space && !s.starts_with('+') {
            return format!(" {s}");
        }
    }
    s
}

/// One `%verb` of Go's fmt for our value types.
fn format_arg(v: &Val, verb: char, spec: &Spec) -> String {
    match (v, verb) {
        (Val::Float(f), 'v' | 'g' | 'G') => {
            let s = gofmt::format_g(*f, spec.prec);
            let s = if verb == 'G' {
                s.to_uppercase().replace("INF", "Inf").replace("NAN", "NaN")
            } else {
                s
            };
            pad(sign_float(s, spec), spec, true)
        }
        (Val::Float(f), 'f' | 'F') => pad(
            sign_float(gofmt::format_f(*f, spec.prec.unwrap_or(6)), spec),
            spec,
            true,
        ),
        (Val::Float(f), 'e' | 'E') => pad(
            sign_float(
                gofmt::format_e(*f, Some(spec.prec.unwrap_or(6)), verb == 'E'),
                spec,
            ),
            spec,
            true,
        ),
        (Val::Int(i), 'v' | 'd') => {
            let s = if spec.plus && *i >= 0 {
                format!("+{i}")
            } else {
                i.to_string()
            };
            pad(s, spec, true)
        }
        (Val::Int(i), 'x') => pad(format!("{i:x}"), spec, true),
        (Val::Int(i), 'X') => pad(format!("{i:X}"), spec, true),
        (Val::Int(i), 'o') => pad(format!("{i:o}"), spec, true),
        (Val::Int(i), 'b') => pad(format!("{i:b}"), spec, true),
        (Val::Str(s) | Val::Html(s) | Val::Url(s), 'v' | 's') => {
            let s: String = match spec.prec {
                Some(p) => s.chars().take(p).collect(),
                None => s.to_string(),
            };
            pad(s, spec, false)
        }
        (Val::Str(s) | Val::Html(s) | Val::Url(s), 'q') => pad(gofmt::quote(s), spec, false),
        (Val::Str(s) | Val::Html(s) | Val::Url(s), 'x') => {
            pad(s.bytes().map(|b| format!("{b:02x}")).collect(), spec, false)
        }
        (Val::Str(s) | Val::Html(s) | Val::Url(s), 'X') => {
            pad(s.bytes().map(|b| format!("{b:02X}")).collect(), spec, false)
        }
        (Val::Bool(b), 'v' | 't') => pad(b.to_string(), spec, false),
        (Val::Invalid, 'v') => pad("<nil>".into(), spec, false),
        (Val::Duration(ns), 'd') => pad(ns.to_string(), spec, true),
        (
            Val::Map(_)
            | Val::Data(_)
            | Val::Vector(_)
            | Val::Sample(_)
            | Val::Time(_)
            | Val::Kv(_)
            | Val::Pairs(_)
            | Val::Pair(_)
            | Val::Strings(..)
            | Val::Alerts(..)
            | Val::Alert(_)
            | Val::Note(_)
            | Val::GoTime(_)
            | Val::Duration(_)
            | Val::List(_)
            | Val::Dict(_),
            'v' | 's',
        ) => pad(v.print(), spec, false),
        _ => bad_verb(verb, v),
    }
}

/// Go's `fmt.Sprintf` for the verbs templates use: `%s %d %f %.Nf %v %g %e %q %x %t %%`, with
/// flags and width; mismatches render as Go does (`%!d(float64=1.5)`).
fn sprintf(format: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut next = 0usize;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&f) = chars.peek() {
            match f {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                '0' => spec.zero = true,
                ' ' => spec.space = true,
                '#' => {}
                _ => break,
            }
            chars.next();
        }
        let mut width = String::new();
        while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            chars.next();
        }
        spec.width = width.parse().ok();
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                p.push(d);
                chars.next();
            }
            spec.prec = Some(p.parse().unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        match args.get(next) {
            Some(a) => out.push_str(&format_arg(a, verb, &spec)),
            None => {
                let _ = write!(out, "%!{verb}(MISSING)");
            }
        }
        next += 1;
    }
    if next < args.len() {
        out.push_str("%!(EXTRA ");
        let extra: Vec<String> = args[next..]
            .iter()
            .map(|a| match a {
                Val::Invalid => "<nil>".to_string(),
                _ => format!("{}={}", a.go_type(), a.print()),
            })
            .collect();
        out.push_str(&extra.join(", "));
        out.push(')');
    }
    out
}

/// Prometheus's `convertToFloat`.
fn to_float(v: &Val) -> Result<f64, CallErr> {
    match v {
        Val::Float(f) => Ok(*f),
        Val::Int(i) => Ok(*i as f64),
        // prometheus/common's `ConvertToFloat`: a duration is its seconds.
        Val::Duration(ns) => Ok(*ns as f64 / 1e9),
        Val::Str(s) => gofmt::parse_go_float(s).ok_or_else(|| {
            let why = if s.parse::<f64>().is_ok_and(f64::is_infinite) {
                "value out of range"
            } else {
                "invalid syntax"
            };
            CallErr(format!(
                "strconv.ParseFloat: parsing {}: {why}",
                gofmt::quote(s)
            ))
        }),
        other => Err(CallErr(format!(
            "can't convert {} to float",
            other.go_type()
        ))),
    }
}

/// Prometheus's `floatToTime`, truncated to milliseconds as `model.Time` is.
fn float_to_ms(v: f64) -> Result<i64, CallErr> {
    let ns = v * 1e9;
    if ns > i64::MAX as f64 || ns < i64::MIN as f64 {
        return Err(CallErr(format!(
            "{} cannot be represented as a nanoseconds timestamp since it overflows int64",
            gofmt::format_v(v)
        )));
    }
    Ok((ns as i64) / 1_000_000)
}

/// Prometheus's `humanize`: SI prefixes, four significant digits.
pub fn humanize(mut v: f64) -> String {
    if v == 0.0 || v.is_nan() || v.is_infinite() {
        return gofmt::format_g(v, Some(4));
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", gofmt::format_g(v, Some(4)))
}

/// Prometheus's `humanize1024`: binary prefixes.
pub fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || v.is_nan() || v.is_infinite() {
        return gofmt::format_g(v, Some(4));
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", gofmt::format_g(v, Some(4)))
}

/// Prometheus's `humanizeDuration` (seconds in, `1d 2h 3m 4s` out).
pub fn humanize_duration(mut v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return gofmt::format_g(v, Some(4));
    }
    if v == 0.0 {
        return format!("{}s", gofmt::format_g(v, Some(4)));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let d = v as i64;
        let (s, m, h, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86_400);
        if days != 0 {
            return format!("{sign}{days}d {h}h {m}m {s}s");
        }
        if h != 0 {
            return format!("{sign}{h}h {m}m {s}s");
        }
        if m != 0 {
            return format!("{sign}{m}m {s}s");
        }
        return format!("{sign}{}s", gofmt::format_g(v, Some(4)));
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", gofmt::format_g(v, Some(4)))
}

/// Go's `strings.Title`.
fn title(s: &str) -> String {
    let is_sep = |c: char| {
        if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else if c.is_alphabetic() || c.is_numeric() {
            false
        } else {
            c.is_whitespace()
        }
    };
    let mut prev = ' ';
    s.chars()
        .map(|c| {
            let out = if is_sep(prev) { simple_upper(c) } else { c };
            prev = c;
            out
        })
        .collect()
}

/// Go's one-rune `unicode.ToUpper` (Rust's full mapping can yield several chars).
fn simple_upper(c: char) -> char {
    let mut it = c.to_uppercase();
    match (it.next(), it.next()) {
        (Some(u), None) => u,
        _ => c,
    }
}

fn simple_lower(c: char) -> char {
    let mut it = c.to_lowercase();
    match (it.next(), it.next()) {
        (Some(l), None) => l,
        _ => c,
    }
}

/// Go's `net.SplitHostPort`, enough for `stripPort`/`stripDomain`.
fn split_host_port(hp: &str) -> Option<(String, String)> {
    if let Some(rest) = hp.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':')?;
        return Some((host.to_string(), port.to_string()));
    }
    let (host, port) = hp.rsplit_once(':')?;
    if host.contains(':') {
        return None;
    }
    Some((host.to_string(), port.to_string()))
}

fn strip_domain(hp: &str) -> String {
    let (host, port) = split_host_port(hp).unwrap_or_else(|| (hp.to_string(), String::new()));
    if host.parse::<std::net::IpAddr>().is_ok() {
        return hp.to_string();
    }
    let short = host.split('.').next().unwrap_or("").to_string();
    if port.is_empty() {
        short
    } else if short.contains(':') {
        format!("[{short}]:{port}")
    } else {
        format!("{short}:{port}")
    }
}

/// Go's `url.QueryEscape`.
fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// The path of a URL (`pathPrefix`).
fn url_path(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    path.split(['?', '#']).next().unwrap_or("")
}

/// Prometheus's `model.ParseDuration`, as milliseconds (`parseDuration`).
fn parse_model_duration(s: &str) -> Result<i64, String> {
    if s.is_empty() {
        return Err("empty duration string".into());
    }
    match crate::config::parse_duration(s) {
        Ok(d) if s.trim() == s => Ok(d.as_millis() as i64),
        _ => Err(format!("not a valid duration string: {}", gofmt::quote(s))),
    }
}

#[cfg(test)]
mod tests;
