//! The decision core of the dunning engine: given invoices, what they have been through
//! and a policy, decide what to do today. Pure and storage-free: every answer is a
//! function of (invoice, history, local date, policy), so runs can be repeated, retried
//! or replayed after downtime without ever doing anything twice.
//!
//! - [`policy`]: the `[policies.NAME]` and `[engine]` configuration, its validation and
//!   the compiled [`PolicyBook`] the planner reads.
//! - [`fees`]: late-fee models and the pure fee computation.
//! - [`window`]: when actions may go out (cron in a time zone, holidays, DST).
//! - [`templates`]: default message texts and the strict placeholder renderer.
//! - [`plan`]: [`plan()`] itself, its inputs (history) and its output.

pub mod dates;
pub mod fees;
pub mod plan;
pub mod policy;
pub mod templates;
pub mod window;

#[cfg(test)]
mod scenarios;

pub use fees::{
    quote_fee, ChargedFee, FeeInput, FeeModelKind, FeeQuote, LateFee, LateFeeConfig, NoFee,
    NoFeeReason,
};
pub use plan::{
    adoption_summary, plan, ActionRecord, AdoptionSummary, BalanceChange, InvoiceCase,
    InvoiceHistory, Pause, Plan, PlanError, PlanInputs, PlannedAction, Promise, SkipCode, Skipped,
};
pub use policy::{
    Channel, CompiledPolicy, CustomerOverride, EngineSettings, FieldError, Policy, PolicyBook,
    RepeatConfig, Resolution, StepAction, StepConfig, ValidationErrors,
};
pub use templates::{
    render_message, MessageContext, MessageTemplate, RenderedMessage, TemplateError,
};
pub use window::{SendWindow, SendWindowConfig, WindowError, WindowState};
