//! CloudWatch's composite alarm rule language: parsing, limits and evaluation of one rule.
//!
//! A composite alarm's rule combines the states of other alarms (its *children*):
//!
//! ```text
//! ALARM("FrontEndApiService_High_Fault_Rate") OR ALARM("FrontEndApiService_High_P99_Latency")
//! (ALARM(CPUUtilizationTooHigh) OR ALARM(DiskReadOpsTooHigh)) AND OK(NetworkOutTooHigh)
//! ```
//!
//! # Grammar
//!
//! ```text
//! rule     = expr                         the whole input; whitespace (newlines too) separates tokens
//! expr     = unary { "AND" unary }        a chain of one operator only:
//!          | unary { "OR" unary }         AND and OR never mix without parentheses
//! unary    = "NOT" unary | primary
//! primary  = "(" expr ")" | "TRUE" | "FALSE"
//!          | ("ALARM" | "OK" | "INSUFFICIENT_DATA") "(" name ")"
//!          | "AT_LEAST" "(" threshold "," state "," "(" name { "," name } ")" ")"
//! threshold = whole number ≥ 1 | number "%"  (above 0, at most 100)
//! state    = ["NOT_"] ("ALARM" | "OK" | "INSUFFICIENT_DATA")
//! name     = '"' any characters but '"' and control characters '"'
//!          | one or more characters other than whitespace, '(', ')', '"' and control characters
//! ```
//!
//! `AT_LEAST(2, ALARM, (a, b, c))` (added to CloudWatch in 2025) holds when at least two of the
//! alarms are in ALARM; `AT_LEAST(60%, NOT_OK, (a, b, c))` when at least 60% of them are not OK.
//! A count above the number of alarms could never hold and is refused.
//!
//! Names may be alarm ARNs, as CDK renders every composite
//! (`ALARM("arn:aws:cloudwatch:REGION:ACCOUNT:alarm:NAME")`); [`resolve_arns`] turns them into
//! the names of one region's set, refusing another region's or another account's.
//!
//! # Precedence
//!
//! AWS documents none, so Gantry refuses to guess: `NOT` applies to the one operand after it
//! (`NOT ALARM(a) AND ALARM(b)` is `(NOT ALARM(a)) AND ALARM(b)`), and a rule that mixes `AND`
//! and `OR` at one level (`ALARM(a) OR ALARM(b) AND ALARM(c)`) is an error that asks for
//! parentheses. A reader of a rollback rule never has to know a precedence table, and a rule
//! copied from CloudWatch either means the same here or is refused.
//!
//! Keywords are upper case, as in every AWS example; `and` is refused with a hint. A name that
//! holds spaces or parentheses must be quoted; names cannot contain `"` (AWS documents no escape).
//!
//! # Limits
//!
//! AWS's own: a rule is 1 to [`MAX_RULE_CHARS`] characters, names at most
//! [`MAX_ALARM_NAME_CHARS`], at most [`MAX_CHILDREN`] distinct child alarms and
//! [`MAX_ELEMENTS`] elements. Gantry adds [`MAX_NESTING`].
//!
//! Errors carry the 1-based character column in the rule (newlines count as one character) and
//! say what was expected there.

use std::collections::HashSet;
use std::fmt;

use crate::AlarmState;

/// AWS's limit on the length of `AlarmRule`, in characters.
pub const MAX_RULE_CHARS: usize = 10_240;
/// AWS's limit on the number of distinct child alarms one rule may reference.
pub const MAX_CHILDREN: usize = 100;
/// AWS's limit on elements: child alarm references, `TRUE`/`FALSE` and parenthesised groups
/// (Gantry counts one element per pair of grouping parentheses).
pub const MAX_ELEMENTS: usize = 500;
/// AWS's limit on the length of an alarm name, in characters.
pub const MAX_ALARM_NAME_CHARS: usize = 255;
/// Gantry's limit on nested groups and `NOT`s. AWS documents none; this bounds the parser's and
/// the evaluator's recursion so a hostile rule cannot overflow the stack, and no readable rule
/// comes near it.
pub const MAX_NESTING: usize = 64;

/// A parsed composite rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rule {
    /// `TRUE` or `FALSE`.
    Constant(bool),
    /// `ALARM(name)`, `OK(name)` or `INSUFFICIENT_DATA(name)`: true when the child alarm `name`
    /// is in `state`.
    State {
        state: AlarmState,
        alarm: String,
    },
    Not(Box<Rule>),
    /// Two or more operands, all of which must hold.
    And(Vec<Rule>),
    /// Two or more operands, one of which must hold.
    Or(Vec<Rule>),
    /// `AT_LEAST(threshold, [NOT_]STATE, (alarms...))`: enough of `alarms` are (or, `negated`,
    /// are not) in `state`.
    AtLeast {
        threshold: Threshold,
        state: AlarmState,
        negated: bool,
        alarms: Vec<String>,
    },
}

/// Units of [`Threshold::Percent`] in one percent: six decimals, more than a written
/// threshold of at most [`MAX_PERCENT_DIGITS`] characters can hold.
const PERCENT_SCALE: u64 = 1_000_000;
/// The longest percentage `AT_LEAST` reads (`12.345678`): bounds the number and keeps every
/// digit exact in [`PERCENT_SCALE`] units.
const MAX_PERCENT_DIGITS: usize = 9;

/// A written percentage (`50`, `12.5`, `0.001`), above 0 and at most 100, exactly in
/// millionths of a percent; `None` otherwise.
fn exact_percent(number: &str) -> Option<u32> {
    if number.is_empty() || number.len() > MAX_PERCENT_DIGITS {
        return None;
    }
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || fraction.contains('.') || fraction.len() > 6 {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let fraction: u64 =
        if fraction.is_empty() { 0 } else { format!("{fraction:0<6}").parse().ok()? };
    let value = whole.checked_mul(PERCENT_SCALE)?.checked_add(fraction)?;
    (value > 0 && value <= 100 * PERCENT_SCALE).then_some(value as u32)
}

/// How many of an `AT_LEAST`'s alarms must match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threshold {
    /// At least this many.
    Count(u32),
    /// At least this share, in millionths of a percent (`62.5%` is 62_500_000), read from the
    /// written digits, so the rule stays comparable and exact: no written percentage above 0%
    /// rounds to 0%, and none rounds across a share of alarms (`66.666%` of 3 alarms is 2).
    Percent(u32),
}

impl Rule {
    /// The child alarms the rule references, each once, in the order they first appear.
    pub fn alarm_names(&self) -> Vec<&str> {
        let mut names = Vec::new();
        self.collect_names(&mut names);
        names
    }

    fn collect_names<'a>(&'a self, names: &mut Vec<&'a str>) {
        match self {
            Rule::Constant(_) => {}
            Rule::State { alarm, .. } => {
                if !names.contains(&alarm.as_str()) {
                    names.push(alarm);
                }
            }
            Rule::Not(inner) => inner.collect_names(names),
            Rule::AtLeast { alarms, .. } => {
                for alarm in alarms {
                    if !names.contains(&alarm.as_str()) {
                        names.push(alarm);
                    }
                }
            }
            Rule::And(operands) | Rule::Or(operands) => {
                for operand in operands {
                    operand.collect_names(names);
                }
            }
        }
    }

    /// Whether the rule holds, given each child's current state. The caller answers for every
    /// child; [`crate::alarm_set::AlarmSet`] refuses rules that name undefined alarms, so it
    /// always can.
    pub fn holds(&self, state_of: &mut impl FnMut(&str) -> AlarmState) -> bool {
        match self {
            Rule::Constant(value) => *value,
            Rule::State { state, alarm } => state_of(alarm) == *state,
            Rule::Not(inner) => !inner.holds(state_of),
            Rule::And(operands) => operands.iter().all(|operand| operand.holds(state_of)),
            Rule::Or(operands) => operands.iter().any(|operand| operand.holds(state_of)),
            Rule::AtLeast { threshold, state, negated, alarms } => {
                let matching =
                    alarms.iter().filter(|alarm| (state_of(alarm) == *state) != *negated).count();
                match threshold {
                    Threshold::Count(count) => matching >= *count as usize,
                    // matching / n ≥ p / (100 · PERCENT_SCALE), in integers.
                    Threshold::Percent(millionths) => {
                        matching as u64 * 100 * PERCENT_SCALE
                            >= u64::from(*millionths) * alarms.len() as u64
                    }
                }
            }
        }
    }

    /// The rule with every alarm named by ARN renamed to the alarm's name, for the set of
    /// `region` in `account`. See [`resolve_arns`].
    fn map_names(
        &self,
        rename: &mut impl FnMut(&str) -> Result<String, String>,
    ) -> Result<Rule, String> {
        Ok(match self {
            Rule::Constant(value) => Rule::Constant(*value),
            Rule::State { state, alarm } => Rule::State { state: *state, alarm: rename(alarm)? },
            Rule::Not(inner) => Rule::Not(Box::new(inner.map_names(rename)?)),
            Rule::And(operands) => Rule::And(
                operands
                    .iter()
                    .map(|operand| operand.map_names(rename))
                    .collect::<Result<_, _>>()?,
            ),
            Rule::Or(operands) => Rule::Or(
                operands
                    .iter()
                    .map(|operand| operand.map_names(rename))
                    .collect::<Result<_, _>>()?,
            ),
            Rule::AtLeast { threshold, state, negated, alarms } => Rule::AtLeast {
                threshold: *threshold,
                state: *state,
                negated: *negated,
                alarms: alarms.iter().map(|alarm| rename(alarm)).collect::<Result<_, _>>()?,
            },
        })
    }
}

/// An alarm ARN's parts: `arn:PARTITION:cloudwatch:REGION:ACCOUNT:alarm:NAME`. `None` for a
/// plain name. (Alarm names may hold `:`, so the name is everything after `alarm:`.)
pub fn parse_alarm_arn(text: &str) -> Option<AlarmArn<'_>> {
    let rest = text.strip_prefix("arn:")?;
    let mut parts = rest.splitn(6, ':');
    let (partition, service, region, account, kind, name) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (service == "cloudwatch" && kind == "alarm" && !name.is_empty()).then_some(AlarmArn {
        partition,
        region,
        account,
        name,
    })
}

/// The parts of an alarm ARN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlarmArn<'a> {
    pub partition: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    pub name: &'a str,
}

/// Renames every alarm the rule names by ARN to the alarm's name in `region`'s set, as
/// CloudWatch resolves them: a composite's children are in its own account and region. An ARN
/// of another region, or of an account other than `account`, is refused, naming the ARN.
pub fn resolve_arns(rule: &Rule, region: &str, account: &str) -> Result<Rule, String> {
    rule.map_names(&mut |name| match parse_alarm_arn(name) {
        None if name.starts_with("arn:") => Err(format!(
            "`{name}` is not an alarm ARN (arn:aws:cloudwatch:REGION:ACCOUNT:alarm:NAME)"
        )),
        None => Ok(name.to_string()),
        Some(arn) if arn.region != region => Err(format!(
            "`{name}` names an alarm in region `{}`; a composite's alarms are in its own region \
             (`{region}`)",
            arn.region
        )),
        Some(arn) if arn.account != account => Err(format!(
            "`{name}` names an alarm of account `{}`; the configured account is `{account}`",
            arn.account
        )),
        Some(arn) => Ok(arn.name.to_string()),
    })
}

/// The canonical form: names quoted, every nested `AND`/`OR` parenthesised. It parses back to
/// the same rule.
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn operand(rule: &Rule, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match rule {
                Rule::And(_) | Rule::Or(_) => write!(f, "({rule})"),
                _ => write!(f, "{rule}"),
            }
        }
        match self {
            Rule::Constant(true) => f.write_str("TRUE"),
            Rule::Constant(false) => f.write_str("FALSE"),
            Rule::State { state, alarm } => write!(f, "{}(\"{alarm}\")", state.name()),
            Rule::Not(inner) => {
                f.write_str("NOT ")?;
                operand(inner, f)
            }
            Rule::AtLeast { threshold, state, negated, alarms } => {
                match threshold {
                    Threshold::Count(count) => write!(f, "AT_LEAST({count}, ")?,
                    Threshold::Percent(millionths) => {
                        let scale = PERCENT_SCALE as u32;
                        let whole = millionths / scale;
                        match millionths % scale {
                            0 => write!(f, "AT_LEAST({whole}%, ")?,
                            fraction => {
                                let fraction = format!("{fraction:06}");
                                write!(f, "AT_LEAST({whole}.{}%, ", fraction.trim_end_matches('0'))?
                            }
                        }
                    }
                }
                let names: Vec<String> =
                    alarms.iter().map(|alarm| format!("\"{alarm}\"")).collect();
                let not = if *negated { "NOT_" } else { "" };
                write!(f, "{not}{}, ({}))", state.name(), names.join(", "))
            }
            Rule::And(operands) | Rule::Or(operands) => {
                let keyword = if matches!(self, Rule::And(_)) { " AND " } else { " OR " };
                for (index, rule) in operands.iter().enumerate() {
                    if index > 0 {
                        f.write_str(keyword)?;
                    }
                    operand(rule, f)?;
                }
                Ok(())
            }
        }
    }
}

/// Why a rule was refused, and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct CompositeError {
    /// 1-based character column in the rule.
    pub column: usize,
    pub message: String,
}

/// Parses a composite alarm rule, checking AWS's limits.
pub fn parse(rule: &str) -> Result<Rule, CompositeError> {
    let chars: Vec<char> = rule.chars().collect();
    if chars.len() > MAX_RULE_CHARS {
        return Err(CompositeError {
            column: MAX_RULE_CHARS + 1,
            message: format!(
                "the rule is {} characters long; CloudWatch allows at most {MAX_RULE_CHARS}: \
                 split it into several composite alarms",
                chars.len()
            ),
        });
    }
    let mut parser = Parser { chars, position: 0, elements: 0, depth: 0, children: HashSet::new() };
    parser.skip_whitespace();
    if parser.at_end() {
        return Err(parser.error_here(
            "the rule is empty: expected an expression such as `ALARM(\"name\")`".to_string(),
        ));
    }
    let parsed = parser.expression()?;
    parser.skip_whitespace();
    if !parser.at_end() {
        let found = parser.found();
        let hint = parser.keyword_hint();
        return Err(
            parser.error_here(format!("expected `AND`, `OR` or end of rule, found {found}{hint}"))
        );
    }
    Ok(parsed)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Operator {
    And,
    Or,
}

impl Operator {
    fn keyword(self) -> &'static str {
        match self {
            Operator::And => "AND",
            Operator::Or => "OR",
        }
    }
}

const KEYWORDS: [&str; 9] =
    ["ALARM", "OK", "INSUFFICIENT_DATA", "TRUE", "FALSE", "AND", "OR", "NOT", "AT_LEAST"];

struct Parser {
    chars: Vec<char>,
    position: usize,
    elements: usize,
    depth: usize,
    children: HashSet<String>,
}

impl Parser {
    fn at_end(&self) -> bool {
        self.position >= self.chars.len()
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.position).copied()
    }

    fn column(&self) -> usize {
        self.position + 1
    }

    fn error_here(&self, message: String) -> CompositeError {
        CompositeError { column: self.column(), message }
    }

    fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.position += 1;
        }
    }

    /// The word (letters, digits, `_`) starting at the cursor, if one starts there.
    fn word(&self) -> Option<String> {
        let first = self.peek()?;
        if !(first.is_alphanumeric() || first == '_') {
            return None;
        }
        Some(
            self.chars[self.position..]
                .iter()
                .take_while(|c| c.is_alphanumeric() || **c == '_')
                .collect(),
        )
    }

    /// What is at the cursor, for an error message.
    fn found(&self) -> String {
        match (self.word(), self.peek()) {
            (Some(word), _) => format!("`{word}`"),
            (None, Some(c)) => format!("`{c}`"),
            (None, None) => "end of rule".to_string(),
        }
    }

    /// A hint when the word at the cursor is a keyword in the wrong case.
    fn keyword_hint(&self) -> String {
        let Some(word) = self.word() else { return String::new() };
        match KEYWORDS.iter().find(|keyword| keyword.eq_ignore_ascii_case(&word)) {
            Some(keyword) if **keyword != word => {
                format!(" (keywords are upper case: write `{keyword}`)")
            }
            _ => String::new(),
        }
    }

    fn count_element(&mut self, column: usize) -> Result<(), CompositeError> {
        self.elements += 1;
        if self.elements > MAX_ELEMENTS {
            return Err(CompositeError {
                column,
                message: format!(
                    "the rule has more than {MAX_ELEMENTS} elements (alarm references, TRUE, \
                     FALSE and parenthesised groups), CloudWatch's limit: split it into several \
                     composite alarms"
                ),
            });
        }
        Ok(())
    }

    fn enter(&mut self, column: usize) -> Result<(), CompositeError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(CompositeError {
                column,
                message: format!(
                    "the rule nests groups and `NOT` more than {MAX_NESTING} deep: simplify it"
                ),
            });
        }
        Ok(())
    }

    /// `unary { AND unary }` or `unary { OR unary }`.
    fn expression(&mut self) -> Result<Rule, CompositeError> {
        self.skip_whitespace();
        // Where each operand starts and ends, to show a mixed chain's two readings.
        let mut spans = vec![self.position];
        let mut operands = vec![self.unary()?];
        spans.push(self.position);
        let mut chain: Option<(Operator, usize)> = None;
        loop {
            self.skip_whitespace();
            let operator = match self.word().as_deref() {
                Some("AND") => Operator::And,
                Some("OR") => Operator::Or,
                _ => break,
            };
            let column = self.column();
            if let Some((previous, previous_column)) = chain
                && previous != operator
            {
                let mixed = self.error_here(String::new());
                let readings = self.readings(&spans, previous, operator);
                return Err(CompositeError {
                    message: format!(
                        "`{}` after `{}` at column {previous_column}: AND and OR cannot be mixed \
                         without parentheses, since CloudWatch does not document which binds \
                         first; write {readings}",
                        operator.keyword(),
                        previous.keyword(),
                    ),
                    ..mixed
                });
            }
            chain = Some((operator, column));
            self.position += operator.keyword().len();
            self.skip_whitespace();
            if self.at_end() {
                return Err(self.error_here(format!(
                    "expected an alarm expression after `{}` at column {column}, found end of rule",
                    operator.keyword()
                )));
            }
            let start = self.position;
            operands.push(self.unary()?);
            spans.pop();
            spans.push(start);
            spans.push(self.position);
        }
        Ok(match chain {
            None => operands.pop().expect("one operand"),
            Some((Operator::And, _)) => Rule::And(operands),
            Some((Operator::Or, _)) => Rule::Or(operands),
        })
    }

    /// The two readings of a chain `a PREVIOUS b OPERATOR c`, where the cursor is at
    /// `OPERATOR` and `spans` are the chain's operand boundaries so far (each operand's start,
    /// then the last one's end): `(a PREVIOUS b) OPERATOR c` or `a PREVIOUS (b OPERATOR c)`,
    /// in the rule's own words. `a`, `b` and `c` stand in when the rest does not parse.
    fn readings(&mut self, spans: &[usize], previous: Operator, operator: Operator) -> String {
        let fallback = format!(
            "`(a {p} b) {o} c` or `a {p} (b {o} c)`",
            p = previous.keyword(),
            o = operator.keyword()
        );
        fn text(chars: &[char], from: usize, to: usize) -> String {
            chars[from..to].iter().collect::<String>().trim().to_string()
        }
        let (first, last_start, end) = (spans[0], spans[spans.len() - 2], spans[spans.len() - 1]);
        let saved = (self.position, self.elements, self.depth, self.children.clone());
        self.position += operator.keyword().len();
        self.skip_whitespace();
        let next_start = self.position;
        let next = self.unary().ok().map(|_| text(&self.chars, next_start, self.position));
        self.skip_whitespace();
        let more = if self.at_end() || self.peek() == Some(')') { "" } else { " …" };
        (self.position, self.elements, self.depth, self.children) = saved;
        let Some(next) = next else { return fallback };
        let o = operator.keyword();
        let left = text(&self.chars, first, end);
        let before_last = text(&self.chars, first, last_start);
        let last = text(&self.chars, last_start, end);
        format!("`({left}) {o} {next}{more}` or `{before_last} ({last} {o} {next}){more}`")
    }

    fn unary(&mut self) -> Result<Rule, CompositeError> {
        self.skip_whitespace();
        if self.word().as_deref() == Some("NOT") {
            let column = self.column();
            self.enter(column)?;
            self.position += "NOT".len();
            self.skip_whitespace();
            if self.at_end() {
                return Err(self.error_here(format!(
                    "expected an alarm expression after `NOT` at column {column}, found end of rule"
                )));
            }
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Rule::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Rule, CompositeError> {
        self.skip_whitespace();
        let column = self.column();
        if self.peek() == Some('(') {
            self.count_element(column)?;
            self.enter(column)?;
            self.position += 1;
            let inner = self.expression()?;
            self.skip_whitespace();
            if self.peek() != Some(')') {
                let found = self.found();
                let hint = self.keyword_hint();
                return Err(self.error_here(format!(
                    "expected `AND`, `OR` or `)` to close `(` opened at column {column}, \
                     found {found}{hint}"
                )));
            }
            self.position += 1;
            self.depth -= 1;
            return Ok(inner);
        }
        let word = self.word();
        if word.as_deref() == Some("AT_LEAST") {
            return self.at_least(column);
        }
        let state = match word.as_deref() {
            Some("TRUE" | "FALSE") => {
                self.count_element(column)?;
                self.position += word.as_ref().map_or(0, String::len);
                return Ok(Rule::Constant(word.as_deref() == Some("TRUE")));
            }
            Some("ALARM") => AlarmState::Alarm,
            Some("OK") => AlarmState::Ok,
            Some("INSUFFICIENT_DATA") => AlarmState::InsufficientData,
            _ => {
                let found = self.found();
                let hint = self.keyword_hint();
                return Err(self.error_here(format!(
                    "expected `ALARM(`, `OK(`, `INSUFFICIENT_DATA(`, `TRUE`, `FALSE`, `NOT` or \
                     `(`, found {found}{hint}"
                )));
            }
        };
        self.position += state.name().len();
        self.skip_whitespace();
        if self.peek() != Some('(') {
            let found = self.found();
            return Err(self.error_here(format!(
                "expected `(` after `{}` at column {column}, found {found}",
                state.name()
            )));
        }
        self.position += 1;
        self.skip_whitespace();
        let alarm = self.name(state.name(), column, false)?;
        self.skip_whitespace();
        if self.peek() != Some(')') {
            let found = self.found();
            return Err(self.error_here(format!(
                "expected `)` to close `{}(` opened at column {column}, found {found}",
                state.name()
            )));
        }
        self.position += 1;
        self.count_element(column)?;
        if self.children.insert(alarm.clone()) && self.children.len() > MAX_CHILDREN {
            return Err(CompositeError {
                column,
                message: format!(
                    "the rule references more than {MAX_CHILDREN} distinct alarms, CloudWatch's \
                     limit: group some into their own composite alarm"
                ),
            });
        }
        Ok(Rule::State { state, alarm })
    }

    /// Expects `expected` at the cursor (after whitespace), for `AT_LEAST(` opened at `column`.
    fn expect(&mut self, expected: char, column: usize, what: &str) -> Result<(), CompositeError> {
        self.skip_whitespace();
        if self.peek() != Some(expected) {
            let found = self.found();
            return Err(self.error_here(format!(
                "expected {what} in `AT_LEAST(` opened at column {column}, found {found}"
            )));
        }
        self.position += 1;
        Ok(())
    }

    /// `AT_LEAST(threshold, [NOT_]STATE, (name, ...))`; the cursor is at `AT_LEAST`.
    fn at_least(&mut self, column: usize) -> Result<Rule, CompositeError> {
        self.position += "AT_LEAST".len();
        self.expect('(', column, "`(`")?;
        self.skip_whitespace();
        let threshold_column = self.column();
        let number: String = self.chars[self.position..]
            .iter()
            .take_while(|c| c.is_ascii_digit() || **c == '.')
            .collect();
        self.position += number.chars().count();
        let percent = self.peek() == Some('%');
        if percent {
            self.position += 1;
        }
        let threshold = if percent {
            match exact_percent(&number) {
                Some(millionths) => Threshold::Percent(millionths),
                None => {
                    return Err(CompositeError {
                        column: threshold_column,
                        message: format!(
                            "`AT_LEAST` takes a percentage above 0% and at most 100%, found `{number}%`"
                        ),
                    });
                }
            }
        } else {
            match number.parse::<u32>() {
                Ok(count) if count >= 1 && count as usize <= MAX_CHILDREN => {
                    Threshold::Count(count)
                }
                _ => {
                    let found =
                        if number.is_empty() { self.found() } else { format!("`{number}`") };
                    return Err(CompositeError {
                        column: threshold_column,
                        message: format!(
                            "`AT_LEAST` takes a count of alarms (1 or more) or a percentage such as \
                             `50%` first, found {found}"
                        ),
                    });
                }
            }
        };
        self.expect(',', column, "`,` after the threshold")?;
        self.skip_whitespace();
        let state_column = self.column();
        let word = self.word().unwrap_or_default();
        let (negated, state_name) = match word.strip_prefix("NOT_") {
            Some(rest) => (true, rest),
            None => (false, word.as_str()),
        };
        let state = match state_name {
            "ALARM" => AlarmState::Alarm,
            "OK" => AlarmState::Ok,
            "INSUFFICIENT_DATA" => AlarmState::InsufficientData,
            _ => {
                let found = self.found();
                return Err(CompositeError {
                    column: state_column,
                    message: format!(
                        "expected a state in `AT_LEAST(` opened at column {column}: `ALARM`, `OK`, \
                         `INSUFFICIENT_DATA`, `NOT_ALARM`, `NOT_OK` or `NOT_INSUFFICIENT_DATA`, \
                         found {found}"
                    ),
                });
            }
        };
        self.position += word.chars().count();
        self.expect(',', column, "`,` after the state")?;
        self.expect('(', column, "`(` to open the list of alarms")?;
        let mut alarms = Vec::new();
        loop {
            self.skip_whitespace();
            let name_column = self.column();
            let alarm = self.name("AT_LEAST", column, true)?;
            self.count_element(name_column)?;
            if self.children.insert(alarm.clone()) && self.children.len() > MAX_CHILDREN {
                return Err(CompositeError {
                    column: name_column,
                    message: format!(
                        "the rule references more than {MAX_CHILDREN} distinct alarms, \
                         CloudWatch's limit: group some into their own composite alarm"
                    ),
                });
            }
            alarms.push(alarm);
            self.skip_whitespace();
            match self.peek() {
                Some(',') => self.position += 1,
                Some(')') => {
                    self.position += 1;
                    break;
                }
                _ => {
                    let found = self.found();
                    return Err(self.error_here(format!(
                        "expected `,` or `)` in the list of alarms of `AT_LEAST(` opened at \
                         column {column}, found {found}"
                    )));
                }
            }
        }
        self.expect(')', column, "`)` to close it")?;
        if let Threshold::Count(count) = threshold
            && count as usize > alarms.len()
        {
            return Err(CompositeError {
                column: threshold_column,
                message: format!(
                    "`AT_LEAST({count}, ...)` lists only {} alarm{}, so it could never hold",
                    alarms.len(),
                    if alarms.len() == 1 { "" } else { "s" }
                ),
            });
        }
        Ok(Rule::AtLeast { threshold, state, negated, alarms })
    }

    /// A quoted or unquoted alarm name; the cursor is just after `(`.
    /// `function` is the function the name is in (`ALARM`, `AT_LEAST`, ...); in `AT_LEAST`'s
    /// list (`in_list`) an unquoted name also ends at `,`.
    fn name(
        &mut self,
        function: &str,
        function_column: usize,
        in_list: bool,
    ) -> Result<String, CompositeError> {
        let start = self.column();
        let name: String = if self.peek() == Some('"') {
            self.position += 1;
            let name: String =
                self.chars[self.position..].iter().take_while(|c| **c != '"').collect();
            self.position += name.chars().count();
            if self.at_end() {
                return Err(self.error_here(format!(
                    "expected `\"` to close the alarm name opened at column {start}"
                )));
            }
            self.position += 1;
            name
        } else {
            let name: String = self.chars[self.position..]
                .iter()
                .take_while(|c| {
                    !(c.is_whitespace()
                        || c.is_control()
                        || "()\"".contains(**c)
                        || (in_list && **c == ','))
                })
                .collect();
            self.position += name.chars().count();
            if name.is_empty() {
                let found = self.found();
                return Err(self.error_here(format!(
                    "expected an alarm name in `{function}(` opened at column {function_column}, \
                     found {found}"
                )));
            }
            name
        };
        if name.is_empty() {
            return Err(CompositeError {
                column: start,
                message: "the alarm name is empty".to_string(),
            });
        }
        if let Some(offset) = name.chars().position(char::is_control) {
            return Err(CompositeError {
                column: start + 1 + offset,
                message: "alarm names cannot contain control characters".to_string(),
            });
        }
        let length = name.chars().count();
        if length > MAX_ALARM_NAME_CHARS {
            return Err(CompositeError {
                column: start,
                message: format!(
                    "the alarm name is {length} characters long; CloudWatch allows at most \
                     {MAX_ALARM_NAME_CHARS}"
                ),
            });
        }
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `rule` and compares the canonical form (or `error: column N: message`) and the
    /// referenced names (after ` | names: `) with `expected`.
    #[track_caller]
    fn check(rule: &str, expected: &str) {
        let actual = match parse(rule) {
            Ok(parsed) => {
                let reparsed = parse(&parsed.to_string()).expect("canonical form parses");
                assert_eq!(reparsed, parsed, "canonical form of {rule:?} parses back");
                format!("{parsed} | names: {}", parsed.alarm_names().join(", "))
            }
            Err(error) => format!("error: {error}"),
        };
        assert_eq!(actual, expected, "rule: {rule}");
    }

    #[test]
    fn aws_documented_examples_parse() {
        check(
            "ALARM(CPUUtilizationTooHigh) AND ALARM(DiskReadOpsTooHigh)",
            r#"ALARM("CPUUtilizationTooHigh") AND ALARM("DiskReadOpsTooHigh") | names: CPUUtilizationTooHigh, DiskReadOpsTooHigh"#,
        );
        check(
            "ALARM(CPUUtilizationTooHigh) AND NOT ALARM(DeploymentInProgress)",
            r#"ALARM("CPUUtilizationTooHigh") AND NOT ALARM("DeploymentInProgress") | names: CPUUtilizationTooHigh, DeploymentInProgress"#,
        );
        check(
            "(ALARM(CPUUtilizationTooHigh) OR ALARM(DiskReadOpsTooHigh)) AND OK(NetworkOutTooHigh)",
            r#"(ALARM("CPUUtilizationTooHigh") OR ALARM("DiskReadOpsTooHigh")) AND OK("NetworkOutTooHigh") | names: CPUUtilizationTooHigh, DiskReadOpsTooHigh, NetworkOutTooHigh"#,
        );
        check(
            r#"(ALARM("CPUUtilizationTooHigh") OR ALARM("DiskReadOpsTooHigh")) AND OK("NetworkOutTooHigh")"#,
            r#"(ALARM("CPUUtilizationTooHigh") OR ALARM("DiskReadOpsTooHigh")) AND OK("NetworkOutTooHigh") | names: CPUUtilizationTooHigh, DiskReadOpsTooHigh, NetworkOutTooHigh"#,
        );
        check(
            "ALARM(CPUUtilizationTooHigh) OR ALARM(DiskReadOpsTooHigh)",
            r#"ALARM("CPUUtilizationTooHigh") OR ALARM("DiskReadOpsTooHigh") | names: CPUUtilizationTooHigh, DiskReadOpsTooHigh"#,
        );
        check(
            "ALARM(arn:aws:cloudwatch:us-east-1:123456789012:alarm:my-alarm) OR TRUE",
            r#"ALARM("arn:aws:cloudwatch:us-east-1:123456789012:alarm:my-alarm") OR TRUE | names: arn:aws:cloudwatch:us-east-1:123456789012:alarm:my-alarm"#,
        );
    }

    #[test]
    fn seed_examples_parse() {
        // The Builders' Library's high-severity microservice alarm, across lines, with a
        // repeated child: names are deduplicated.
        check(
            "ALARM(\"FrontEndApiService_High_Fault_Rate\") OR\n\
             ALARM(\"FrontEndApiService_High_P99_Latency\") OR\n\
             ALARM(\"FrontEndApiService_High_Errors_In_Logs\") OR\n\
             ALARM(\"FrontEndApiService_High_Errors_In_Logs\")",
            r#"ALARM("FrontEndApiService_High_Fault_Rate") OR ALARM("FrontEndApiService_High_P99_Latency") OR ALARM("FrontEndApiService_High_Errors_In_Logs") OR ALARM("FrontEndApiService_High_Errors_In_Logs") | names: FrontEndApiService_High_Fault_Rate, FrontEndApiService_High_P99_Latency, FrontEndApiService_High_Errors_In_Logs"#,
        );
        check(
            "ALARM(\"FrontEndApiService_High_Severity\") OR\nALARM(\"BackendApiService_High_Severity\") OR\nALARM(\"BackendWorkflows_High_Severity\") OR\nALARM(\"Canaries_High_Severity\")",
            r#"ALARM("FrontEndApiService_High_Severity") OR ALARM("BackendApiService_High_Severity") OR ALARM("BackendWorkflows_High_Severity") OR ALARM("Canaries_High_Severity") | names: FrontEndApiService_High_Severity, BackendApiService_High_Severity, BackendWorkflows_High_Severity, Canaries_High_Severity"#,
        );
        // The seed's one-box example ends in a dangling `OR` (a typo in the article): refused,
        // pointing at the `OR`.
        check(
            "ALARM(\"High_Severity_Aggregate_Rollback_Alarm\") OR\nALARM(\"FrontEndApiService_OneBox_High_Fault_Rate\") OR\n",
            "error: column 106: expected an alarm expression after `OR` at column 103, found end of rule",
        );
    }

    #[test]
    fn constants_not_and_grouping() {
        check("TRUE", "TRUE | names: ");
        check("  FALSE  ", "FALSE | names: ");
        check("NOT NOT TRUE", "NOT NOT TRUE | names: ");
        check("NOT ALARM(a) AND OK(b)", r#"NOT ALARM("a") AND OK("b") | names: a, b"#);
        check("NOT (ALARM(a) AND OK(b))", r#"NOT (ALARM("a") AND OK("b")) | names: a, b"#);
        check("((ALARM(a)))", r#"ALARM("a") | names: a"#);
        check(
            "ALARM(a) OR (ALARM(b) AND INSUFFICIENT_DATA(c))",
            r#"ALARM("a") OR (ALARM("b") AND INSUFFICIENT_DATA("c")) | names: a, b, c"#,
        );
        check("ALARM ( \"my alarm (eu)\" )", r#"ALARM("my alarm (eu)") | names: my alarm (eu)"#);
        check("ALARM(a)AND(OK(b))", r#"ALARM("a") AND OK("b") | names: a, b"#);
        check("ALARM(ünïcode-name_1.2)", r#"ALARM("ünïcode-name_1.2") | names: ünïcode-name_1.2"#);
    }

    #[test]
    fn and_or_mixed_without_parentheses_is_refused_with_both_readings() {
        check(
            "ALARM(a) OR ALARM(b) AND ALARM(c)",
            "error: column 22: `AND` after `OR` at column 10: AND and OR cannot be mixed without \
             parentheses, since CloudWatch does not document which binds first; write \
             `(ALARM(a) OR ALARM(b)) AND ALARM(c)` or `ALARM(a) OR (ALARM(b) AND ALARM(c))`",
        );
        check(
            "ALARM(a) AND NOT ALARM(b) OR ALARM(c)",
            "error: column 27: `OR` after `AND` at column 10: AND and OR cannot be mixed without \
             parentheses, since CloudWatch does not document which binds first; write \
             `(ALARM(a) AND NOT ALARM(b)) OR ALARM(c)` or `ALARM(a) AND (NOT ALARM(b) OR ALARM(c))`",
        );
        // A longer chain: the readings of the first mix, the rest marked `…`.
        check(
            "OK(a) OR OK(b) OR OK(c) AND OK(d) OR OK(e)",
            "error: column 25: `AND` after `OR` at column 16: AND and OR cannot be mixed without \
             parentheses, since CloudWatch does not document which binds first; write \
             `(OK(a) OR OK(b) OR OK(c)) AND OK(d) …` or `OK(a) OR OK(b) OR (OK(c) AND OK(d)) …`",
        );
        // Inside parentheses, the readings stay inside them.
        check(
            "TRUE AND (ALARM(a) OR ALARM(b) AND ALARM(c))",
            "error: column 32: `AND` after `OR` at column 20: AND and OR cannot be mixed without \
             parentheses, since CloudWatch does not document which binds first; write \
             `(ALARM(a) OR ALARM(b)) AND ALARM(c)` or `ALARM(a) OR (ALARM(b) AND ALARM(c))`",
        );
    }

    #[test]
    fn at_least_takes_a_count_or_a_percentage_and_every_state() {
        check(
            "AT_LEAST(2, ALARM, (a, \"b c\", arn:aws:cloudwatch:us-east-1:111122223333:alarm:d))",
            r#"AT_LEAST(2, ALARM, ("a", "b c", "arn:aws:cloudwatch:us-east-1:111122223333:alarm:d")) | names: a, b c, arn:aws:cloudwatch:us-east-1:111122223333:alarm:d"#,
        );
        for state in ["OK", "INSUFFICIENT_DATA", "NOT_ALARM", "NOT_OK", "NOT_INSUFFICIENT_DATA"] {
            check(
                &format!("AT_LEAST(60%, {state}, (a,b)) OR ALARM(c)"),
                &format!(r#"AT_LEAST(60%, {state}, ("a", "b")) OR ALARM("c") | names: a, b, c"#),
            );
        }
        check("AT_LEAST(12.5%, OK, (a))", r#"AT_LEAST(12.5%, OK, ("a")) | names: a"#);
        check("AT_LEAST(0.000001%, OK, (a))", r#"AT_LEAST(0.000001%, OK, ("a")) | names: a"#);
        check("AT_LEAST(066.6660%, OK, (a))", r#"AT_LEAST(66.666%, OK, ("a")) | names: a"#);
        for refused in ["0.0000001", "0.000", "1.2.3", ".5", "100.000001"] {
            check(
                &format!("AT_LEAST({refused}%, ALARM, (a))"),
                &format!(
                    "error: column 10: `AT_LEAST` takes a percentage above 0% and at most 100%, found `{refused}%`"
                ),
            );
        }
        check(
            "AT_LEAST(4, ALARM, (a, b, c))",
            "error: column 10: `AT_LEAST(4, ...)` lists only 3 alarms, so it could never hold",
        );
        check(
            "AT_LEAST(0, ALARM, (a))",
            "error: column 10: `AT_LEAST` takes a count of alarms (1 or more) or a percentage such as `50%` first, found `0`",
        );
        check(
            "AT_LEAST(101%, ALARM, (a))",
            "error: column 10: `AT_LEAST` takes a percentage above 0% and at most 100%, found `101%`",
        );
        check(
            "AT_LEAST(1, ALARMS, (a))",
            "error: column 13: expected a state in `AT_LEAST(` opened at column 1: `ALARM`, `OK`, `INSUFFICIENT_DATA`, `NOT_ALARM`, `NOT_OK` or `NOT_INSUFFICIENT_DATA`, found `ALARMS`",
        );
        check(
            "AT_LEAST(1, ALARM, a)",
            "error: column 20: expected `(` to open the list of alarms in `AT_LEAST(` opened at column 1, found `a`",
        );
        check(
            "AT_LEAST(1, ALARM, (a b))",
            "error: column 23: expected `,` or `)` in the list of alarms of `AT_LEAST(` opened at column 1, found `b`",
        );
    }

    #[test]
    fn at_least_holds_when_enough_alarms_match() {
        use AlarmState::{Alarm, InsufficientData, Ok};
        let states = [("a", Alarm), ("b", Alarm), ("c", Ok), ("d", InsufficientData)];
        let holds = |rule: &str| {
            parse(rule).unwrap().holds(&mut |name| {
                states.iter().find(|(n, _)| *n == name).map(|(_, s)| *s).unwrap()
            })
        };
        let cases = [
            ("AT_LEAST(2, ALARM, (a, b, c, d))", true),
            ("AT_LEAST(3, ALARM, (a, b, c, d))", false),
            ("AT_LEAST(50%, ALARM, (a, b, c, d))", true),
            ("AT_LEAST(51%, ALARM, (a, b, c, d))", false),
            ("AT_LEAST(2, NOT_ALARM, (a, b, c, d))", true),
            ("AT_LEAST(75%, NOT_OK, (a, b, c, d))", true),
            ("AT_LEAST(1, INSUFFICIENT_DATA, (a, b, c))", false),
            ("AT_LEAST(1, NOT_INSUFFICIENT_DATA, (d))", false),
            ("AT_LEAST(100%, OK, (c))", true),
            ("AT_LEAST(33.4%, ALARM, (a, c, d))", false),
            ("AT_LEAST(33.3%, ALARM, (a, c, d))", true),
        ];
        for (rule, expected) in cases {
            assert_eq!(holds(rule), expected, "{rule}");
        }
    }

    #[test]
    fn at_least_percentages_are_exact_to_the_digit_written() {
        use AlarmState::{Alarm, Ok};
        let states = [("a", Alarm), ("b", Alarm), ("c", Ok)];
        let holds = |rule: &str| {
            parse(rule).unwrap().holds(&mut |name| {
                states.iter().find(|(n, _)| *n == name).map(|(_, s)| *s).unwrap()
            })
        };
        let cases = [
            // A share above 0% never rounds to 0%: with no alarm in the state it does not hold.
            ("AT_LEAST(0.001%, OK, (a, b))", false),
            ("AT_LEAST(0.000001%, ALARM, (a, c))", true),
            // 2 of 3 is 66.666…%, at least 66.666% and 66.6666%, short of 66.67%.
            ("AT_LEAST(66.666%, ALARM, (a, b, c))", true),
            ("AT_LEAST(66.6666%, ALARM, (a, b, c))", true),
            ("AT_LEAST(66.67%, ALARM, (a, b, c))", false),
            ("AT_LEAST(33.333333%, OK, (a, b, c))", true),
            ("AT_LEAST(33.334%, OK, (a, b, c))", false),
        ];
        for (rule, expected) in cases {
            assert_eq!(holds(rule), expected, "{rule}");
        }
    }

    #[test]
    fn arns_resolve_to_names_in_their_own_region_and_account() {
        let resolve =
            |rule: &str| match resolve_arns(&parse(rule).unwrap(), "eu-west-1", "111122223333") {
                Ok(rule) => rule.to_string(),
                Err(message) => format!("error: {message}"),
            };
        assert_eq!(
            resolve(
                "ALARM(\"arn:aws:cloudwatch:eu-west-1:111122223333:alarm:Api:Faults\") OR OK(b)"
            ),
            r#"ALARM("Api:Faults") OR OK("b")"#
        );
        assert_eq!(
            resolve("AT_LEAST(1, ALARM, (arn:aws:cloudwatch:eu-west-1:111122223333:alarm:x, y))"),
            r#"AT_LEAST(1, ALARM, ("x", "y"))"#
        );
        assert_eq!(
            resolve("ALARM(\"arn:aws:cloudwatch:us-east-1:111122223333:alarm:x\")"),
            "error: `arn:aws:cloudwatch:us-east-1:111122223333:alarm:x` names an alarm in region `us-east-1`; a composite's alarms are in its own region (`eu-west-1`)"
        );
        assert_eq!(
            resolve("ALARM(\"arn:aws:cloudwatch:eu-west-1:444455556666:alarm:x\")"),
            "error: `arn:aws:cloudwatch:eu-west-1:444455556666:alarm:x` names an alarm of account `444455556666`; the configured account is `111122223333`"
        );
        assert_eq!(
            resolve("ALARM(\"arn:aws:sns:eu-west-1:111122223333:topic\")"),
            "error: `arn:aws:sns:eu-west-1:111122223333:topic` is not an alarm ARN (arn:aws:cloudwatch:REGION:ACCOUNT:alarm:NAME)"
        );
    }

    #[test]
    fn errors_say_what_was_expected_where() {
        check(
            "",
            "error: column 1: the rule is empty: expected an expression such as `ALARM(\"name\")`",
        );
        check(
            "   ",
            "error: column 4: the rule is empty: expected an expression such as `ALARM(\"name\")`",
        );
        check(
            "TRUE OR ALARM(a",
            "error: column 16: expected `)` to close `ALARM(` opened at column 9, found end of rule",
        );
        check(
            "ALARM(a b)",
            "error: column 9: expected `)` to close `ALARM(` opened at column 1, found `b`",
        );
        check(
            "ALARM(\"a)",
            "error: column 10: expected `\"` to close the alarm name opened at column 7",
        );
        check(
            "ALARM()",
            "error: column 7: expected an alarm name in `ALARM(` opened at column 1, found `)`",
        );
        check("ALARM(\"\")", "error: column 7: the alarm name is empty");
        check("ALARM a", "error: column 7: expected `(` after `ALARM` at column 1, found `a`");
        check(
            "(ALARM(a) OR OK(b)",
            "error: column 19: expected `AND`, `OR` or `)` to close `(` opened at column 1, found end of rule",
        );
        check("ALARM(a))", "error: column 9: expected `AND`, `OR` or end of rule, found `)`");
        check(
            "ALARM(a) and ALARM(b)",
            "error: column 10: expected `AND`, `OR` or end of rule, found `and` (keywords are upper case: write `AND`)",
        );
        check(
            "alarm(a)",
            "error: column 1: expected `ALARM(`, `OK(`, `INSUFFICIENT_DATA(`, `TRUE`, `FALSE`, `NOT` or `(`, found `alarm` (keywords are upper case: write `ALARM`)",
        );
        check(
            "ALARM(a) OR",
            "error: column 12: expected an alarm expression after `OR` at column 10, found end of rule",
        );
        check(
            "NOT",
            "error: column 4: expected an alarm expression after `NOT` at column 1, found end of rule",
        );
        check(
            "ALARM(a) OR OR",
            "error: column 13: expected `ALARM(`, `OK(`, `INSUFFICIENT_DATA(`, `TRUE`, `FALSE`, `NOT` or `(`, found `OR`",
        );
        check(
            "ALARM(a) OR ALARMS(b)",
            "error: column 13: expected `ALARM(`, `OK(`, `INSUFFICIENT_DATA(`, `TRUE`, `FALSE`, `NOT` or `(`, found `ALARMS`",
        );
        check(
            "ALARM(\"a\u{7}b\")",
            "error: column 9: alarm names cannot contain control characters",
        );
        check("TRUE FALSE", "error: column 6: expected `AND`, `OR` or end of rule, found `FALSE`");
    }

    #[test]
    fn aws_limits_hold() {
        let long_name = "n".repeat(MAX_ALARM_NAME_CHARS);
        check(
            &format!("ALARM({long_name})"),
            &format!("ALARM(\"{long_name}\") | names: {long_name}"),
        );
        check(
            &format!("ALARM({long_name}x)"),
            "error: column 7: the alarm name is 256 characters long; CloudWatch allows at most 255",
        );

        let children = |count: usize| {
            (0..count).map(|index| format!("ALARM(a{index})")).collect::<Vec<_>>().join(" OR ")
        };
        assert!(parse(&children(MAX_CHILDREN)).is_ok());
        // Child 101 starts after 100 children of `ALARM(aN) OR ` (13 characters for a0..a9, 14
        // for a10..a99).
        check(
            &children(MAX_CHILDREN + 1),
            "error: column 1391: the rule references more than 100 distinct alarms, \
             CloudWatch's limit: group some into their own composite alarm",
        );
        // Repeating a child does not count against the children limit, only the elements limit.
        let repeated = |count: usize| vec!["ALARM(a)"; count].join(" OR ");
        assert!(parse(&repeated(MAX_ELEMENTS)).is_ok());
        check(
            &repeated(MAX_ELEMENTS + 1),
            "error: column 6001: the rule has more than 500 elements (alarm references, TRUE, \
             FALSE and parenthesised groups), CloudWatch's limit: split it into several \
             composite alarms",
        );

        let too_long = format!("TRUE{}", " ".repeat(MAX_RULE_CHARS));
        check(
            &too_long,
            "error: column 10241: the rule is 10244 characters long; CloudWatch allows at most \
             10240: split it into several composite alarms",
        );

        let nested = |depth: usize| format!("{}TRUE{}", "(".repeat(depth), ")".repeat(depth));
        assert!(parse(&nested(MAX_NESTING)).is_ok());
        check(
            &nested(MAX_NESTING + 1),
            "error: column 65: the rule nests groups and `NOT` more than 64 deep: simplify it",
        );
        check(
            &format!("{}TRUE", "NOT ".repeat(MAX_NESTING + 1)),
            "error: column 257: the rule nests groups and `NOT` more than 64 deep: simplify it",
        );
    }

    /// Evaluates `rule` with child states written `a=ALARM b=OK` (unlisted children are
    /// `INSUFFICIENT_DATA`).
    #[track_caller]
    fn check_holds(rule: &str, states: &str, expected: bool) {
        let states: Vec<(&str, AlarmState)> = states
            .split_whitespace()
            .map(|pair| {
                let (name, state) = pair.split_once('=').unwrap();
                let state = [AlarmState::Ok, AlarmState::Alarm, AlarmState::InsufficientData]
                    .into_iter()
                    .find(|candidate| candidate.name() == state)
                    .unwrap();
                (name, state)
            })
            .collect();
        let holds = parse(rule).unwrap().holds(&mut |name| {
            states
                .iter()
                .find(|(child, _)| *child == name)
                .map_or(AlarmState::InsufficientData, |(_, state)| *state)
        });
        assert_eq!(holds, expected, "{rule} with {states:?}");
    }

    #[test]
    fn rules_evaluate_against_child_states() {
        check_holds("ALARM(a) AND ALARM(b)", "a=ALARM b=ALARM", true);
        check_holds("ALARM(a) AND ALARM(b)", "a=ALARM b=OK", false);
        check_holds("ALARM(a) AND NOT ALARM(b)", "a=ALARM b=OK", true);
        check_holds("ALARM(a) AND NOT ALARM(b)", "a=ALARM b=ALARM", false);
        check_holds("(ALARM(a) OR ALARM(b)) AND OK(c)", "a=OK b=ALARM c=OK", true);
        check_holds("(ALARM(a) OR ALARM(b)) AND OK(c)", "a=OK b=ALARM c=ALARM", false);
        check_holds("(ALARM(a) OR ALARM(b)) AND OK(c)", "a=OK b=ALARM", false);
        check_holds("INSUFFICIENT_DATA(a)", "", true);
        check_holds("OK(a) OR FALSE", "", false);
        check_holds("NOT FALSE", "", true);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(rule in "\\PC{0,200}") {
            let _ = parse(&rule);
        }

        #[test]
        fn parse_never_panics_on_rule_like_text(
            rule in "((ALARM|OK|NOT|AND|OR|TRUE|FALSE|INSUFFICIENT_DATA|\\(|\\)|\"|[a-z]| ){0,40})"
        ) {
            if let Err(error) = parse(&rule) {
                proptest::prop_assert!(error.column >= 1 && error.column <= rule.chars().count() + 1);
            }
        }
    }
}
