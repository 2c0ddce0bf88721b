//! The crate's error type: every way a definition, a sample or a source can be refused.

/// An error from the alarm crate. Each says what was refused, where, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the store holds its limit of {limit} series; refusing new series {series} (look for a \
         label with unbounded values, or raise the limit)"
    )]
    TooManySeries { limit: usize, series: String },
    #[error("series {series} changed kind between counter and gauge; a series keeps one kind")]
    KindChanged { series: String },
    #[error(
        "sample of {series} at {time} ms is not newer than the previous one at {last} ms; \
         samples must arrive in time order"
    )]
    OutOfOrder { series: String, time: i64, last: i64 },
    #[error("series {series} appears twice in one batch; each series has one sample per scrape")]
    DuplicateInBatch { series: String },
    #[error("counter {series} reported {value}; counters must be finite and not negative")]
    BadCounterValue { series: String, value: f64 },
    #[error("GET {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("scrape of {url}: {source}")]
    Exposition {
        url: String,
        #[source]
        source: crate::exposition::ExpositionError,
    },
    #[error("scrape of {url}: HTTP status {status}, expected 200")]
    ScrapeStatus { url: String, status: u16 },
    #[error(
        "scrape targets {first} and {second} have the same labels {labels}; give each target \
         labels of its own (box, instance)"
    )]
    DuplicateTargets { first: String, second: String, labels: String },
    #[error("{file}: {message}")]
    AlarmTest { file: String, message: String },
    #[error("Prometheus at {url}: {reason}")]
    Prometheus { url: String, reason: String },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    InvalidDefinitions(Vec<DefinitionError>),
}

/// One alarm definition refused, with the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("alarm `{alarm}`: {message}")]
pub struct DefinitionError {
    pub alarm: String,
    pub message: String,
}

/// One field of an alarm definition out of range: the field's name, for the validator to
/// locate, and what is wrong and what to write instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FieldProblem {
    pub field: &'static str,
    pub message: String,
}

impl FieldProblem {
    pub fn new(field: &'static str, message: impl Into<String>) -> FieldProblem {
        FieldProblem { field, message: message.into() }
    }
}
