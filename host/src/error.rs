//! Job errors: a stable code for programs, a message for people.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Stable error codes of the protocol. Bridges branch on these; never rename one.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed or a value is out of range.
    BadRequest,
    /// The file is not a format Luminary reads.
    UnsupportedFormat,
    /// The file claims a format but its contents are broken.
    CorruptInput,
    /// The file does not exist.
    NotFound,
    /// No loaded plugin offers the preset.
    UnknownPreset,
    /// The image or file exceeds the configured limits.
    TooLarge,
    /// The engine rejected the key.
    EngineAuth,
    /// The engine refused the content.
    EngineRefused,
    /// The engine cannot be reached or failed.
    EngineUnavailable,
    /// The engine asked us to slow down.
    RateLimited,
    /// A paid call would go past a `[budget]` spending cap; nothing was sent.
    BudgetExceeded,
    /// A plugin failed.
    PluginFailed,
    /// The output could not be written.
    OutputFailed,
    /// The daemon is at its limit of jobs.
    Busy,
    /// The client cancelled or went away.
    Cancelled,
    /// Client and daemon speak different protocol majors.
    ProtocolMismatch,
    /// A bug.
    Internal,
}

impl ErrorCode {
    /// The wire spelling, e.g. `unsupported_format`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnsupportedFormat => "unsupported_format",
            ErrorCode::CorruptInput => "corrupt_input",
            ErrorCode::NotFound => "not_found",
            ErrorCode::UnknownPreset => "unknown_preset",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::EngineAuth => "engine_auth",
            ErrorCode::EngineRefused => "engine_refused",
            ErrorCode::EngineUnavailable => "engine_unavailable",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::BudgetExceeded => "budget_exceeded",
            ErrorCode::PluginFailed => "plugin_failed",
            ErrorCode::OutputFailed => "output_failed",
            ErrorCode::Busy => "busy",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::ProtocolMismatch => "protocol_mismatch",
            ErrorCode::Internal => "internal",
        }
    }

    /// Whether trying the same request again later may succeed.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::EngineUnavailable | ErrorCode::RateLimited | ErrorCode::Busy
        )
    }
}

/// A failed job: what went wrong, in words that name the file or preset and say what to do.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct JobError {
    /// Stable code.
    pub code: ErrorCode,
    /// One or two sentences for people.
    pub message: String,
}

impl JobError {
    /// An error with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        JobError {
            code,
            message: message.into(),
        }
    }

    /// An error about a file: the message starts with the file's path.
    pub fn file(code: ErrorCode, path: &Path, reason: impl std::fmt::Display) -> Self {
        JobError::new(code, format!("{}: {reason}", path.display()))
    }

    /// The job was cancelled.
    pub fn cancelled() -> Self {
        JobError::new(ErrorCode::Cancelled, "cancelled")
    }
}

/// Checked between and inside stages; set when the client cancels or disconnects.
pub type Cancel = std::sync::Arc<std::sync::atomic::AtomicBool>;

/// Returns `Err(cancelled)` once the flag is set.
pub fn check(cancel: &Cancel) -> Result<(), JobError> {
    if cancel.load(std::sync::atomic::Ordering::Relaxed) {
        Err(JobError::cancelled())
    } else {
        Ok(())
    }
}
