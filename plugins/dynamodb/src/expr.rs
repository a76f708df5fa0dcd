//! DynamoDB expressions: a tokenizer and a small recursive-descent parser for condition,
//! filter, key-condition, update and projection expressions, and their evaluation.
//!
//! Parsing resolves `#name` and `:value` placeholders immediately and records which ones
//! were used, so a request can refuse unused or undefined placeholders exactly as DynamoDB
//! does. Bare attribute names that are DynamoDB reserved words are refused too.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use crate::error::DdbError;
use crate::number;
use crate::value::AttrValue;

const RESERVED: &str = include_str!("reserved_words.txt");

/// Longest expression string DynamoDB accepts, in bytes, for each of the five kinds (AWS
/// quota "expression parameters": 4 KB). Measured on the raw text, before placeholders are
/// substituted. Besides matching AWS, it bounds every other cost of an expression.
pub const MAX_EXPRESSION_BYTES: usize = 4096;
/// Most operators and functions one expression may use (AWS quota: 300). Comparators,
/// `AND`, `OR`, `NOT`, `BETWEEN`, `IN`, functions and SET's `+`/`-` each count once;
/// parentheses, commas and SET's `=` do not. Every level of nesting the grammar allows,
/// bar redundant parentheses (refused), costs one of them, so this also bounds the depth
/// of every parsed tree, and with it every recursion over one (evaluation, drop).
pub const MAX_OPERATORS: usize = 300;
/// Most operands of `IN` (AWS quota: 100).
pub const MAX_IN_OPERANDS: usize = 100;
/// Most levels of a document path such as `a.b[2].c` (AWS quota: 32).
pub const MAX_PATH_DEPTH: usize = 32;
/// Deepest nesting of update functions the parser keeps open. The parser itself never
/// recurses (conditions and operands are read with explicit stacks), but the trees it
/// builds are recursed over later (evaluation, drop); each nested function already counts
/// against [`MAX_OPERATORS`], and this is the parser's own guard on top, so that no future
/// change to what counts can let a tree grow deep. One more than [`MAX_OPERATORS`], so it
/// never refuses an expression AWS accepts. The `stack_*` unit tests prove that the
/// deepest trees the limits let through are evaluated and dropped well within a thread's
/// stack when unoptimised.
pub const MAX_NESTING: usize = MAX_OPERATORS + 1;

/// Whether `word` is one of DynamoDB's 573 reserved words (case-insensitive).
pub fn is_reserved(word: &str) -> bool {
    static SET: OnceLock<BTreeSet<&'static str>> = OnceLock::new();
    let set = SET.get_or_init(|| RESERVED.split_whitespace().collect());
    set.contains(word.to_ascii_uppercase().as_str())
}

/// Which expression a message is about (AWS names it in every error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `ConditionExpression`.
    Condition,
    /// `FilterExpression`.
    Filter,
    /// `KeyConditionExpression`.
    KeyCondition,
    /// `UpdateExpression`.
    Update,
    /// `ProjectionExpression`.
    Projection,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Condition => "ConditionExpression",
            Kind::Filter => "FilterExpression",
            Kind::KeyCondition => "KeyConditionExpression",
            Kind::Update => "UpdateExpression",
            Kind::Projection => "ProjectionExpression",
        }
    }
}

/// One step of a document path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathElem {
    /// A map key or top-level attribute name.
    Attr(String),
    /// A list index.
    Index(usize),
}

/// A document path such as `a.b[2].c`.
pub type Path = Vec<PathElem>;

/// Renders a path as AWS does in messages: `[a, b, [2]]`.
fn path_display(p: &Path) -> String {
    let parts: Vec<String> = p
        .iter()
        .map(|e| match e {
            PathElem::Attr(a) => a.clone(),
            PathElem::Index(i) => format!("[{i}]"),
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

/// An operand.
#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    /// An attribute of the item.
    Path(Path),
    /// A value from `ExpressionAttributeValues`.
    Value(AttrValue),
    /// `size(path)` (conditions).
    Size(Path),
    /// `if_not_exists(path, operand)` (SET).
    IfNotExists(Path, Box<Operand>),
    /// `list_append(a, b)` (SET).
    ListAppend(Box<Operand>, Box<Operand>),
    /// `a + b` (SET).
    Plus(Box<Operand>, Box<Operand>),
    /// `a - b` (SET).
    Minus(Box<Operand>, Box<Operand>),
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// A condition (ConditionExpression, FilterExpression, KeyConditionExpression).
#[derive(Clone, Debug, PartialEq)]
pub enum Cond {
    /// `a AND b`
    And(Box<Cond>, Box<Cond>),
    /// `a OR b`
    Or(Box<Cond>, Box<Cond>),
    /// `NOT a`
    Not(Box<Cond>),
    /// `a op b`
    Cmp(Operand, CmpOp, Operand),
    /// `a BETWEEN b AND c`
    Between(Operand, Operand, Operand),
    /// `a IN (b, c, …)`
    In(Operand, Vec<Operand>),
    /// `attribute_exists(p)`
    Exists(Path),
    /// `attribute_not_exists(p)`
    NotExists(Path),
    /// `attribute_type(p, :t)`
    AttrType(Path, Operand),
    /// `begins_with(a, b)`
    BeginsWith(Operand, Operand),
    /// `contains(a, b)`
    Contains(Operand, Operand),
}

/// One action of an update expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// `SET path = operand`
    Set(Path, Operand),
    /// `REMOVE path`
    Remove(Path),
    /// `ADD path :v`
    Add(Path, AttrValue),
    /// `DELETE path :v`
    Delete(Path, AttrValue),
}

/// The placeholders of one request and which of them its expressions used.
#[derive(Debug, Default)]
pub struct Placeholders {
    /// `ExpressionAttributeNames`.
    pub names: BTreeMap<String, String>,
    /// `ExpressionAttributeValues`.
    pub values: BTreeMap<String, AttrValue>,
    used_names: BTreeSet<String>,
    used_values: BTreeSet<String>,
}

impl Placeholders {
    /// Wraps the request's placeholders.
    pub fn new(names: BTreeMap<String, String>, values: BTreeMap<String, AttrValue>) -> Self {
        Self {
            names,
            values,
            ..Default::default()
        }
    }

    /// Refuses placeholders no expression used, with AWS's messages.
    pub fn check_unused(&self) -> Result<(), DdbError> {
        let unused_n: Vec<&String> = self
            .names
            .keys()
            .filter(|k| !self.used_names.contains(*k))
            .collect();
        if !unused_n.is_empty() {
            return Err(DdbError::validation(format!(
                "Value provided in ExpressionAttributeNames unused in expressions: keys: {{{}}}",
                join(&unused_n)
            )));
        }
        let unused_v: Vec<&String> = self
            .values
            .keys()
            .filter(|k| !self.used_values.contains(*k))
            .collect();
        if !unused_v.is_empty() {
            return Err(DdbError::validation(format!(
                "Value provided in ExpressionAttributeValues unused in expressions: keys: {{{}}}",
                join(&unused_v)
            )));
        }
        Ok(())
    }
}

fn join(v: &[&String]) -> String {
    v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

// ---------------------------------------------------------------------------------------
// Tokenizer
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Name(String),
    Value(String),
    Int(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Plus,
    Minus,
}

impl Tok {
    fn text(&self) -> String {
        match self {
            Tok::Word(s) | Tok::Int(s) => s.clone(),
            Tok::Name(s) => format!("#{s}"),
            Tok::Value(s) => format!(":{s}"),
            Tok::LParen => "(".into(),
            Tok::RParen => ")".into(),
            Tok::LBracket => "[".into(),
            Tok::RBracket => "]".into(),
            Tok::Comma => ",".into(),
            Tok::Dot => ".".into(),
            Tok::Eq => "=".into(),
            Tok::Ne => "<>".into(),
            Tok::Lt => "<".into(),
            Tok::Le => "<=".into(),
            Tok::Gt => ">".into(),
            Tok::Ge => ">=".into(),
            Tok::Plus => "+".into(),
            Tok::Minus => "-".into(),
        }
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self, Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn tokenize(src: &str, kind: Kind) -> Result<Vec<Tok>, DdbError> {
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let syntax = |tok: &str| {
        DdbError::validation(format!(
            "Invalid {}: Syntax error; token: \"{tok}\", near: \"{tok}\"",
            kind.name()
        ))
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let single = match c {
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            '[' => Some(Tok::LBracket),
            ']' => Some(Tok::RBracket),
            ',' => Some(Tok::Comma),
            '.' => Some(Tok::Dot),
            '=' => Some(Tok::Eq),
            '+' => Some(Tok::Plus),
            '-' => Some(Tok::Minus),
            _ => None,
        };
        if let Some(t) = single {
            out.push(t);
            i += 1;
            continue;
        }
        match c {
            '<' => {
                match chars.get(i + 1) {
                    Some('=') => {
                        out.push(Tok::Le);
                        i += 2;
                    }
                    Some('>') => {
                        out.push(Tok::Ne);
                        i += 2;
                    }
                    _ => {
                        out.push(Tok::Lt);
                        i += 1;
                    }
                }
                continue;
            }
            '>' => {
                if chars.get(i + 1) == Some(&'=') {
                    out.push(Tok::Ge);
                    i += 2;
                } else {
                    out.push(Tok::Gt);
                    i += 1;
                }
                continue;
            }
            '#' | ':' => {
                let start = i + 1;
                let mut j = start;
                while j < chars.len() && is_word_char(chars[j]) {
                    j += 1;
                }
                if j == start {
                    return Err(syntax(&c.to_string()));
                }
                let word: String = chars[start..j].iter().collect();
                out.push(if c == '#' {
                    Tok::Name(word)
                } else {
                    Tok::Value(word)
                });
                i = j;
                continue;
            }
            _ => {}
        }
        if c.is_ascii_digit() {
            let mut j = i;
            while j < chars.len() && chars[j].is_ascii_digit() {
                j += 1;
            }
            out.push(Tok::Int(chars[i..j].iter().collect()));
            i = j;
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let mut j = i;
            while j < chars.len() && is_word_char(chars[j]) {
                j += 1;
            }
            out.push(Tok::Word(chars[i..j].iter().collect()));
            i = j;
            continue;
        }
        return Err(syntax(&c.to_string()));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------------------

struct Parser<'a> {
    toks: Vec<Tok>,
    /// For each `(` token, the index of its matching `)` (`None` for other tokens and for
    /// unclosed parentheses): lets a group see, as it opens, whether it is redundant.
    closing: Vec<Option<usize>>,
    pos: usize,
    kind: Kind,
    ph: &'a mut Placeholders,
    /// Operators and functions seen so far (see [`MAX_OPERATORS`]).
    operators: usize,
}

/// The matching `)` of every `(` in `toks`, found without recursion.
fn match_parens(toks: &[Tok]) -> Vec<Option<usize>> {
    let mut closing = vec![None; toks.len()];
    let mut open = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        match t {
            Tok::LParen => open.push(i),
            Tok::RParen => {
                if let Some(o) = open.pop() {
                    closing[o] = Some(i);
                }
            }
            _ => {}
        }
    }
    closing
}

const CONDITION_FUNCTIONS: &[&str] = &[
    "attribute_exists",
    "attribute_not_exists",
    "attribute_type",
    "begins_with",
    "contains",
    "size",
];
const UPDATE_FUNCTIONS: &[&str] = &["if_not_exists", "list_append"];

impl<'a> Parser<'a> {
    fn new(src: &str, kind: Kind, ph: &'a mut Placeholders) -> Result<Self, DdbError> {
        if src.trim().is_empty() {
            return Err(DdbError::validation(format!(
                "Invalid {}: The expression can not be empty;",
                kind.name()
            )));
        }
        if src.len() > MAX_EXPRESSION_BYTES {
            // AWS adds the size for conditions and filters only.
            let size = match kind {
                Kind::Condition | Kind::Filter => format!(" expression size: {}", src.len()),
                _ => String::new(),
            };
            return Err(DdbError::validation(format!(
                "Invalid {}: Expression size has exceeded the maximum allowed size;{size}",
                kind.name()
            )));
        }
        let toks = tokenize(src, kind)?;
        Ok(Parser {
            closing: match_parens(&toks),
            toks,
            pos: 0,
            kind,
            ph,
            operators: 0,
        })
    }

    /// Counts one operator or function against [`MAX_OPERATORS`].
    fn operator(&mut self) -> Result<(), DdbError> {
        self.operators += 1;
        if self.operators > MAX_OPERATORS {
            return Err(self.err(format!(
                "The expression contains too many operators; operator count: {}",
                self.operators
            )));
        }
        Ok(())
    }

    fn err(&self, what: impl AsRef<str>) -> DdbError {
        DdbError::validation(format!("Invalid {}: {}", self.kind.name(), what.as_ref()))
    }

    fn syntax(&self) -> DdbError {
        match self.toks.get(self.pos) {
            Some(t) => {
                let prev = if self.pos > 0 {
                    format!("{} ", self.toks[self.pos - 1].text())
                } else {
                    String::new()
                };
                let next = self
                    .toks
                    .get(self.pos + 1)
                    .map(|t| format!(" {}", t.text()))
                    .unwrap_or_default();
                self.err(format!(
                    "Syntax error; token: \"{}\", near: \"{prev}{}{next}\"",
                    t.text(),
                    t.text()
                ))
            }
            None => self.err("Syntax error; token: <EOF>, near: \"\""),
        }
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn peek_at(&self, n: usize) -> Option<&Tok> {
        self.toks.get(self.pos + n)
    }

    fn eat(&mut self, t: &Tok) -> bool {
        if self.peek() == Some(t) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, t: &Tok) -> Result<(), DdbError> {
        if self.eat(t) {
            Ok(())
        } else {
            Err(self.syntax())
        }
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.peek().is_some_and(|t| t.is_kw(kw)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.toks.len()
    }

    fn finish(&self) -> Result<(), DdbError> {
        if self.at_end() {
            Ok(())
        } else {
            Err(self.syntax())
        }
    }

    fn resolve_name(&mut self, n: &str) -> Result<String, DdbError> {
        let key = format!("#{n}");
        match self.ph.names.get(&key) {
            Some(v) => {
                self.ph.used_names.insert(key);
                Ok(v.clone())
            }
            None => Err(DdbError::validation(format!(
                "Invalid {}: An expression attribute name used in the document path is not defined; attribute name: {key}",
                self.kind.name()
            ))),
        }
    }

    fn resolve_value(&mut self, n: &str) -> Result<AttrValue, DdbError> {
        let key = format!(":{n}");
        match self.ph.values.get(&key) {
            Some(v) => {
                self.ph.used_values.insert(key);
                Ok(v.clone())
            }
            None => Err(DdbError::validation(format!(
                "Invalid {}: An expression attribute value used in expression is not defined; attribute value: {key}",
                self.kind.name()
            ))),
        }
    }

    fn path_start(&mut self) -> Result<String, DdbError> {
        match self.peek().cloned() {
            Some(Tok::Word(w)) => {
                if is_reserved(&w) {
                    return Err(self.err(format!(
                        "Attribute name is a reserved keyword; reserved keyword: {w}"
                    )));
                }
                self.pos += 1;
                Ok(w)
            }
            Some(Tok::Name(n)) => {
                self.pos += 1;
                self.resolve_name(&n)
            }
            _ => Err(self.syntax()),
        }
    }

    fn path(&mut self) -> Result<Path, DdbError> {
        let mut p = vec![PathElem::Attr(self.path_start()?)];
        loop {
            if self.eat(&Tok::Dot) {
                p.push(PathElem::Attr(self.path_start()?));
            } else if self.eat(&Tok::LBracket) {
                match self.peek().cloned() {
                    Some(Tok::Int(n)) => {
                        let idx: usize = n.parse().map_err(|_| self.syntax())?;
                        self.pos += 1;
                        p.push(PathElem::Index(idx));
                    }
                    _ => return Err(self.syntax()),
                }
                self.expect(&Tok::RBracket)?;
            } else {
                break;
            }
        }
        if p.len() > MAX_PATH_DEPTH {
            return Err(self.err(format!(
                "The document path has too many nesting levels; nesting levels: {}",
                p.len()
            )));
        }
        Ok(p)
    }

    fn is_function_call(&self) -> Option<String> {
        match (self.peek(), self.peek_at(1)) {
            (Some(Tok::Word(w)), Some(Tok::LParen)) => Some(w.clone()),
            _ => None,
        }
    }

    /// An operand; `update` allows SET's functions and arithmetic.
    fn operand(&mut self, update: bool) -> Result<Operand, DdbError> {
        let first = self.operand_atom(update)?;
        if !update {
            return Ok(first);
        }
        if self.eat(&Tok::Plus) {
            self.operator()?;
            let second = self.operand_atom(update)?;
            return Ok(Operand::Plus(Box::new(first), Box::new(second)));
        }
        if self.eat(&Tok::Minus) {
            self.operator()?;
            let second = self.operand_atom(update)?;
            return Ok(Operand::Minus(Box::new(first), Box::new(second)));
        }
        Ok(first)
    }

    /// A path, a value, or a function call. Update functions nest (`list_append(
    /// list_append(…), …)`); they are read with an explicit stack of the calls still open,
    /// not recursion, so nesting costs heap rather than stack, and that stack is held to
    /// [`MAX_NESTING`] (the operator count already caps it at 300).
    fn operand_atom(&mut self, update: bool) -> Result<Operand, DdbError> {
        /// A function call whose arguments are still being read.
        enum Open {
            IfNotExists(Path),
            ListAppend,
            ListAppendThen(Operand),
        }
        let mut open: Vec<Open> = Vec::new();
        loop {
            // Down: step into calls until an argument that is not one.
            let mut v = loop {
                let Some(f) = self.operand_function(update)? else {
                    break self.plain_operand()?;
                };
                if f == "size" {
                    let p = self.path()?;
                    self.expect(&Tok::RParen)?;
                    break Operand::Size(p);
                }
                if open.len() >= MAX_NESTING {
                    return Err(self.err(format!(
                        "The expression is nested too deeply; nesting levels exceed {MAX_NESTING}"
                    )));
                }
                if f == "if_not_exists" {
                    let p = self.path()?;
                    self.expect(&Tok::Comma)?;
                    open.push(Open::IfNotExists(p));
                } else {
                    open.push(Open::ListAppend);
                }
            };
            // Up: close the calls that are complete.
            loop {
                match open.pop() {
                    None => return Ok(v),
                    Some(Open::IfNotExists(p)) => {
                        self.expect(&Tok::RParen)?;
                        v = Operand::IfNotExists(p, Box::new(v));
                    }
                    Some(Open::ListAppendThen(a)) => {
                        self.expect(&Tok::RParen)?;
                        v = Operand::ListAppend(Box::new(a), Box::new(v));
                    }
                    Some(Open::ListAppend) => {
                        self.expect(&Tok::Comma)?;
                        open.push(Open::ListAppendThen(v));
                        break;
                    }
                }
            }
        }
    }

    /// If a function call starts here, checks that it may be used as an operand, steps
    /// over `name(` and counts it as an operator.
    fn operand_function(&mut self, update: bool) -> Result<Option<&'static str>, DdbError> {
        let Some(f) = self.is_function_call() else {
            return Ok(None);
        };
        let allowed: &[&'static str] = if update { UPDATE_FUNCTIONS } else { &["size"] };
        let Some(name) = allowed.iter().copied().find(|n| *n == f) else {
            if CONDITION_FUNCTIONS.contains(&f.as_str()) || UPDATE_FUNCTIONS.contains(&f.as_str()) {
                return Err(self.err(format!(
                    "The function is not allowed to be used this way in an expression; function: {f}"
                )));
            }
            return Err(self.err(format!("Invalid function name; function: {f}")));
        };
        self.pos += 2;
        self.operator()?;
        Ok(Some(name))
    }

    /// A path or a `:value`.
    fn plain_operand(&mut self) -> Result<Operand, DdbError> {
        match self.peek().cloned() {
            Some(Tok::Value(v)) => {
                self.pos += 1;
                Ok(Operand::Value(self.resolve_value(&v)?))
            }
            Some(Tok::Word(_)) | Some(Tok::Name(_)) => Ok(Operand::Path(self.path()?)),
            _ => Err(self.syntax()),
        }
    }

    /// A condition: `NOT` binds tightest, then `AND`, then `OR`, all left-associative, with
    /// parentheses grouping. Read with explicit stacks (operator precedence), not recursive
    /// descent, so that nesting costs heap rather than stack: no input, however deep its
    /// parentheses, can exhaust a thread's stack here. Only a primary (a comparison or a
    /// function) is read by a call, and primaries never contain conditions.
    fn condition(&mut self) -> Result<Cond, DdbError> {
        let mut pending: Vec<Pending> = Vec::new();
        let mut out: Vec<Cond> = Vec::new();
        loop {
            // An operand: any `NOT`s and opening parentheses, then a primary.
            loop {
                if self.eat_kw("NOT") {
                    self.operator()?;
                    pending.push(Pending::Not);
                } else if self.peek() == Some(&Tok::LParen) {
                    self.open_group()?;
                    pending.push(Pending::Group);
                } else {
                    break;
                }
            }
            out.push(self.primary_cond()?);
            // Then closing parentheses, and an `AND`/`OR` or the end.
            loop {
                if self.peek().is_some_and(|t| t.is_kw("AND")) {
                    self.pos += 1;
                    self.operator()?;
                    reduce(&mut pending, &mut out, Pending::And.precedence())?;
                    pending.push(Pending::And);
                    break;
                }
                if self.peek().is_some_and(|t| t.is_kw("OR")) {
                    self.pos += 1;
                    self.operator()?;
                    reduce(&mut pending, &mut out, Pending::Or.precedence())?;
                    pending.push(Pending::Or);
                    break;
                }
                let in_group = pending.contains(&Pending::Group);
                if in_group && self.eat(&Tok::RParen) {
                    reduce(&mut pending, &mut out, Pending::Or.precedence())?;
                    pending.pop();
                    continue;
                }
                if in_group {
                    return Err(self.syntax());
                }
                reduce(&mut pending, &mut out, Pending::Or.precedence())?;
                return match (out.pop(), out.is_empty()) {
                    (Some(c), true) => Ok(c),
                    _ => Err(unbalanced()),
                };
            }
        }
    }

    /// Steps over the `(` of a group, refusing `((c))` as AWS does (a group that only wraps
    /// another group); checked as the group opens, from the precomputed matching `)`.
    fn open_group(&mut self) -> Result<(), DdbError> {
        let close = self.closing[self.pos];
        if close.is_some()
            && self.peek_at(1) == Some(&Tok::LParen)
            && self.closing[self.pos + 1].map(|c| c + 1) == close
        {
            return Err(self.err("The expression has redundant parentheses;"));
        }
        self.pos += 1;
        Ok(())
    }

    /// A comparison or a condition function.
    fn primary_cond(&mut self) -> Result<Cond, DdbError> {
        if let Some(f) = self.is_function_call()
            && f != "size"
        {
            let fname = f.as_str();
            if !CONDITION_FUNCTIONS.contains(&fname) {
                if UPDATE_FUNCTIONS.contains(&fname) {
                    return Err(self.err(format!(
                        "The function is not allowed to be used this way in an expression; function: {fname}"
                    )));
                }
                return Err(self.err(format!("Invalid function name; function: {fname}")));
            }
            self.pos += 2;
            self.operator()?;
            let c = match fname {
                "attribute_exists" => Cond::Exists(self.path()?),
                "attribute_not_exists" => Cond::NotExists(self.path()?),
                "attribute_type" => {
                    let p = self.path()?;
                    self.expect(&Tok::Comma)?;
                    Cond::AttrType(p, self.operand(false)?)
                }
                "begins_with" => {
                    let a = self.operand(false)?;
                    self.expect(&Tok::Comma)?;
                    Cond::BeginsWith(a, self.operand(false)?)
                }
                _ => {
                    let a = self.operand(false)?;
                    self.expect(&Tok::Comma)?;
                    Cond::Contains(a, self.operand(false)?)
                }
            };
            self.expect(&Tok::RParen)?;
            return Ok(c);
        }
        let left = self.operand(false)?;
        let op = match self.peek() {
            Some(Tok::Eq) => Some(CmpOp::Eq),
            Some(Tok::Ne) => Some(CmpOp::Ne),
            Some(Tok::Lt) => Some(CmpOp::Lt),
            Some(Tok::Le) => Some(CmpOp::Le),
            Some(Tok::Gt) => Some(CmpOp::Gt),
            Some(Tok::Ge) => Some(CmpOp::Ge),
            _ => None,
        };
        if let Some(op) = op {
            self.pos += 1;
            self.operator()?;
            let right = self.operand(false)?;
            return Ok(Cond::Cmp(left, op, right));
        }
        if self.eat_kw("BETWEEN") {
            self.operator()?;
            let lo = self.operand(false)?;
            if !self.eat_kw("AND") {
                return Err(self.syntax());
            }
            let hi = self.operand(false)?;
            if let (Operand::Value(a), Operand::Value(b)) = (&lo, &hi)
                && a.dyn_cmp(b) == Some(Ordering::Greater)
            {
                return Err(self.err(format!(
                    "The BETWEEN operator requires upper bound to be greater than or equal to lower bound; lower bound operand: AttributeValue: {}, upper bound operand: AttributeValue: {}",
                    short(a),
                    short(b)
                )));
            }
            return Ok(Cond::Between(left, lo, hi));
        }
        if self.eat_kw("IN") {
            self.operator()?;
            self.expect(&Tok::LParen)?;
            let mut list = vec![self.operand(false)?];
            while self.eat(&Tok::Comma) {
                list.push(self.operand(false)?);
            }
            self.expect(&Tok::RParen)?;
            if list.len() > MAX_IN_OPERANDS {
                return Err(self.err(
                    "The IN operator is provided with too many operands; number of operands: "
                        .to_string()
                        + &list.len().to_string(),
                ));
            }
            return Ok(Cond::In(left, list));
        }
        Err(self.syntax())
    }
}

/// An operator of [`Parser::condition`] waiting for its operands, or an open group.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pending {
    Or,
    And,
    Not,
    Group,
}

impl Pending {
    fn precedence(self) -> u8 {
        match self {
            Pending::Group => 0,
            Pending::Or => 1,
            Pending::And => 2,
            Pending::Not => 3,
        }
    }
}

/// The parser's stacks disagree: a bug, never the input's fault.
fn unbalanced() -> DdbError {
    DdbError::internal("condition parser: unbalanced operand stack")
}

/// Applies the pending operators binding at least as tightly as `min`, down to the
/// innermost open group.
fn reduce(pending: &mut Vec<Pending>, out: &mut Vec<Cond>, min: u8) -> Result<(), DdbError> {
    while let Some(&op) = pending.last() {
        if op == Pending::Group || op.precedence() < min {
            break;
        }
        pending.pop();
        let right = Box::new(out.pop().ok_or_else(unbalanced)?);
        let c = match op {
            Pending::Not => Cond::Not(right),
            Pending::And => Cond::And(Box::new(out.pop().ok_or_else(unbalanced)?), right),
            _ => Cond::Or(Box::new(out.pop().ok_or_else(unbalanced)?), right),
        };
        out.push(c);
    }
    Ok(())
}

fn short(v: &AttrValue) -> String {
    match v {
        AttrValue::S(s) => format!("{{S:{s}}}"),
        AttrValue::N(n) => format!("{{N:{n}}}"),
        other => format!("{{{}}}", other.type_name()),
    }
}

/// Parses a condition or filter expression.
pub fn parse_condition(src: &str, kind: Kind, ph: &mut Placeholders) -> Result<Cond, DdbError> {
    let mut p = Parser::new(src, kind, ph)?;
    let c = p.condition()?;
    p.finish()?;
    Ok(c)
}

/// Parses a projection expression into its paths.
pub fn parse_projection(src: &str, ph: &mut Placeholders) -> Result<Vec<Path>, DdbError> {
    let mut p = Parser::new(src, Kind::Projection, ph)?;
    let mut out = vec![p.path()?];
    while p.eat(&Tok::Comma) {
        out.push(p.path()?);
    }
    p.finish()?;
    check_overlaps(&out, Kind::Projection)?;
    Ok(out)
}

/// Parses an update expression.
pub fn parse_update(src: &str, ph: &mut Placeholders) -> Result<Vec<Action>, DdbError> {
    let mut p = Parser::new(src, Kind::Update, ph)?;
    let mut actions = Vec::new();
    let mut seen: BTreeSet<&'static str> = BTreeSet::new();
    while !p.at_end() {
        let clause = ["SET", "REMOVE", "ADD", "DELETE"]
            .into_iter()
            .find(|kw| p.peek().is_some_and(|t| t.is_kw(kw)))
            .ok_or_else(|| p.syntax())?;
        p.pos += 1;
        if !seen.insert(clause) {
            return Err(p.err(format!(
                "The \"{clause}\" section can only be used once in an update expression;"
            )));
        }
        loop {
            match clause {
                "SET" => {
                    let path = p.path()?;
                    p.expect(&Tok::Eq)?;
                    let v = p.operand(true)?;
                    actions.push(Action::Set(path, v));
                }
                "REMOVE" => actions.push(Action::Remove(p.path()?)),
                _ => {
                    let path = p.path()?;
                    let v = match p.peek().cloned() {
                        Some(Tok::Value(v)) => {
                            p.pos += 1;
                            p.resolve_value(&v)?
                        }
                        _ => return Err(p.syntax()),
                    };
                    if clause == "ADD" {
                        if !matches!(
                            v,
                            AttrValue::N(_)
                                | AttrValue::SS(_)
                                | AttrValue::NS(_)
                                | AttrValue::BS(_)
                        ) {
                            return Err(p.err(format!(
                                "Incorrect operand type for operator or function; operator: ADD, operand type: {}",
                                type_word(&v)
                            )));
                        }
                        actions.push(Action::Add(path, v));
                    } else {
                        if !matches!(v, AttrValue::SS(_) | AttrValue::NS(_) | AttrValue::BS(_)) {
                            return Err(p.err(format!(
                                "Incorrect operand type for operator or function; operator: DELETE, operand type: {}",
                                type_word(&v)
                            )));
                        }
                        actions.push(Action::Delete(path, v));
                    }
                }
            }
            if !p.eat(&Tok::Comma) {
                break;
            }
        }
    }
    let paths: Vec<Path> = actions
        .iter()
        .map(|a| match a {
            Action::Set(p, _) | Action::Remove(p) | Action::Add(p, _) | Action::Delete(p, _) => {
                p.clone()
            }
        })
        .collect();
    check_overlaps(&paths, Kind::Update)?;
    Ok(actions)
}

fn type_word(v: &AttrValue) -> &'static str {
    match v {
        AttrValue::S(_) => "STRING",
        AttrValue::N(_) => "NUMBER",
        AttrValue::B(_) => "BINARY",
        AttrValue::BOOL(_) => "BOOLEAN",
        AttrValue::NULL(_) => "NULL",
        AttrValue::L(_) => "LIST",
        AttrValue::M(_) => "MAP",
        AttrValue::SS(_) => "STRING SET",
        AttrValue::NS(_) => "NUMBER SET",
        AttrValue::BS(_) => "BINARY SET",
    }
}

fn check_overlaps(paths: &[Path], kind: Kind) -> Result<(), DdbError> {
    for (i, a) in paths.iter().enumerate() {
        for b in &paths[i + 1..] {
            let n = a.len().min(b.len());
            if a[..n] == b[..n] {
                return Err(DdbError::validation(format!(
                    "Invalid {}: Two document paths overlap with each other; must remove or rewrite one of these paths; path one: {}, path two: {}",
                    kind.name(),
                    path_display(a),
                    path_display(b)
                )));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Key conditions
// ---------------------------------------------------------------------------------------

/// The sort key part of a key condition.
#[derive(Clone, Debug, PartialEq)]
pub enum RangeCond {
    /// `=`
    Eq(AttrValue),
    /// `<`
    Lt(AttrValue),
    /// `<=`
    Le(AttrValue),
    /// `>`
    Gt(AttrValue),
    /// `>=`
    Ge(AttrValue),
    /// `BETWEEN a AND b`
    Between(AttrValue, AttrValue),
    /// `begins_with(sk, :p)`
    BeginsWith(AttrValue),
}

impl RangeCond {
    /// Whether a sort key value satisfies the condition.
    pub fn matches(&self, v: &AttrValue) -> bool {
        let c = |w: &AttrValue| v.dyn_cmp(w);
        match self {
            RangeCond::Eq(w) => c(w) == Some(Ordering::Equal),
            RangeCond::Lt(w) => c(w) == Some(Ordering::Less),
            RangeCond::Le(w) => matches!(c(w), Some(Ordering::Less | Ordering::Equal)),
            RangeCond::Gt(w) => c(w) == Some(Ordering::Greater),
            RangeCond::Ge(w) => matches!(c(w), Some(Ordering::Greater | Ordering::Equal)),
            RangeCond::Between(a, b) => {
                matches!(c(a), Some(Ordering::Greater | Ordering::Equal))
                    && matches!(c(b), Some(Ordering::Less | Ordering::Equal))
            }
            RangeCond::BeginsWith(p) => begins_with(v, p),
        }
    }

    /// The values bounding the range, for positioning a range scan (`None` = open).
    pub fn bounds(&self) -> (Option<&AttrValue>, Option<&AttrValue>) {
        match self {
            RangeCond::Eq(w) => (Some(w), Some(w)),
            RangeCond::Lt(w) | RangeCond::Le(w) => (None, Some(w)),
            RangeCond::Gt(w) | RangeCond::Ge(w) => (Some(w), None),
            RangeCond::Between(a, b) => (Some(a), Some(b)),
            RangeCond::BeginsWith(p) => (Some(p), None),
        }
    }

    fn values(&self) -> Vec<&AttrValue> {
        match self {
            RangeCond::Between(a, b) => vec![a, b],
            RangeCond::Eq(w)
            | RangeCond::Lt(w)
            | RangeCond::Le(w)
            | RangeCond::Gt(w)
            | RangeCond::Ge(w)
            | RangeCond::BeginsWith(w) => vec![w],
        }
    }
}

/// A validated key condition.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyCond {
    /// The partition key value.
    pub hash: AttrValue,
    /// The sort key condition.
    pub range: Option<RangeCond>,
}

/// Parses a key condition expression against a key schema (`hash`, `range` with types).
pub fn parse_key_condition(
    src: &str,
    ph: &mut Placeholders,
    hash: (&str, &str),
    range: Option<(&str, &str)>,
) -> Result<KeyCond, DdbError> {
    let cond = parse_condition(src, Kind::KeyCondition, ph)?;
    let mut parts = Vec::new();
    flatten_and(cond, &mut parts)?;
    if parts.len() > 2 {
        return Err(DdbError::validation(
            "Conditions can be of length 1 or 2 only",
        ));
    }
    let mut hash_val: Option<AttrValue> = None;
    let mut range_cond: Option<RangeCond> = None;
    let unsupported = || DdbError::validation("Query key condition not supported");
    for part in parts {
        let (attr, rc) = match part {
            Cond::Cmp(Operand::Path(p), op, Operand::Value(v)) => (p, cmp_to_range(op, v)?),
            Cond::Cmp(Operand::Value(v), op, Operand::Path(p)) => {
                let flipped = match op {
                    CmpOp::Lt => CmpOp::Gt,
                    CmpOp::Le => CmpOp::Ge,
                    CmpOp::Gt => CmpOp::Lt,
                    CmpOp::Ge => CmpOp::Le,
                    o => o,
                };
                (p, cmp_to_range(flipped, v)?)
            }
            Cond::Between(Operand::Path(p), Operand::Value(a), Operand::Value(b)) => {
                (p, RangeCond::Between(a, b))
            }
            Cond::BeginsWith(Operand::Path(p), Operand::Value(v)) => (p, RangeCond::BeginsWith(v)),
            _ => return Err(unsupported()),
        };
        let [PathElem::Attr(name)] = attr.as_slice() else {
            return Err(unsupported());
        };
        if name == hash.0 {
            let RangeCond::Eq(v) = rc else {
                return Err(DdbError::validation("Query key condition not supported"));
            };
            if hash_val.is_some() {
                return Err(unsupported());
            }
            if v.type_name() != hash.1 {
                return Err(DdbError::validation(
                    "One or more parameter values were invalid: Condition parameter type does not match schema type",
                ));
            }
            hash_val = Some(v);
        } else if let Some((rn, rt)) = range
            && name == rn
        {
            if range_cond.is_some() {
                return Err(unsupported());
            }
            for v in rc.values() {
                if v.type_name() != rt {
                    return Err(DdbError::validation(
                        "One or more parameter values were invalid: Condition parameter type does not match schema type",
                    ));
                }
            }
            if matches!(rc, RangeCond::BeginsWith(_)) && rt == "N" {
                return Err(DdbError::validation(
                    "Invalid KeyConditionExpression: Incorrect operand type for operator or function; operator or function: begins_with, operand type: N",
                ));
            }
            range_cond = Some(rc);
        } else {
            return Err(DdbError::validation(format!(
                "Query condition missed key schema element: {}",
                hash.0
            )));
        }
    }
    let Some(hash_val) = hash_val else {
        return Err(DdbError::validation(format!(
            "Query condition missed key schema element: {}",
            hash.0
        )));
    };
    Ok(KeyCond {
        hash: hash_val,
        range: range_cond,
    })
}

fn cmp_to_range(op: CmpOp, v: AttrValue) -> Result<RangeCond, DdbError> {
    Ok(match op {
        CmpOp::Eq => RangeCond::Eq(v),
        CmpOp::Lt => RangeCond::Lt(v),
        CmpOp::Le => RangeCond::Le(v),
        CmpOp::Gt => RangeCond::Gt(v),
        CmpOp::Ge => RangeCond::Ge(v),
        CmpOp::Ne => {
            return Err(DdbError::validation(
                "Invalid KeyConditionExpression: Invalid operator used in KeyConditionExpression: <>",
            ));
        }
    })
}

fn flatten_and(c: Cond, out: &mut Vec<Cond>) -> Result<(), DdbError> {
    match c {
        Cond::And(a, b) => {
            flatten_and(*a, out)?;
            flatten_and(*b, out)
        }
        Cond::Or(..) => Err(DdbError::validation(
            "Invalid operator used in KeyConditionExpression: OR",
        )),
        Cond::Not(..) => Err(DdbError::validation(
            "Invalid operator used in KeyConditionExpression: NOT",
        )),
        other => {
            out.push(other);
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------

/// The value at `path` in `attrs`.
pub fn get_path<'a>(attrs: &'a BTreeMap<String, AttrValue>, path: &Path) -> Option<&'a AttrValue> {
    let mut it = path.iter();
    let PathElem::Attr(first) = it.next()? else {
        return None;
    };
    let mut cur = attrs.get(first)?;
    for e in it {
        cur = match (e, cur) {
            (PathElem::Attr(k), AttrValue::M(m)) => m.get(k)?,
            (PathElem::Index(i), AttrValue::L(l)) => l.get(*i)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn eval_operand(attrs: &BTreeMap<String, AttrValue>, o: &Operand) -> Option<AttrValue> {
    match o {
        Operand::Path(p) => get_path(attrs, p).cloned(),
        Operand::Value(v) => Some(v.clone()),
        Operand::Size(p) => {
            let n = match get_path(attrs, p)? {
                AttrValue::S(s) => s.len(),
                AttrValue::B(b) => b.0.len(),
                AttrValue::SS(s) | AttrValue::NS(s) => s.len(),
                AttrValue::BS(s) => s.len(),
                AttrValue::L(l) => l.len(),
                AttrValue::M(m) => m.len(),
                _ => return None,
            };
            Some(AttrValue::N(n.to_string()))
        }
        // Update-only operands never reach condition evaluation (the parser refuses them).
        _ => None,
    }
}

fn begins_with(v: &AttrValue, p: &AttrValue) -> bool {
    match (v, p) {
        (AttrValue::S(a), AttrValue::S(b)) => a.starts_with(b.as_str()),
        (AttrValue::B(a), AttrValue::B(b)) => a.0.starts_with(&b.0),
        _ => false,
    }
}

fn compare(a: Option<&AttrValue>, op: CmpOp, b: Option<&AttrValue>) -> bool {
    let (Some(a), Some(b)) = (a, b) else {
        return op == CmpOp::Ne && a.is_some() != b.is_some();
    };
    match op {
        CmpOp::Eq => a.dyn_eq(b),
        CmpOp::Ne => !a.dyn_eq(b),
        _ => match a.dyn_cmp(b) {
            None => false,
            Some(o) => match op {
                CmpOp::Lt => o == Ordering::Less,
                CmpOp::Le => o != Ordering::Greater,
                CmpOp::Gt => o == Ordering::Greater,
                CmpOp::Ge => o != Ordering::Less,
                _ => false,
            },
        },
    }
}

/// Evaluates a condition on an item (`None` when the item does not exist).
pub fn eval_condition(c: &Cond, item: Option<&BTreeMap<String, AttrValue>>) -> bool {
    static EMPTY: BTreeMap<String, AttrValue> = BTreeMap::new();
    let attrs = item.unwrap_or(&EMPTY);
    eval(c, attrs)
}

fn eval(c: &Cond, attrs: &BTreeMap<String, AttrValue>) -> bool {
    match c {
        Cond::And(a, b) => eval(a, attrs) && eval(b, attrs),
        Cond::Or(a, b) => eval(a, attrs) || eval(b, attrs),
        Cond::Not(a) => !eval(a, attrs),
        Cond::Cmp(a, op, b) => compare(
            eval_operand(attrs, a).as_ref(),
            *op,
            eval_operand(attrs, b).as_ref(),
        ),
        Cond::Between(v, lo, hi) => {
            let v = eval_operand(attrs, v);
            compare(v.as_ref(), CmpOp::Ge, eval_operand(attrs, lo).as_ref())
                && compare(v.as_ref(), CmpOp::Le, eval_operand(attrs, hi).as_ref())
        }
        Cond::In(v, list) => {
            let v = eval_operand(attrs, v);
            list.iter()
                .any(|o| compare(v.as_ref(), CmpOp::Eq, eval_operand(attrs, o).as_ref()))
        }
        Cond::Exists(p) => get_path(attrs, p).is_some(),
        Cond::NotExists(p) => get_path(attrs, p).is_none(),
        Cond::AttrType(p, t) => match (get_path(attrs, p), eval_operand(attrs, t)) {
            (Some(v), Some(AttrValue::S(t))) => v.type_name() == t,
            _ => false,
        },
        Cond::BeginsWith(a, b) => match (eval_operand(attrs, a), eval_operand(attrs, b)) {
            (Some(a), Some(b)) => begins_with(&a, &b),
            _ => false,
        },
        Cond::Contains(a, b) => match (eval_operand(attrs, a), eval_operand(attrs, b)) {
            (Some(a), Some(b)) => contains(&a, &b),
            _ => false,
        },
    }
}

fn contains(a: &AttrValue, b: &AttrValue) -> bool {
    match (a, b) {
        (AttrValue::S(s), AttrValue::S(t)) => s.contains(t.as_str()),
        (AttrValue::B(s), AttrValue::B(t)) => {
            t.0.is_empty() || s.0.windows(t.0.len()).any(|w| w == t.0.as_slice())
        }
        (AttrValue::SS(s), AttrValue::S(t)) => s.contains(t),
        (AttrValue::NS(s), AttrValue::N(t)) => s
            .iter()
            .any(|x| number::cmp_canonical(x, t) == Ordering::Equal),
        (AttrValue::BS(s), AttrValue::B(t)) => s.contains(t),
        (AttrValue::L(l), v) => l.iter().any(|x| x.dyn_eq(v)),
        _ => false,
    }
}

fn invalid_path() -> DdbError {
    DdbError::validation(
        "The document path provided in the update expression is invalid for update",
    )
}

fn bad_operand() -> DdbError {
    DdbError::validation("An operand in the update expression has an incorrect data type")
}

/// The value of a SET operand. Recursive over nested functions (at most
/// [`MAX_OPERATORS`] deep); the work of each step lives in the helpers below, so that the
/// recursive frame stays small even unoptimised.
fn eval_set_operand(old: &BTreeMap<String, AttrValue>, o: &Operand) -> Result<AttrValue, DdbError> {
    match o {
        Operand::IfNotExists(p, dflt) => match get_path(old, p) {
            Some(v) => Ok(v.clone()),
            None => eval_set_operand(old, dflt),
        },
        Operand::ListAppend(a, b) => {
            list_append(eval_set_operand(old, a)?, eval_set_operand(old, b)?)
        }
        Operand::Plus(a, b) => {
            arithmetic(true, eval_set_operand(old, a)?, eval_set_operand(old, b)?)
        }
        Operand::Minus(a, b) => {
            arithmetic(false, eval_set_operand(old, a)?, eval_set_operand(old, b)?)
        }
        leaf => leaf_set_operand(old, leaf),
    }
}

#[inline(never)]
fn leaf_set_operand(old: &BTreeMap<String, AttrValue>, o: &Operand) -> Result<AttrValue, DdbError> {
    match o {
        Operand::Path(p) => get_path(old, p).cloned().ok_or_else(|| {
            DdbError::validation(
                "The provided expression refers to an attribute that does not exist in the item",
            )
        }),
        Operand::Value(v) => Ok(v.clone()),
        _ => Err(bad_operand()),
    }
}

#[inline(never)]
fn list_append(a: AttrValue, b: AttrValue) -> Result<AttrValue, DdbError> {
    match (a, b) {
        (AttrValue::L(mut x), AttrValue::L(y)) => {
            x.extend(y);
            Ok(AttrValue::L(x))
        }
        _ => Err(bad_operand()),
    }
}

#[inline(never)]
fn arithmetic(plus: bool, a: AttrValue, b: AttrValue) -> Result<AttrValue, DdbError> {
    match (a, b) {
        (AttrValue::N(x), AttrValue::N(y)) => {
            let r = if plus {
                number::add(&x, &y)
            } else {
                number::sub(&x, &y)
            };
            r.map(AttrValue::N)
                .map_err(|e| DdbError::validation(e.to_string()))
        }
        _ => Err(bad_operand()),
    }
}

fn set_path(
    attrs: &mut BTreeMap<String, AttrValue>,
    path: &Path,
    value: AttrValue,
) -> Result<(), DdbError> {
    let Some((PathElem::Attr(first), rest)) = path.split_first() else {
        return Err(invalid_path());
    };
    if rest.is_empty() {
        attrs.insert(first.clone(), value);
        return Ok(());
    }
    let mut cur = attrs.get_mut(first).ok_or_else(invalid_path)?;
    for (i, e) in rest.iter().enumerate() {
        let last = i + 1 == rest.len();
        cur = match (e, cur) {
            (PathElem::Attr(k), AttrValue::M(m)) => {
                if last {
                    m.insert(k.clone(), value);
                    return Ok(());
                }
                m.get_mut(k).ok_or_else(invalid_path)?
            }
            (PathElem::Index(idx), AttrValue::L(l)) => {
                if last {
                    if *idx < l.len() {
                        l[*idx] = value;
                    } else {
                        l.push(value);
                    }
                    return Ok(());
                }
                l.get_mut(*idx).ok_or_else(invalid_path)?
            }
            _ => return Err(invalid_path()),
        };
    }
    Err(invalid_path())
}

fn remove_path(attrs: &mut BTreeMap<String, AttrValue>, path: &Path) -> Result<(), DdbError> {
    let Some((PathElem::Attr(first), rest)) = path.split_first() else {
        return Err(invalid_path());
    };
    if rest.is_empty() {
        attrs.remove(first);
        return Ok(());
    }
    let Some(mut cur) = attrs.get_mut(first) else {
        return Ok(());
    };
    for (i, e) in rest.iter().enumerate() {
        let last = i + 1 == rest.len();
        cur = match (e, cur) {
            (PathElem::Attr(k), AttrValue::M(m)) => {
                if last {
                    m.remove(k);
                    return Ok(());
                }
                match m.get_mut(k) {
                    Some(v) => v,
                    None => return Ok(()),
                }
            }
            (PathElem::Index(idx), AttrValue::L(l)) => {
                if last {
                    if *idx < l.len() {
                        l.remove(*idx);
                    }
                    return Ok(());
                }
                match l.get_mut(*idx) {
                    Some(v) => v,
                    None => return Ok(()),
                }
            }
            _ => return Err(invalid_path()),
        };
    }
    Ok(())
}

fn set_union<T: Clone + PartialEq>(
    mut a: Vec<T>,
    b: Vec<T>,
    eq: impl Fn(&T, &T) -> bool,
) -> Vec<T> {
    for x in b {
        if !a.iter().any(|y| eq(y, &x)) {
            a.push(x);
        }
    }
    a
}

/// Applies update actions to `attrs` (which holds the old item, or only the key for a new
/// one). Operands are evaluated against the old item, as DynamoDB does.
pub fn apply_update(
    attrs: &mut BTreeMap<String, AttrValue>,
    actions: &[Action],
) -> Result<(), DdbError> {
    let old = attrs.clone();
    for a in actions {
        match a {
            Action::Set(p, o) => {
                let v = eval_set_operand(&old, o)?;
                set_path(attrs, p, v)?;
            }
            Action::Remove(p) => remove_path(attrs, p)?,
            Action::Add(p, v) => {
                let new = match (get_path(attrs, p), v) {
                    (None, v) => v.clone(),
                    (Some(AttrValue::N(x)), AttrValue::N(y)) => AttrValue::N(
                        number::add(x, y).map_err(|e| DdbError::validation(e.to_string()))?,
                    ),
                    (Some(AttrValue::SS(x)), AttrValue::SS(y)) => {
                        AttrValue::SS(set_union(x.clone(), y.clone(), |a, b| a == b))
                    }
                    (Some(AttrValue::NS(x)), AttrValue::NS(y)) => {
                        AttrValue::NS(set_union(x.clone(), y.clone(), |a, b| {
                            number::cmp_canonical(a, b) == Ordering::Equal
                        }))
                    }
                    (Some(AttrValue::BS(x)), AttrValue::BS(y)) => {
                        AttrValue::BS(set_union(x.clone(), y.clone(), |a, b| a == b))
                    }
                    _ => return Err(bad_operand()),
                };
                set_path(attrs, p, new)?;
            }
            Action::Delete(p, v) => {
                let new = match (get_path(attrs, p), v) {
                    (None, _) => continue,
                    (Some(AttrValue::SS(x)), AttrValue::SS(y)) => {
                        let r: Vec<String> = x.iter().filter(|e| !y.contains(e)).cloned().collect();
                        (!r.is_empty()).then_some(AttrValue::SS(r))
                    }
                    (Some(AttrValue::NS(x)), AttrValue::NS(y)) => {
                        let r: Vec<String> = x
                            .iter()
                            .filter(|e| {
                                !y.iter()
                                    .any(|z| number::cmp_canonical(e, z) == Ordering::Equal)
                            })
                            .cloned()
                            .collect();
                        (!r.is_empty()).then_some(AttrValue::NS(r))
                    }
                    (Some(AttrValue::BS(x)), AttrValue::BS(y)) => {
                        let r: Vec<_> = x.iter().filter(|e| !y.contains(e)).cloned().collect();
                        (!r.is_empty()).then_some(AttrValue::BS(r))
                    }
                    _ => return Err(bad_operand()),
                };
                match new {
                    Some(v) => set_path(attrs, p, v)?,
                    None => remove_path(attrs, p)?,
                }
            }
        }
    }
    Ok(())
}

/// Top-level attribute names an update touches (for `UPDATED_OLD`/`UPDATED_NEW` and the
/// key-attribute check).
pub fn touched_attributes(actions: &[Action]) -> BTreeSet<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Set(p, _) | Action::Remove(p) | Action::Add(p, _) | Action::Delete(p, _) => {
                match p.first() {
                    Some(PathElem::Attr(n)) => Some(n.clone()),
                    _ => None,
                }
            }
        })
        .collect()
}

enum PTree {
    Leaf(AttrValue),
    Map(BTreeMap<String, PTree>),
    List(BTreeMap<usize, PTree>),
}

impl PTree {
    fn into_value(self) -> AttrValue {
        match self {
            PTree::Leaf(v) => v,
            PTree::Map(m) => {
                AttrValue::M(m.into_iter().map(|(k, v)| (k, v.into_value())).collect())
            }
            PTree::List(l) => AttrValue::L(l.into_values().map(PTree::into_value).collect()),
        }
    }
}

fn insert_tree(tree: &mut BTreeMap<String, PTree>, path: &Path, v: AttrValue) {
    let Some((PathElem::Attr(first), rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        tree.insert(first.clone(), PTree::Leaf(v));
        return;
    }
    let mut node = tree.entry(first.clone()).or_insert_with(|| match rest[0] {
        PathElem::Attr(_) => PTree::Map(BTreeMap::new()),
        PathElem::Index(_) => PTree::List(BTreeMap::new()),
    });
    for (i, e) in rest.iter().enumerate() {
        let last = i + 1 == rest.len();
        let next_kind = rest.get(i + 1);
        let make = || match next_kind {
            Some(PathElem::Index(_)) => PTree::List(BTreeMap::new()),
            _ => PTree::Map(BTreeMap::new()),
        };
        node = match (e, node) {
            (PathElem::Attr(k), PTree::Map(m)) => {
                if last {
                    m.insert(k.clone(), PTree::Leaf(v));
                    return;
                }
                m.entry(k.clone()).or_insert_with(make)
            }
            (PathElem::Index(idx), PTree::List(l)) => {
                if last {
                    l.insert(*idx, PTree::Leaf(v));
                    return;
                }
                l.entry(*idx).or_insert_with(make)
            }
            _ => return,
        };
    }
}

/// The item reduced to the projected paths (nested paths keep their structure; list
/// elements keep their relative order).
pub fn project(attrs: &BTreeMap<String, AttrValue>, paths: &[Path]) -> BTreeMap<String, AttrValue> {
    let mut tree: BTreeMap<String, PTree> = BTreeMap::new();
    for p in paths {
        if let Some(v) = get_path(attrs, p) {
            insert_tree(&mut tree, p, v.clone());
        }
    }
    tree.into_iter().map(|(k, v)| (k, v.into_value())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Item;
    use serde_json::json;

    fn ph(names: &[(&str, &str)], values: serde_json::Value) -> Placeholders {
        Placeholders::new(
            names
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            crate::value::attrs_from_json(&values).unwrap(),
        )
    }

    fn item(v: serde_json::Value) -> BTreeMap<String, AttrValue> {
        Item::from_json(&v).unwrap().attrs().clone()
    }

    #[test]
    fn reserved_words_are_known() {
        assert!(is_reserved("status"));
        assert!(is_reserved("Name"));
        assert!(!is_reserved("pk"));
    }

    #[test]
    fn conditions_parse_with_precedence() {
        let mut p = ph(
            &[("#s", "status")],
            json!({":a": {"N": "1"}, ":b": {"S": "x"}}),
        );
        let c =
            parse_condition("a = :a OR b = :b AND NOT #s = :b", Kind::Condition, &mut p).unwrap();
        assert!(matches!(c, Cond::Or(_, _)));
        p.check_unused().unwrap();
        let it = item(json!({"a": {"N": "1.0"}}));
        assert!(eval_condition(&c, Some(&it)));
        let it = item(json!({"a": {"N": "2"}, "b": {"S": "x"}, "status": {"S": "x"}}));
        assert!(!eval_condition(&c, Some(&it)));
    }

    #[test]
    fn functions_and_comparisons_evaluate() {
        let mut p = ph(
            &[],
            json!({":p": {"S": "ab"}, ":n": {"N": "3"}, ":lo": {"N": "1"}, ":hi": {"N": "5"}, ":t": {"S": "SS"}, ":e": {"S": "x"}}),
        );
        let c = parse_condition(
            "begins_with(s, :p) AND size(s) = :n AND n BETWEEN :lo AND :hi AND attribute_type(tags, :t) AND contains(tags, :e) AND attribute_not_exists(absent) AND attribute_exists(m.k[1]) AND n IN (:lo, :n, :hi)",
            Kind::Filter,
            &mut p,
        )
        .unwrap();
        p.check_unused().unwrap();
        let it = item(json!({
            "s": {"S": "abc"}, "n": {"N": "5"}, "tags": {"SS": ["x", "y"]},
            "m": {"M": {"k": {"L": [{"N": "1"}, {"N": "2"}]}}}
        }));
        assert!(eval_condition(&c, Some(&it)));
    }

    #[test]
    fn placeholder_errors_match_aws() {
        let mut p = ph(&[("#x", "x")], json!({":v": {"N": "1"}}));
        parse_condition("a = :v", Kind::Condition, &mut p).unwrap();
        let e = p.check_unused().unwrap_err();
        assert!(
            e.message.contains("ExpressionAttributeNames unused"),
            "{}",
            e.message
        );
        let mut p = ph(&[], json!({}));
        let e = parse_condition("a = :nope", Kind::Condition, &mut p).unwrap_err();
        assert!(e.message.contains("not defined; attribute value: :nope"));
        let e = parse_condition("#nope = a", Kind::Condition, &mut p).unwrap_err();
        assert!(e.message.contains("attribute name: #nope"));
        let e = parse_condition("status = a", Kind::Condition, &mut p).unwrap_err();
        assert!(
            e.message.contains("reserved keyword: status"),
            "{}",
            e.message
        );
        let e = parse_condition("a = = b", Kind::Condition, &mut p).unwrap_err();
        assert!(e.message.contains("Syntax error"), "{}", e.message);
        let e = parse_condition("", Kind::Condition, &mut p).unwrap_err();
        assert!(e.message.contains("can not be empty"));
        let e = parse_condition("foo(a)", Kind::Condition, &mut p).unwrap_err();
        assert!(e.message.contains("Invalid function name"));
    }

    #[test]
    fn updates_apply_every_action() {
        let mut p = ph(
            &[("#c", "count")],
            json!({":one": {"N": "1"}, ":l": {"L": [{"S": "z"}]}, ":ss": {"SS": ["b"]}, ":d": {"SS": ["x"]}, ":v": {"S": "new"}}),
        );
        let actions = parse_update(
            "SET #c = if_not_exists(#c, :one) + :one, lst = list_append(lst, :l), m.deep = :v, lst2[5] = :v REMOVE gone, lst3[0] ADD tags :ss, n :one DELETE del :d",
            &mut p,
        )
        .unwrap();
        p.check_unused().unwrap();
        let mut it = item(json!({
            "lst": {"L": [{"S": "a"}]}, "m": {"M": {}}, "lst2": {"L": []}, "gone": {"S": "x"},
            "lst3": {"L": [{"N": "1"}, {"N": "2"}]}, "tags": {"SS": ["a"]}, "del": {"SS": ["x"]}
        }));
        apply_update(&mut it, &actions).unwrap();
        let j = Item::new(it).to_json();
        assert_eq!(j["count"]["N"], "2");
        assert_eq!(j["lst"]["L"][1]["S"], "z");
        assert_eq!(j["m"]["M"]["deep"]["S"], "new");
        assert_eq!(j["lst2"]["L"][0]["S"], "new");
        assert!(j.get("gone").is_none());
        assert_eq!(j["lst3"]["L"][0]["N"], "2");
        assert_eq!(j["tags"]["SS"], json!(["a", "b"]));
        assert_eq!(j["n"]["N"], "1");
        assert!(j.get("del").is_none());
    }

    #[test]
    fn update_errors_match_aws() {
        let mut p = ph(&[], json!({":v": {"S": "x"}, ":n": {"N": "1"}}));
        let e = parse_update("SET a = :v SET b = :v", &mut p).unwrap_err();
        assert!(e.message.contains("can only be used once"));
        let e = parse_update("SET a = :v, a.b = :v", &mut p).unwrap_err();
        assert!(
            e.message.contains("Two document paths overlap"),
            "{}",
            e.message
        );
        let e = parse_update("ADD a :v", &mut p).unwrap_err();
        assert!(e.message.contains("Incorrect operand type"));
        let actions = parse_update("SET a = b + :n", &mut p).unwrap();
        let mut it = item(json!({}));
        let e = apply_update(&mut it, &actions).unwrap_err();
        assert!(e.message.contains("does not exist in the item"));
        let actions = parse_update("SET x.y = :n", &mut p).unwrap();
        let e = apply_update(&mut it, &actions).unwrap_err();
        assert!(e.message.contains("document path provided"));
    }

    #[test]
    fn key_conditions_validate_against_the_schema() {
        let mut p = ph(
            &[],
            json!({":h": {"S": "x"}, ":a": {"N": "1"}, ":b": {"N": "9"}}),
        );
        let k = parse_key_condition(
            "pk = :h AND sk BETWEEN :a AND :b",
            &mut p,
            ("pk", "S"),
            Some(("sk", "N")),
        )
        .unwrap();
        assert_eq!(k.hash, AttrValue::S("x".into()));
        assert!(matches!(k.range, Some(RangeCond::Between(..))));
        let e = parse_key_condition("sk = :a", &mut p, ("pk", "S"), Some(("sk", "N"))).unwrap_err();
        assert!(e.message.contains("missed key schema element: pk"));
        let e = parse_key_condition("pk = :a", &mut p, ("pk", "S"), None).unwrap_err();
        assert!(e.message.contains("does not match schema type"));
        let e = parse_key_condition("pk = :h OR pk = :h", &mut p, ("pk", "S"), None).unwrap_err();
        assert!(e.message.contains("OR"));
    }

    #[test]
    fn projection_keeps_nested_structure() {
        let mut p = ph(&[("#n", "name")], json!({}));
        let paths = parse_projection("#n, m.a, l[1]", &mut p).unwrap();
        let it = item(json!({
            "name": {"S": "n"}, "other": {"S": "o"},
            "m": {"M": {"a": {"N": "1"}, "b": {"N": "2"}}},
            "l": {"L": [{"S": "x"}, {"S": "y"}]}
        }));
        let out = Item::new(project(&it, &paths)).to_json();
        assert_eq!(
            out,
            json!({"name": {"S": "n"}, "m": {"M": {"a": {"N": "1"}}}, "l": {"L": [{"S": "y"}]}})
        );
    }

    // --- AWS's expression limits, and the depth bounds behind them -----------------------

    fn v() -> Placeholders {
        ph(&[], json!({":v": {"N": "1"}}))
    }

    fn cond_err(src: &str, kind: Kind) -> String {
        parse_condition(src, kind, &mut v()).unwrap_err().message
    }

    #[test]
    fn expression_size_is_limited_to_4_kb() {
        let name = |len: usize| format!("a{}", "z".repeat(len - 1));
        let mut p = v();
        assert_eq!(parse_projection(&name(4096), &mut p).unwrap().len(), 1);
        let e = parse_projection(&name(4097), &mut p).unwrap_err();
        assert_eq!(e.code, "ValidationException");
        assert_eq!(
            e.message,
            "Invalid ProjectionExpression: Expression size has exceeded the maximum allowed size;"
        );
        let long = format!("{} = :v", name(5000));
        assert_eq!(
            cond_err(&long, Kind::Condition),
            "Invalid ConditionExpression: Expression size has exceeded the maximum allowed size; expression size: 5005"
        );
        assert!(cond_err(&long, Kind::Filter).ends_with("; expression size: 5005"));
        assert!(cond_err(&long, Kind::KeyCondition).ends_with("allowed size;"));
        let e = parse_update(&format!("SET {long}"), &mut v()).unwrap_err();
        assert_eq!(
            e.message,
            "Invalid UpdateExpression: Expression size has exceeded the maximum allowed size;"
        );
    }

    #[test]
    fn operators_are_limited_to_300() {
        // 1 + 2 × 149 = 299 operators (`=` and `AND`), then 301.
        let chain = |n: usize| format!("a = :v{}", " AND a = :v".repeat(n));
        let mut p = v();
        parse_condition(&chain(149), Kind::Filter, &mut p).unwrap();
        assert_eq!(
            cond_err(&chain(150), Kind::Filter),
            "Invalid FilterExpression: The expression contains too many operators; operator count: 301"
        );
        // NOT, BETWEEN, IN and functions count; 300 exactly is accepted.
        let nots = |n: usize| format!("{}a = :v", "NOT ".repeat(n));
        parse_condition(&nots(299), Kind::Condition, &mut v()).unwrap();
        assert!(cond_err(&nots(300), Kind::Condition).ends_with("operator count: 301"));
        let between = format!("{}a BETWEEN :v AND :v", "NOT ".repeat(300));
        assert!(cond_err(&between, Kind::Condition).ends_with("operator count: 301"));
        let sizes = format!("{}size(a) IN (:v, :v)", "NOT ".repeat(299));
        assert!(cond_err(&sizes, Kind::Condition).ends_with("operator count: 301"));
        // SET's `=` and the commas do not count; functions and `+` do.
        let sets = |n: usize| format!("SET {}", vec!["a = :v + :v"; n].join(", "));
        parse_update(&sets(300), &mut v()).unwrap_err(); // paths overlap, but parsed
        let e = parse_update(&sets(301), &mut v()).unwrap_err();
        assert!(e.message.ends_with("operator count: 301"), "{}", e.message);
    }

    #[test]
    fn in_takes_at_most_100_operands() {
        let list = |n: usize| format!("a IN ({})", vec![":v"; n].join(", "));
        parse_condition(&list(100), Kind::Filter, &mut v()).unwrap();
        assert_eq!(
            cond_err(&list(101), Kind::Filter),
            "Invalid FilterExpression: The IN operator is provided with too many operands; number of operands: 101"
        );
    }

    #[test]
    fn document_paths_are_limited_to_32_levels() {
        let path = |n: usize| format!("a{}", ".b".repeat(n - 1));
        let mut p = v();
        assert_eq!(parse_projection(&path(32), &mut p).unwrap()[0].len(), 32);
        assert_eq!(
            parse_projection(&path(33), &mut p).unwrap_err().message,
            "Invalid ProjectionExpression: The document path has too many nesting levels; nesting levels: 33"
        );
        let indexed = format!("a{} = :v", "[0]".repeat(32));
        assert!(cond_err(&indexed, Kind::Condition).ends_with("nesting levels: 33"));
        // The 100,000-level path of the report is refused by size before it is read.
        let huge = format!("{} = :v", path(100_000));
        assert!(cond_err(&huge, Kind::Condition).contains("Expression size has exceeded"));
    }

    #[test]
    fn redundant_parentheses_are_refused() {
        let mut p = v();
        parse_condition("(a = :v)", Kind::Condition, &mut p).unwrap();
        parse_condition("((a = :v) AND a = :v)", Kind::Condition, &mut p).unwrap();
        parse_condition("((a = :v) AND (a = :v))", Kind::Condition, &mut p).unwrap();
        parse_condition("(NOT (a = :v))", Kind::Condition, &mut p).unwrap();
        assert_eq!(
            cond_err("((a = :v))", Kind::KeyCondition),
            "Invalid KeyConditionExpression: The expression has redundant parentheses;"
        );
        // 2,000 nested pairs fit in 4 KB; refused as the first group opens.
        let deep = format!("{}a = :v{}", "(".repeat(2000), ")".repeat(2000));
        assert!(cond_err(&deep, Kind::Condition).ends_with("redundant parentheses;"));
    }

    #[test]
    fn parser_depth_is_bounded_for_malformed_input() {
        // Unclosed, so not "redundant": a plain syntax error, reached without recursion.
        for open in ["(".repeat(4000), "(NOT ".repeat(250)] {
            assert_eq!(
                cond_err(&open, Kind::Condition),
                "Invalid ConditionExpression: Syntax error; token: <EOF>, near: \"\""
            );
        }
        let calls = format!("SET a = {}", "if_not_exists(a, ".repeat(240));
        let e = parse_update(&calls, &mut v()).unwrap_err();
        assert!(e.message.contains("Syntax error"), "{}", e.message);
    }

    #[test]
    fn the_reported_inputs_are_refused() {
        let parens = format!("{}pk = :v{}", "(".repeat(3000), ")".repeat(3000));
        assert!(cond_err(&parens, Kind::KeyCondition).contains("Expression size"));
        assert!(cond_err(&parens, Kind::Condition).contains("Expression size"));
        let nots = format!("{}pk = :v", "NOT ".repeat(10_000));
        assert!(cond_err(&nots, Kind::Filter).contains("Expression size"));
        let ands = format!("pk = :v{}", " AND pk = :v".repeat(100_000));
        assert!(cond_err(&ands, Kind::Filter).contains("Expression size"));
        for f in ["if_not_exists(a, ", "list_append(:v, "] {
            let src = format!("SET a = {}:v{}", f.repeat(10_000), ")".repeat(10_000));
            let e = parse_update(&src, &mut v()).unwrap_err();
            assert!(e.message.contains("Expression size"), "{}", e.message);
        }
    }

    /// Runs `f` on a thread with half the 2 MiB stack that tokio's workers (and the test
    /// harness) give each thread: passing here, in an unoptimised build, is the proof that
    /// the deepest input the limits let through has at least 2x headroom (release builds
    /// use far smaller frames). Measured: the update case needs 512-768 KiB unoptimised.
    fn on_small_stack(f: impl FnOnce() + Send + 'static) {
        std::thread::Builder::new()
            .stack_size(1024 * 1024)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn stack_the_deepest_accepted_conditions_parse_evaluate_and_drop() {
        on_small_stack(|| {
            let it = item(json!({"a": {"N": "1"}}));
            // Deepest recursion per operator: a group and a NOT at every level.
            let groups = format!("{}a = :v{}", "(NOT ".repeat(299), ")".repeat(299));
            // Deepest tree: 299 NOTs (recursed over by eval and drop).
            let nots = format!("{}a = :v", "NOT ".repeat(299));
            // Longest left-nested chain.
            let ands = format!("a = :v{}", " AND a = :v".repeat(149));
            let ors = format!("a = :v{}", " OR a = :v".repeat(149));
            for src in [groups, nots, ands, ors] {
                assert!(src.len() <= MAX_EXPRESSION_BYTES);
                let c = parse_condition(&src, Kind::Filter, &mut v()).unwrap();
                eval_condition(&c, Some(&it));
                drop(c);
            }
            // Malformed input, as deep as 4 KB allows.
            cond_err(&"(".repeat(4000), Kind::Filter);
            cond_err(&"(NOT ".repeat(300), Kind::Filter);
            let unclosed = format!("SET a = {}", "list_append(".repeat(299));
            parse_update(&unclosed, &mut v()).unwrap_err();
        });
    }

    #[test]
    fn stack_the_deepest_accepted_updates_parse_and_apply() {
        on_small_stack(|| {
            let fits = |prefix: &str, suffix: &str| {
                let n = (MAX_EXPRESSION_BYTES - 16) / (prefix.len() + suffix.len());
                format!("SET a = {}:v{}", prefix.repeat(n), suffix.repeat(n))
            };
            let values = ph(&[], json!({":v": {"L": [{"N": "1"}]}}));
            for src in [fits("list_append(", ",:v)"), fits("if_not_exists(b,", ")")] {
                let mut p = Placeholders::new(BTreeMap::new(), values.values.clone());
                let actions = parse_update(&src, &mut p).unwrap();
                let mut attrs = item(json!({"a": {"N": "1"}}));
                apply_update(&mut attrs, &actions).unwrap();
            }
        });
    }
}
