//! What every engine is: the trait the pipeline runs, what it hands an engine about the
//! job, and what it gets back. Below the engines themselves (`local`, `remote`) and the
//! choice between them (`mod.rs`), so an engine never reaches up for its own contract.

use luminary_plugin_api::EngineRequest;

use super::remote::{Answer, EditJob};
use crate::error::{Cancel, JobError};
use crate::image::RgbF32;

/// What an engine gives back.
pub enum Edited {
    /// The base with the edit already applied and blended at the requested intensity.
    Blended(RgbF32),
    /// An edited preview, for the transfer stage.
    Answer {
        /// The untouched base, handed back.
        base: RgbF32,
        /// The preview exactly as the engine received it (working space).
        seen: RgbF32,
        /// The engine's picture.
        answer: Answer,
    },
}

/// Runs a wait that needs no CPU (an AI engine's answer) so that the job's CPU slot can go
/// to another job meanwhile: the daemon lends the slot for the wait and takes it back
/// after, so a batch keeps the engine's `concurrency` calls in flight while `max_jobs`
/// still bounds the pixel work. Outside the daemon, [`stay_on_cpu`].
pub type OffCpu<'a> = &'a (dyn Fn(&mut dyn FnMut()) + Sync);

/// An [`OffCpu`] that just runs the wait (nothing to lend).
pub fn stay_on_cpu(wait: &mut dyn FnMut()) {
    wait()
}

/// What an engine may need to know about the job besides pixels.
pub struct JobInfo<'a> {
    /// The edit's identity (cache key, ledger).
    pub edit: EditJob<'a>,
    /// Human status lines while waiting ("queued (position 3)").
    pub status: &'a (dyn Fn(&str) + Sync),
    /// Where the wait for an AI engine runs.
    pub off_cpu: OffCpu<'a>,
}

/// An engine. Implementations must be cancellable through `cancel` and must never log
/// keys.
pub trait Engine: Send + Sync {
    /// Name used on the command line and in results (`local`, `gemini`, …).
    fn name(&self) -> &str;
    /// Model identifier reported in results and provenance.
    fn model(&self) -> String;
    /// Runs the request. `base` is the full-resolution original, `preview` its downscale,
    /// `intensity` the blend the user asked for.
    fn run(
        &self,
        req: &EngineRequest,
        job: &JobInfo<'_>,
        base: RgbF32,
        preview: &RgbF32,
        intensity: f32,
        cancel: &Cancel,
    ) -> Result<Edited, JobError>;
}
