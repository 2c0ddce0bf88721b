//! Evaluates a Jsonnet pipeline definition into a JSON value.
//!
//! This module owns everything Gantry knows about Jsonnet: reading the file and what it
//! imports (`import`, `importstr`, `importbin`, each relative to the importing file's
//! directory and cached by canonical path), running the `rsjsonnet-lang` evaluator, turning
//! its spans into `file:line:column` locations and its errors into messages a pipeline author
//! can act on, sending `std.trace` output to stderr, and converting the evaluated value into
//! `serde_json::Value`. What the JSON means is decided by the rest of the crate.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rsjsonnet_lang::arena::Arena;
use rsjsonnet_lang::ast::{BinaryOp, UnaryOp};
use rsjsonnet_lang::interner::InternedStr;
use rsjsonnet_lang::lexer::LexError;
use rsjsonnet_lang::parser::{ActualToken, ExpectedToken, ParseError};
use rsjsonnet_lang::program::{
    AnalyzeError, Callbacks, EvalError, EvalErrorKind, EvalErrorValueType, EvalStackTraceItem,
    ImportError, LoadError, NativeError, Program, Thunk, Value, ValueKind,
};
use rsjsonnet_lang::span::{SpanContextId, SpanId};
use rsjsonnet_lang::token::STokenKind;

/// Largest Jsonnet (or `importstr`/`importbin`) file read, in bytes. Pipeline definitions and
/// their libraries are a few kilobytes; a file over a mebibyte is generated or picked up by
/// mistake, and refusing it early keeps memory and evaluation time bounded.
const MAX_SOURCE_BYTES: u64 = 1024 * 1024;

/// Deepest nesting of arrays and objects in the evaluated value. Pipeline definitions nest a
/// handful of levels; the limit keeps the conversion's recursion (and serde_json's recursive
/// drop) far from the thread's stack size, and matches serde_json's own parsing limit.
const MAX_NESTING_DEPTH: usize = 128;

/// Why a Jsonnet file could not be evaluated, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonnetError {
    /// The file the problem is in: the evaluated file or one it imports.
    pub file: PathBuf,
    /// 1-based line, 0 if unknown.
    pub line: usize,
    /// 1-based column in characters, 0 if unknown.
    pub column: usize,
    pub message: String,
}

impl fmt::Display for JsonnetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.file.display())?;
        if self.line != 0 {
            write!(f, "{}:", self.line)?;
            if self.column != 0 {
                write!(f, "{}:", self.column)?;
            }
        }
        write!(f, " {}", self.message)
    }
}

impl std::error::Error for JsonnetError {}

impl JsonnetError {
    fn in_file(file: &Path, message: impl Into<String>) -> Self {
        Self { file: file.to_path_buf(), line: 0, column: 0, message: message.into() }
    }
}

/// Reads and evaluates the Jsonnet file at `path` and returns its value as JSON.
///
/// Imports resolve relative to the directory of the file that contains them. Hidden fields
/// (`::`) are left out; a visible function anywhere in the result is an error.
pub fn evaluate(path: &Path) -> Result<serde_json::Value, JsonnetError> {
    // The evaluator is a third-party library fed untrusted input. Its errors are values, but
    // should a bug in it panic, report that as an error on this file rather than take the
    // whole process down; nothing outlives this call, so no broken state is observed.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| evaluate_unguarded(path)))
        .unwrap_or_else(|_| {
            Err(JsonnetError::in_file(
                path,
                "the Jsonnet evaluator failed unexpectedly (a bug in Gantry or rsjsonnet); \
                 please report it with this file",
            ))
        })
}

fn evaluate_unguarded(path: &Path) -> Result<serde_json::Value, JsonnetError> {
    let canonical = std::fs::canonicalize(path)
        .map_err(|error| JsonnetError::in_file(path, format!("cannot find the file: {error}")))?;
    let text =
        read_source(path, &canonical).map_err(|message| JsonnetError::in_file(path, message))?;

    let arena = Arena::new();
    let mut program = Program::new(&arena);
    // Declared after `program` so that its thunks are dropped before the program.
    let mut loader = Loader::default();

    let thunk = loader.load_code(&mut program, path, canonical, text)?;
    let value = match program.eval_value(&thunk, &mut loader) {
        Ok(value) => value,
        Err(error) => return Err(loader.eval_error(&program, error, path)),
    };
    let mut field_path = String::new();
    to_json(&value, &mut field_path, 0).map_err(|message| {
        let message = if field_path.is_empty() {
            format!("the result {message}")
        } else {
            format!("field `{field_path}` {message}")
        };
        JsonnetError::in_file(path, message)
    })
}

/// Reads a file whole, refusing files over [`MAX_SOURCE_BYTES`]. The error is the message only;
/// the caller knows where to report it.
fn read_source(path: &Path, canonical: &Path) -> Result<Rc<[u8]>, String> {
    let cannot_read = |error: std::io::Error| format!("cannot read {}: {error}", path.display());
    let mut text = Vec::new();
    std::fs::File::open(canonical)
        .and_then(|file| file.take(MAX_SOURCE_BYTES + 1).read_to_end(&mut text))
        .map_err(cannot_read)?;
    if text.len() as u64 > MAX_SOURCE_BYTES {
        return Err(format!(
            "{} is larger than the {MAX_SOURCE_BYTES}-byte limit for Jsonnet sources; \
             split it into smaller files or generate less",
            path.display()
        ));
    }
    Ok(text.into())
}

/// A file loaded into the evaluator, kept to turn spans into lines and columns.
struct SourceFile {
    /// The path as written by the user or joined from an import, for messages.
    path: PathBuf,
    text: Rc<[u8]>,
}

/// The evaluator's callbacks: resolves and caches imports, and maps spans back to files.
#[derive(Default)]
struct Loader<'p> {
    sources: HashMap<SpanContextId, SourceFile>,
    /// File contents by canonical path, shared by `import`, `importstr` and `importbin`.
    file_cache: HashMap<PathBuf, Rc<[u8]>>,
    /// Loaded code by canonical path, so that every `import` of a file shares one value.
    code_cache: HashMap<PathBuf, Thunk<'p>>,
    /// The evaluator's `ImportError` carries nothing; the reason for the latest failed import
    /// waits here until the evaluator reports `ImportFailed`.
    failed_import: Option<JsonnetError>,
}

/// Where a span points: display path, 1-based line and column.
struct Location {
    file: PathBuf,
    line: usize,
    column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

impl<'p> Loader<'p> {
    /// Parses and analyzes `text` as the Jsonnet file at `path`, without evaluating it.
    fn load_code(
        &mut self,
        program: &mut Program<'p>,
        path: &Path,
        canonical: PathBuf,
        text: Rc<[u8]>,
    ) -> Result<Thunk<'p>, JsonnetError> {
        check_nesting(path, &text)?;
        let (span_context, _) = program.span_manager_mut().insert_source_context(text.len());
        self.sources
            .insert(span_context, SourceFile { path: path.to_path_buf(), text: text.clone() });
        self.file_cache.insert(canonical.clone(), text.clone());
        let thunk = program
            .load_source(span_context, &text, true, &path.to_string_lossy())
            .map_err(|error| self.load_error(program, error))?;
        self.code_cache.insert(canonical, thunk.clone());
        Ok(thunk)
    }

    fn locate(&self, program: &Program<'p>, span: SpanId) -> Option<Location> {
        let (context, start, _) = program.span_manager().get_span(span);
        let source = self.sources.get(&context)?;
        let before = source.text.get(..start)?;
        let line_start = before.iter().rposition(|&byte| byte == b'\n').map_or(0, |i| i + 1);
        Some(Location {
            file: source.path.clone(),
            line: before.iter().filter(|&&byte| byte == b'\n').count() + 1,
            column: String::from_utf8_lossy(&before[line_start..]).chars().count() + 1,
        })
    }

    /// An error at `span` if it lies in a loaded file, else at the innermost loaded-file span
    /// of `stack`, else in `fallback` with no position.
    fn error_at(
        &self,
        program: &Program<'p>,
        span: Option<SpanId>,
        stack: &[EvalStackTraceItem],
        fallback: &Path,
        message: String,
    ) -> JsonnetError {
        let location = span
            .into_iter()
            .chain(stack.iter().rev().filter_map(stack_item_span))
            .find_map(|span| self.locate(program, span));
        match location {
            Some(Location { file, line, column }) => JsonnetError { file, line, column, message },
            None => JsonnetError::in_file(fallback, message),
        }
    }

    fn load_error(&self, program: &Program<'p>, error: LoadError) -> JsonnetError {
        let (span, message) = match error {
            LoadError::Lex(error) => lex_error_message(error),
            LoadError::Parse(ParseError::Expected { span, expected, instead }) => {
                let expected: Vec<String> = expected.iter().map(expected_token_text).collect();
                let message = format!(
                    "syntax error: expected {}, found {}",
                    join_alternatives(&expected),
                    actual_token_text(&instead)
                );
                (span, message)
            }
            LoadError::Analyze(error) => self.analyze_error_message(program, error),
        };
        // Spans of a file being loaded always belong to it; the fallback is never used.
        self.error_at(program, Some(span), &[], Path::new("<jsonnet>"), message)
    }

    fn analyze_error_message(
        &self,
        program: &Program<'p>,
        error: AnalyzeError,
    ) -> (SpanId, String) {
        let first_at = |span| match self.locate(program, span) {
            Some(location) => format!(" (first defined at {location})"),
            None => String::new(),
        };
        match error {
            AnalyzeError::UnknownVariable { span, name } => {
                (span, format!("unknown variable `{name}`"))
            }
            AnalyzeError::SelfOutsideObject { self_span } => {
                (self_span, "`self` used outside an object".to_owned())
            }
            AnalyzeError::SuperOutsideObject { super_span } => {
                (super_span, "`super` used outside an object".to_owned())
            }
            AnalyzeError::DollarOutsideObject { dollar_span } => {
                (dollar_span, "`$` used outside an object".to_owned())
            }
            AnalyzeError::RepeatedLocalName { original_span, repeated_span, name } => (
                repeated_span,
                format!("local `{name}` is defined twice{}", first_at(original_span)),
            ),
            AnalyzeError::RepeatedFieldName { original_span, repeated_span, name } => (
                repeated_span,
                format!("field `{name}` is defined twice{}", first_at(original_span)),
            ),
            AnalyzeError::RepeatedParamName { original_span, repeated_span, name } => (
                repeated_span,
                format!("parameter `{name}` is declared twice{}", first_at(original_span)),
            ),
            AnalyzeError::PositionalArgAfterNamed { arg_span } => {
                (arg_span, "positional argument after a named argument".to_owned())
            }
            AnalyzeError::TextBlockAsImportPath { span } => {
                (span, "an import path must be a plain string, not a text block".to_owned())
            }
            AnalyzeError::ComputedImportPath { span } => {
                (span, "an import path must be a string literal, not a computed value".to_owned())
            }
        }
    }

    fn eval_error(&mut self, program: &Program<'p>, error: EvalError, root: &Path) -> JsonnetError {
        if let EvalErrorKind::ImportFailed { .. } = error.kind
            && let Some(failed_import) = self.failed_import.take()
        {
            return failed_import;
        }
        let (span, message) = eval_error_message(error.kind);
        self.error_at(program, span, &error.stack_trace, root, message)
    }

    /// Resolves `import_path` against the directory of the file holding `from`.
    /// Returns the joined path (for messages) and the canonical path (for the caches).
    fn resolve(
        &self,
        program: &Program<'p>,
        from: SpanId,
        import_path: &str,
    ) -> Result<(PathBuf, PathBuf), JsonnetError> {
        let (context, _, _) = program.span_manager().get_span(from);
        let Some(importer) = self.sources.get(&context) else {
            return Err(JsonnetError::in_file(
                Path::new("<jsonnet>"),
                format!("cannot import \"{import_path}\": the importing file is unknown"),
            ));
        };
        let directory = importer.path.parent().unwrap_or(Path::new(""));
        let joined = directory.join(import_path);
        match std::fs::canonicalize(&joined) {
            Ok(canonical) => Ok((joined, canonical)),
            Err(error) => Err(self.import_error(
                program,
                from,
                import_path,
                format!(
                    "looked for {} (imports are relative to the importing file): {error}",
                    joined.display()
                ),
            )),
        }
    }

    fn import_error(
        &self,
        program: &Program<'p>,
        from: SpanId,
        import_path: &str,
        reason: String,
    ) -> JsonnetError {
        let message = format!("cannot import \"{import_path}\": {reason}");
        self.error_at(program, Some(from), &[], Path::new("<jsonnet>"), message)
    }

    /// The contents of the file `import_path` names, read once per canonical path.
    fn import_bytes(
        &mut self,
        program: &Program<'p>,
        from: SpanId,
        import_path: &str,
    ) -> Result<(PathBuf, PathBuf, Rc<[u8]>), JsonnetError> {
        let (joined, canonical) = self.resolve(program, from, import_path)?;
        if let Some(text) = self.file_cache.get(&canonical) {
            return Ok((joined, canonical, text.clone()));
        }
        let text = read_source(&joined, &canonical)
            .map_err(|reason| self.import_error(program, from, import_path, reason))?;
        self.file_cache.insert(canonical.clone(), text.clone());
        Ok((joined, canonical, text))
    }

    fn import_code(
        &mut self,
        program: &mut Program<'p>,
        from: SpanId,
        import_path: &str,
    ) -> Result<Thunk<'p>, JsonnetError> {
        let (joined, canonical, text) = self.import_bytes(program, from, import_path)?;
        if let Some(thunk) = self.code_cache.get(&canonical) {
            return Ok(thunk.clone());
        }
        self.load_code(program, &joined, canonical, text).map_err(|mut error| {
            if let Some(location) = self.locate(program, from) {
                error.message = format!("{} (imported from {location})", error.message);
            }
            error
        })
    }

    /// Keeps the reason for a failed import and hands the evaluator its opaque error.
    fn record<T>(&mut self, result: Result<T, JsonnetError>) -> Result<T, ImportError> {
        result.map_err(|error| {
            self.failed_import = Some(error);
            ImportError
        })
    }
}

impl<'p> Callbacks<'p> for Loader<'p> {
    fn import(
        &mut self,
        program: &mut Program<'p>,
        from: SpanId,
        path: &str,
    ) -> Result<Thunk<'p>, ImportError> {
        let result = self.import_code(program, from, path);
        self.record(result)
    }

    fn import_str(
        &mut self,
        program: &mut Program<'p>,
        from: SpanId,
        path: &str,
    ) -> Result<String, ImportError> {
        let result = self.import_bytes(program, from, path).and_then(|(_, _, text)| {
            String::from_utf8(text.to_vec()).map_err(|_| {
                let reason = "the file is not valid UTF-8; use importbin for binary files";
                self.import_error(program, from, path, reason.to_owned())
            })
        });
        self.record(result)
    }

    fn import_bin(
        &mut self,
        program: &mut Program<'p>,
        from: SpanId,
        path: &str,
    ) -> Result<Vec<u8>, ImportError> {
        let result = self.import_bytes(program, from, path).map(|(_, _, text)| text.to_vec());
        self.record(result)
    }

    fn trace(&mut self, program: &mut Program<'p>, message: &str, stack: &[EvalStackTraceItem]) {
        match stack.iter().rev().filter_map(stack_item_span).find_map(|s| self.locate(program, s)) {
            Some(location) => eprintln!("TRACE: {location}: {message}"),
            None => eprintln!("TRACE: {message}"),
        }
    }

    fn native_call(
        &mut self,
        _program: &mut Program<'p>,
        _name: InternedStr<'p>,
        _args: &[Value<'p>],
    ) -> Result<Value<'p>, NativeError> {
        // No native functions are registered, so `std.native` only ever returns null.
        Err(NativeError)
    }
}

fn stack_item_span(item: &EvalStackTraceItem) -> Option<SpanId> {
    match *item {
        EvalStackTraceItem::Expr { span }
        | EvalStackTraceItem::Variable { span, .. }
        | EvalStackTraceItem::Import { span } => Some(span),
        EvalStackTraceItem::Call { span, .. }
        | EvalStackTraceItem::ArrayItem { span, .. }
        | EvalStackTraceItem::ObjectField { span, .. } => span,
        EvalStackTraceItem::CompareArrayItem { .. }
        | EvalStackTraceItem::CompareObjectField { .. }
        | EvalStackTraceItem::ManifestArrayItem { .. }
        | EvalStackTraceItem::ManifestObjectField { .. } => None,
    }
}

/// Deepest nesting of brackets, braces and parentheses in one source file. Pipeline definitions
/// and their libraries nest a handful of levels; past this the evaluator's own stack (500 frames)
/// would overflow, and the error would read like runaway recursion with no place to look.
const MAX_SOURCE_NESTING: usize = 100;

/// Refuses a source that nests deeper than [`MAX_SOURCE_NESTING`], at the bracket that does.
/// Strings, text blocks and comments are skipped, so brackets in them do not count.
fn check_nesting(path: &Path, text: &[u8]) -> Result<(), JsonnetError> {
    let mut depth = 0usize;
    let mut index = 0;
    let at = |offset: usize, message: String| {
        let before = &text[..offset];
        let line_start = before.iter().rposition(|&byte| byte == b'\n').map_or(0, |i| i + 1);
        JsonnetError {
            file: path.to_path_buf(),
            line: before.iter().filter(|&&byte| byte == b'\n').count() + 1,
            column: String::from_utf8_lossy(&before[line_start..]).chars().count() + 1,
            message,
        }
    };
    let skip_to = |from: usize, end: &[u8]| {
        text[from..]
            .windows(end.len())
            .position(|window| window == end)
            .map_or(text.len(), |i| from + i + end.len())
    };
    while index < text.len() {
        match text[index] {
            b'[' | b'{' | b'(' => {
                depth += 1;
                if depth > MAX_SOURCE_NESTING {
                    return Err(at(
                        index,
                        format!(
                            "arrays, objects and parentheses nest deeper than {MAX_SOURCE_NESTING} \
                             levels here; a pipeline definition nests a handful"
                        ),
                    ));
                }
                index += 1;
            }
            b']' | b'}' | b')' => {
                depth = depth.saturating_sub(1);
                index += 1;
            }
            b'#' => index = skip_to(index, b"\n"),
            b'/' if text.get(index + 1) == Some(&b'/') => index = skip_to(index, b"\n"),
            b'/' if text.get(index + 1) == Some(&b'*') => index = skip_to(index + 2, b"*/"),
            b'|' if text[index..].starts_with(b"|||") => index = skip_to(index + 3, b"|||"),
            quote @ (b'"' | b'\'') => {
                let verbatim = index > 0 && text[index - 1] == b'@';
                index += 1;
                while index < text.len() && text[index] != quote {
                    index += if text[index] == b'\\' && !verbatim { 2 } else { 1 };
                }
                index += 1;
            }
            _ => index += 1,
        }
    }
    Ok(())
}

/// Converts a deeply evaluated value, appending to `field_path` the path of the value that
/// cannot be converted. The error completes the sentence "field `x.y` ...".
fn to_json(
    value: &Value<'_>,
    field_path: &mut String,
    depth: usize,
) -> Result<serde_json::Value, String> {
    if depth > MAX_NESTING_DEPTH {
        return Err(format!("nests arrays and objects deeper than {MAX_NESTING_DEPTH} levels"));
    }
    let json = match value.kind() {
        ValueKind::Null => serde_json::Value::Null,
        ValueKind::Bool(value) => serde_json::Value::Bool(value),
        ValueKind::Number(number) => serde_json::Value::Number(
            json_number(number)
                .ok_or_else(|| format!("is a number JSON cannot hold ({number})"))?,
        ),
        ValueKind::String(value) => serde_json::Value::String(value),
        ValueKind::Array(items) => {
            let mut array = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                let parent_length = field_path.len();
                field_path.push_str(&format!("[{index}]"));
                array.push(to_json(item, field_path, depth + 1)?);
                field_path.truncate(parent_length);
            }
            serde_json::Value::Array(array)
        }
        ValueKind::Object(mut fields) => {
            // Jsonnet manifests fields sorted by name; do the same whatever map serde_json uses.
            fields.sort_by(|(a, _), (b, _)| a.value().cmp(b.value()));
            let mut object = serde_json::Map::new();
            for (name, field) in &fields {
                let parent_length = field_path.len();
                push_field_name(field_path, name.value());
                object.insert(name.value().to_owned(), to_json(field, field_path, depth + 1)?);
                field_path.truncate(parent_length);
            }
            serde_json::Value::Object(object)
        }
        ValueKind::Function => {
            let hint = if field_path.is_empty() {
                "Gantry passes no top-level arguments, so the file must evaluate to a value"
            } else {
                "call it, or hide the field with `::`"
            };
            return Err(format!("is a function, which JSON cannot hold; {hint}"));
        }
    };
    Ok(json)
}

fn push_field_name(field_path: &mut String, name: &str) {
    let is_identifier = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if is_identifier {
        if !field_path.is_empty() {
            field_path.push('.');
        }
        field_path.push_str(name);
    } else {
        field_path.push_str(&format!("[{name:?}]"));
    }
}

/// Jsonnet has only doubles; whole numbers become JSON integers, as Jsonnet prints them, so
/// that they deserialize into integer fields.
fn json_number(number: f64) -> Option<serde_json::Number> {
    /// 2^63: every whole double in [-2^63, 2^63) converts to i64 exactly.
    const I64_LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if number.fract() == 0.0 && (-I64_LIMIT..I64_LIMIT).contains(&number) {
        Some(serde_json::Number::from(number as i64))
    } else {
        serde_json::Number::from_f64(number)
    }
}

fn lex_error_message(error: LexError) -> (SpanId, String) {
    match error {
        LexError::InvalidChar { span, chr } => (span, format!("unexpected character {chr:?}")),
        LexError::InvalidUtf8 { span, seq } => {
            (span, format!("invalid UTF-8 byte sequence {seq:02x?}"))
        }
        LexError::UnfinishedMultilineComment { span } => {
            (span, "unterminated comment: missing `*/`".to_owned())
        }
        LexError::LeadingZeroInNumber { span } => {
            (span, "numbers cannot start with a leading zero".to_owned())
        }
        LexError::MissingFracDigits { span } => {
            (span, "missing digits after the decimal point".to_owned())
        }
        LexError::MissingExpDigits { span } => {
            (span, "missing digits in the number's exponent".to_owned())
        }
        LexError::MissingDigitAfterUnderscore { span } => {
            (span, "missing digit after `_` in number".to_owned())
        }
        LexError::ExpOverflow { span } => (span, "the number's exponent is too large".to_owned()),
        LexError::InvalidEscapeInString { span, chr } => {
            (span, format!("invalid escape sequence `\\{chr}` in string"))
        }
        LexError::IncompleteUnicodeEscape { span } => {
            (span, "incomplete `\\uXXXX` escape in string".to_owned())
        }
        LexError::InvalidUtf16EscapeSequence { span, .. } => {
            (span, "`\\u` escape does not encode a valid character".to_owned())
        }
        LexError::UnfinishedString { span } => {
            (span, "unterminated string: missing closing quote".to_owned())
        }
        LexError::MissingLineBreakAfterTextBlockStart { span } => {
            (span, "a text block needs a line break after `|||`".to_owned())
        }
        LexError::MissingWhitespaceTextBlockStart { span } => {
            (span, "the first line of a text block must be indented".to_owned())
        }
        LexError::InvalidTextBlockTermination { span } => {
            (span, "text block is not terminated by `|||`".to_owned())
        }
    }
}

fn expected_token_text(token: &ExpectedToken) -> String {
    match *token {
        ExpectedToken::EndOfFile => "end of file".to_owned(),
        ExpectedToken::Simple(kind) => format!("`{}`", token_text(kind)),
        ExpectedToken::Ident => "identifier".to_owned(),
        ExpectedToken::Number => "number".to_owned(),
        ExpectedToken::String => "string".to_owned(),
        ExpectedToken::TextBlock => "text block".to_owned(),
        ExpectedToken::Expr => "expression".to_owned(),
        ExpectedToken::BinaryOp => "binary operator".to_owned(),
    }
}

fn actual_token_text(token: &ActualToken) -> String {
    match token {
        ActualToken::EndOfFile => "end of file".to_owned(),
        ActualToken::Simple(kind) => format!("`{}`", token_text(*kind)),
        ActualToken::OtherOp(op) => format!("`{op}`"),
        ActualToken::Ident(name) => format!("identifier `{name}`"),
        ActualToken::Number => "number".to_owned(),
        ActualToken::String => "string".to_owned(),
        ActualToken::TextBlock => "text block".to_owned(),
    }
}

/// "a", "a or b", "a, b or c".
fn join_alternatives(items: &[String]) -> String {
    match items {
        [] => "something else".to_owned(),
        [only] => only.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

fn token_text(kind: STokenKind) -> &'static str {
    match kind {
        STokenKind::Assert => "assert",
        STokenKind::Else => "else",
        STokenKind::Error => "error",
        STokenKind::False => "false",
        STokenKind::For => "for",
        STokenKind::Function => "function",
        STokenKind::If => "if",
        STokenKind::Import => "import",
        STokenKind::Importstr => "importstr",
        STokenKind::Importbin => "importbin",
        STokenKind::In => "in",
        STokenKind::Local => "local",
        STokenKind::Null => "null",
        STokenKind::Tailstrict => "tailstrict",
        STokenKind::Then => "then",
        STokenKind::Self_ => "self",
        STokenKind::Super => "super",
        STokenKind::True => "true",
        STokenKind::Exclam => "!",
        STokenKind::ExclamEq => "!=",
        STokenKind::Dollar => "$",
        STokenKind::Percent => "%",
        STokenKind::Amp => "&",
        STokenKind::AmpAmp => "&&",
        STokenKind::LeftParen => "(",
        STokenKind::RightParen => ")",
        STokenKind::Asterisk => "*",
        STokenKind::Plus => "+",
        STokenKind::PlusColon => "+:",
        STokenKind::PlusColonColon => "+::",
        STokenKind::PlusColonColonColon => "+:::",
        STokenKind::Comma => ",",
        STokenKind::Minus => "-",
        STokenKind::Dot => ".",
        STokenKind::Slash => "/",
        STokenKind::Colon => ":",
        STokenKind::ColonColon => "::",
        STokenKind::ColonColonColon => ":::",
        STokenKind::Semicolon => ";",
        STokenKind::Lt => "<",
        STokenKind::LtLt => "<<",
        STokenKind::LtEq => "<=",
        STokenKind::Eq => "=",
        STokenKind::EqEq => "==",
        STokenKind::Gt => ">",
        STokenKind::GtEq => ">=",
        STokenKind::GtGt => ">>",
        STokenKind::LeftBracket => "[",
        STokenKind::RightBracket => "]",
        STokenKind::Hat => "^",
        STokenKind::LeftBrace => "{",
        STokenKind::Pipe => "|",
        STokenKind::PipePipe => "||",
        STokenKind::RightBrace => "}",
        STokenKind::Tilde => "~",
    }
}

fn binary_op_text(op: BinaryOp) -> &'static str {
    match op {
        BinaryOp::Add => "+",
        BinaryOp::Sub => "-",
        BinaryOp::Mul => "*",
        BinaryOp::Div => "/",
        BinaryOp::Rem => "%",
        BinaryOp::Shl => "<<",
        BinaryOp::Shr => ">>",
        BinaryOp::Lt => "<",
        BinaryOp::Le => "<=",
        BinaryOp::Gt => ">",
        BinaryOp::Ge => ">=",
        BinaryOp::Eq => "==",
        BinaryOp::Ne => "!=",
        BinaryOp::In => "in",
        BinaryOp::BitwiseAnd => "&",
        BinaryOp::BitwiseOr => "|",
        BinaryOp::BitwiseXor => "^",
        BinaryOp::LogicAnd => "&&",
        BinaryOp::LogicOr => "||",
    }
}

fn unary_op_text(op: UnaryOp) -> &'static str {
    match op {
        UnaryOp::Minus => "-",
        UnaryOp::Plus => "+",
        UnaryOp::BitwiseNot => "~",
        UnaryOp::LogicNot => "!",
    }
}

fn type_name(value_type: EvalErrorValueType) -> &'static str {
    match value_type {
        EvalErrorValueType::Null => "null",
        EvalErrorValueType::Bool => "boolean",
        EvalErrorValueType::Number => "number",
        EvalErrorValueType::String => "string",
        EvalErrorValueType::Array => "array",
        EvalErrorValueType::Object => "object",
        EvalErrorValueType::Function => "function",
    }
}

/// The span the error is about, if the evaluator gave one, and its message.
fn eval_error_message(kind: EvalErrorKind) -> (Option<SpanId>, String) {
    use EvalErrorKind as Kind;
    match kind {
        Kind::StackOverflow => (
            None,
            "more than 500 nested calls: a function (or a field) keeps calling itself; the \
             position is the innermost call"
                .into(),
        ),
        Kind::InfiniteRecursion => (None, "infinite recursion: a value depends on itself".into()),
        Kind::InvalidIndexedType { span, got_type } => {
            (Some(span), format!("cannot index a {}", type_name(got_type)))
        }
        Kind::InvalidSlicedType { span, got_type } => {
            (Some(span), format!("cannot slice a {}", type_name(got_type)))
        }
        Kind::SliceIndexOrStepIsNotNumber { span, got_type } => (
            Some(span),
            format!("slice index or step must be a number, not a {}", type_name(got_type)),
        ),
        Kind::StringIndexIsNotNumber { span, got_type } => {
            (Some(span), format!("string index must be a number, not a {}", type_name(got_type)))
        }
        Kind::ArrayIndexIsNotNumber { span, got_type } => {
            (Some(span), format!("array index must be a number, not a {}", type_name(got_type)))
        }
        Kind::NumericIndexIsNotValid { span, index } => {
            (Some(span), format!("invalid index {index}: it must be a whole, non-negative number"))
        }
        Kind::NumericIndexOutOfRange { span, index, length } => {
            (Some(span), format!("index {index} is out of range for length {length}"))
        }
        Kind::ObjectIndexIsNotString { span, got_type } => (
            Some(span),
            format!("object field name must be a string, not a {}", type_name(got_type)),
        ),
        Kind::RepeatedFieldName { span, name } => {
            (Some(span), format!("field `{name}` is defined twice"))
        }
        Kind::FieldNameIsNotString { span, got_type } => {
            (Some(span), format!("field name must be a string, not a {}", type_name(got_type)))
        }
        Kind::UnknownObjectField { span, field_name } => {
            (Some(span), format!("field `{field_name}` does not exist"))
        }
        Kind::FieldOfNonObject { span } => {
            (Some(span), "cannot take a field of a value that is not an object".into())
        }
        Kind::SuperWithoutSuperObject { span } => {
            (Some(span), "`super` used in an object that extends nothing".into())
        }
        Kind::ForSpecValueIsNotArray { span, got_type } => {
            (Some(span), format!("`for` needs an array, not a {}", type_name(got_type)))
        }
        Kind::CondIsNotBool { span, got_type } => {
            (Some(span), format!("condition must be a boolean, not a {}", type_name(got_type)))
        }
        Kind::CalleeIsNotFunction { span, got_type } => {
            (span, format!("cannot call a {}: it is not a function", type_name(got_type)))
        }
        Kind::TooManyCallArgs { span, num_params } => {
            (span, format!("too many arguments: the function takes {num_params}"))
        }
        Kind::UnknownCallParam { span, param_name } => {
            (span, format!("the function has no parameter `{param_name}`"))
        }
        Kind::RepeatedCallParam { span, param_name } => {
            (span, format!("argument `{param_name}` is given twice"))
        }
        Kind::CallParamNotBound { span, param_name } => {
            (span, format!("missing argument for parameter `{param_name}`"))
        }
        Kind::NativeCallFailed => (None, "native function call failed".into()),
        Kind::InvalidUnaryOpType { span, op, rhs_type } => (
            Some(span),
            format!("operator `{}` cannot apply to a {}", unary_op_text(op), type_name(rhs_type)),
        ),
        Kind::InvalidBinaryOpTypes { span, op, lhs_type, rhs_type } => (
            span,
            format!(
                "operator `{}` cannot apply to a {} and a {}",
                binary_op_text(op),
                type_name(lhs_type),
                type_name(rhs_type)
            ),
        ),
        Kind::NumberNotBitwiseSafe { span } => {
            (span, "number is too large for a bitwise operation (over 2^53)".into())
        }
        Kind::NumberOverflow { span } => (span, "number overflow".into()),
        Kind::NumberNan { span } => (span, "result is not a number (NaN)".into()),
        Kind::DivByZero { span } => (span, "division by zero".into()),
        Kind::ShiftByNegative { span } => (span, "shift by a negative amount".into()),
        Kind::InvalidStdFuncArgType { func_name, arg_index, expected_types, got_type } => {
            let expected: Vec<String> =
                expected_types.into_iter().map(|t| type_name(t).to_owned()).collect();
            let message = format!(
                "std.{func_name}: argument {} must be a {}, not a {}",
                arg_index + 1,
                join_alternatives(&expected),
                type_name(got_type)
            );
            (None, message)
        }
        Kind::AssertFailed { span, message } => match message {
            Some(message) => (Some(span), format!("assertion failed: {message}")),
            None => (Some(span), "assertion failed".into()),
        },
        Kind::AssertEqualFailed { lhs, rhs } => {
            (None, format!("std.assertEqual failed: {lhs} != {rhs}"))
        }
        Kind::ExplicitError { span, message } => (Some(span), message),
        Kind::ImportFailed { span, path } => (Some(span), format!("cannot import \"{path}\"")),
        Kind::UnknownExtVar { name } => {
            (None, format!("unknown external variable `{name}`: Gantry sets no external variables"))
        }
        Kind::ManifestFunction => (None, "a function cannot be converted to JSON".into()),
        Kind::CompareNullInequality => (None, "null cannot be ordered with <, <=, > or >=".into()),
        Kind::CompareBooleanInequality => {
            (None, "booleans cannot be ordered with <, <=, > or >=".into())
        }
        Kind::CompareObjectInequality => {
            (None, "objects cannot be ordered with <, <=, > or >=".into())
        }
        Kind::CompareFunctions => (None, "functions cannot be compared".into()),
        Kind::CompareDifferentTypesInequality { lhs_type, rhs_type } => (
            None,
            format!("cannot order a {} against a {}", type_name(lhs_type), type_name(rhs_type)),
        ),
        Kind::PrimitiveEqualsNonPrimitive { got_type } => {
            (None, format!("std.primitiveEquals cannot compare a {}", type_name(got_type)))
        }
        Kind::Other { span, message } => (span, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `files` (path relative to a fresh directory, contents) and evaluates the first.
    fn run(files: &[(&str, &str)]) -> (tempfile::TempDir, Result<serde_json::Value, JsonnetError>) {
        let directory = tempfile::tempdir().expect("create a temporary directory");
        for (path, contents) in files {
            let path = directory.path().join(path);
            std::fs::create_dir_all(path.parent().expect("a file has a parent"))
                .expect("create directories");
            std::fs::write(&path, contents).expect("write a test file");
        }
        let result = evaluate(&directory.path().join(files[0].0));
        (directory, result)
    }

    fn check(files: &[(&str, &str)], expected: serde_json::Value) {
        let (_directory, result) = run(files);
        match result {
            Ok(value) => assert_eq!(value, expected),
            Err(error) => panic!("unexpected error: {error}"),
        }
    }

    /// Expects an error in `file` (relative to the directory) at `line` and `column`, whose
    /// message contains each of `fragments`; `{dir}` in a fragment stands for the directory.
    fn check_error(
        files: &[(&str, &str)],
        file: &str,
        (line, column): (usize, usize),
        fragments: &[&str],
    ) {
        let (directory, result) = run(files);
        let error = result.expect_err("evaluation should fail");
        assert_eq!(error.file, directory.path().join(file), "{error}");
        assert_eq!((error.line, error.column), (line, column), "{error}");
        for fragment in fragments {
            let fragment = fragment.replace("{dir}", &directory.path().display().to_string());
            assert!(error.message.contains(&fragment), "{error:?} lacks {fragment:?}");
        }
    }

    #[test]
    fn plain_object() {
        check(
            &[(
                "pipeline.jsonnet",
                r#"{ name: "web", replicas: 3, ratio: 0.5, tags: ["a"], x:: 1 }"#,
            )],
            serde_json::json!({ "name": "web", "replicas": 3, "ratio": 0.5, "tags": ["a"] }),
        );
    }

    #[test]
    fn function_and_comprehension_produce_stages() {
        let source = r#"
            local stage(region) = { name: "deploy-" + region, region: region };
            { stages: [stage(r) for r in ["eu", "us"]] }
        "#;
        check(
            &[("pipeline.jsonnet", source)],
            serde_json::json!({ "stages": [
                { "name": "deploy-eu", "region": "eu" },
                { "name": "deploy-us", "region": "us" },
            ] }),
        );
    }

    #[test]
    fn imports_resolve_relative_to_the_importing_file() {
        check(
            &[
                (
                    "pipeline.jsonnet",
                    r#"(import "lib/base.libsonnet") + { notes: importstr "notes.txt" }"#,
                ),
                ("lib/base.libsonnet", r#"{ region: (import "regions/eu.libsonnet").name }"#),
                ("lib/regions/eu.libsonnet", r#"{ name: "eu-west-1" }"#),
                ("notes.txt", "ship it"),
            ],
            serde_json::json!({ "region": "eu-west-1", "notes": "ship it" }),
        );
    }

    #[test]
    fn importbin_gives_bytes() {
        check(
            &[("pipeline.jsonnet", r#"{ b: importbin "b.bin" }"#), ("b.bin", "hi")],
            serde_json::json!({ "b": [104, 105] }),
        );
    }

    #[test]
    fn inheritance_merges_nested_fields() {
        let source = r#"
            local base = { stage: { name: "build", timeout: 60 }, retries: 1 };
            base + { stage+: { timeout: 120, image: "rust" } }
        "#;
        check(
            &[("pipeline.jsonnet", source)],
            serde_json::json!({
                "stage": { "name": "build", "timeout": 120, "image": "rust" },
                "retries": 1,
            }),
        );
    }

    #[test]
    fn syntax_error_reports_line_and_column() {
        check_error(
            &[("pipeline.jsonnet", "{\n  a: 1,\n  b: ]\n}\n")],
            "pipeline.jsonnet",
            (3, 6),
            &["syntax error: expected", "found `]`"],
        );
    }

    #[test]
    fn explicit_error_reports_message_and_location() {
        check_error(
            &[("pipeline.jsonnet", "{\n  a: error \"boom\",\n}\n")],
            "pipeline.jsonnet",
            (2, 6),
            &["boom"],
        );
    }

    #[test]
    fn error_in_imported_file_points_into_it() {
        check_error(
            &[
                ("pipeline.jsonnet", r#"{ a: (import "lib/l.libsonnet").f(1) }"#),
                ("lib/l.libsonnet", "{\n  f(x):: x + missing,\n}\n"),
            ],
            "lib/l.libsonnet",
            (2, 14),
            &["unknown variable `missing`", "imported from"],
        );
    }

    #[test]
    fn missing_import_says_what_it_looked_for() {
        check_error(
            &[
                ("pipeline.jsonnet", "{ a: import \"lib/base.libsonnet\" }"),
                ("lib/base.libsonnet", "local x = 1;\n{ b: import \"nope.libsonnet\" }"),
            ],
            "lib/base.libsonnet",
            (2, 6),
            &["cannot import \"nope.libsonnet\"", "looked for {dir}/lib/nope.libsonnet"],
        );
    }

    #[test]
    fn runtime_type_error_reports_location() {
        check_error(
            &[("pipeline.jsonnet", "local n = 1;\n{ a: n + {} }")],
            "pipeline.jsonnet",
            (2, 6),
            &["operator `+` cannot apply to a number and a object"],
        );
    }

    #[test]
    fn visible_function_is_reported_with_its_field_path() {
        let (_directory, result) = run(&[("pipeline.jsonnet", "{ stages: [{ run(x): x }] }")]);
        let error = result.expect_err("a function is not JSON");
        assert!(error.message.starts_with("field `stages[0].run` is a function"), "{error}");
    }

    #[test]
    fn oversized_source_is_refused() {
        let big = format!("{{ a: \"{}\" }}", "x".repeat(MAX_SOURCE_BYTES as usize));
        let (_directory, result) = run(&[("pipeline.jsonnet", &big)]);
        let error = result.expect_err("the file is too large");
        assert!(error.message.contains("byte limit"), "{error}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let source = "std.foldl(function(acc, i) [acc], std.range(1, 300), [])";
        let (_directory, result) = run(&[("pipeline.jsonnet", source)]);
        let error = result.expect_err("too deep");
        assert!(error.message.contains("deeper than"), "{error}");
    }

    #[test]
    fn display_omits_unknown_position() {
        let error = JsonnetError {
            file: PathBuf::from("p.jsonnet"),
            line: 0,
            column: 0,
            message: "m".into(),
        };
        assert_eq!(error.to_string(), "p.jsonnet: m");
        let error = JsonnetError { line: 2, column: 5, ..error };
        assert_eq!(error.to_string(), "p.jsonnet:2:5: m");
    }
}
