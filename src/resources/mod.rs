//! What the bot holds and when it lets go: the registry of calls, players and tasks (with
//! guards), the idle/alone policy, the sweeper that reconciles and reaps, and the
//! snapshot `/resources` renders, and the histograms `/metrics` adds to it.

pub mod idle;
pub mod registry;
pub mod report;
pub mod sweeper;
pub mod system;
pub mod timings;

pub use idle::{Activity, IdlePolicy};
pub use registry::{
    CallGuard, CallInfo, CleanupReason, Cleanups, Guard, Kind, KindStats, Registry,
};
