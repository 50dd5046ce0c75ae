//! The wire protocol's messages. With [`crate::frame`] (which this module re-exports), the
//! only module that knows the wire format.
//!
//! A frame is a 4-byte little-endian length followed by that many bytes of UTF-8 JSON (one
//! object). Frames over [`MAX_FRAME`] are refused and the connection closed. The first
//! frame each way is `hello` / `welcome`. Requests carry an `id`; the daemon answers with
//! `progress` events for that id and then exactly one `done` or `error`. docs/PROTOCOL.md
//! shows every message.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use crate::frame::{read_frame, write_frame, FrameError, MAX_FRAME};

use crate::error::ErrorCode;
use crate::pipeline::estimate::EstimateRequest;
use crate::pipeline::live::PreviewRequest;
use crate::pipeline::looks::LearnRequest;
use crate::pipeline::EnhanceRequest;

/// Protocol version `major.minor`. A different major is refused with a clear error.
pub const PROTOCOL_VERSION: &str = "1.0";

/// What the daemon can do, announced in `welcome`.
pub const CAPABILITIES: &[&str] = &[
    "enhance",
    "preview",
    "estimate",
    "learn_look",
    "presets",
    "plugins",
    "reload_plugins",
    "status",
    "cancel",
    "stop",
];

/// Client → daemon.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// First frame of a connection.
    Hello {
        /// `major.minor`.
        protocol: String,
        /// Free-form client name and version, for logs.
        client: String,
    },
    /// Enhance one photo.
    Enhance {
        /// Request id, echoed in events.
        id: String,
        /// The job.
        #[serde(flatten)]
        job: EnhanceRequest,
    },
    /// A small rendering of an enhance job, to judge it (and its intensity) before the
    /// full-resolution file; the engine's answer is cached for the `enhance` that follows.
    Preview {
        /// Request id, echoed in events.
        id: String,
        /// The preview.
        #[serde(flatten)]
        job: PreviewRequest,
    },
    /// What enhancing photos would cost: cached or not, the price, the totals, the caps.
    Estimate {
        /// Request id.
        id: String,
        /// The batch.
        #[serde(flatten)]
        job: EstimateRequest,
    },
    /// Learn a shoot's look from reference photos (one engine call each) into a `.look`
    /// file; `enhance` with `look` then applies it with no engine call.
    LearnLook {
        /// Request id.
        id: String,
        /// The references and the preset.
        #[serde(flatten)]
        job: LearnRequest,
    },
    /// List presets.
    Presets {
        /// Request id.
        id: String,
    },
    /// List plugin libraries and their state.
    Plugins {
        /// Request id.
        id: String,
    },
    /// Rescan the plugin folders and restart every runner (new, rebuilt or quarantined
    /// plugins are picked up without restarting the daemon).
    ReloadPlugins {
        /// Request id.
        id: String,
    },
    /// Daemon status.
    Status {
        /// Request id.
        id: String,
    },
    /// Cancel a running request of this connection.
    Cancel {
        /// Request id of this message.
        id: String,
        /// Id of the request to cancel.
        job: String,
    },
    /// Stop the daemon (running jobs are cancelled).
    Stop {
        /// Request id.
        id: String,
    },
}

/// Daemon → client.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// Answer to `hello`.
    Welcome {
        /// The daemon's protocol version.
        protocol: String,
        /// Luminary version.
        version: String,
        /// Supported request types.
        capabilities: Vec<String>,
    },
    /// Progress of a request.
    Progress {
        /// Request id.
        id: String,
        /// Stage now running.
        stage: String,
        /// Overall fraction 0..1.
        fraction: f32,
    },
    /// Success; the body depends on the request.
    Done {
        /// Request id.
        id: String,
        /// Result fields.
        #[serde(flatten)]
        result: Map<String, Value>,
    },
    /// Failure of a request (or of the connection, when `id` is null).
    Error {
        /// Request id, if the error belongs to one.
        id: Option<String>,
        /// Stable error code.
        code: ErrorCode,
        /// What went wrong, for people.
        message: String,
        /// Whether retrying later may help.
        retryable: bool,
    },
}

impl Event {
    /// An error event from a code and message.
    pub fn error(id: Option<String>, code: ErrorCode, message: impl Into<String>) -> Event {
        Event::Error {
            id,
            code,
            message: message.into(),
            retryable: code.retryable(),
        }
    }
}

/// The major part of a `major.minor` version.
pub fn major(version: &str) -> &str {
    version.split('.').next().unwrap_or(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enhance_request_wire_shape() {
        let json = r#"{"type":"enhance","id":"1","source":"/p/a.dng","preset":"auto","intensity":0.7,
                       "params":{"strength":1.2},"output":{"format":"jpeg","color_space":"display-p3"}}"#;
        let Request::Enhance { id, job } = serde_json::from_str(json).unwrap() else {
            panic!()
        };
        assert_eq!(id, "1");
        assert_eq!(job.intensity, Some(0.7));
        assert_eq!(
            job.output.color_space,
            Some(crate::color::OutputSpace::DisplayP3)
        );
    }
}
