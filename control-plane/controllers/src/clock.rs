//! The time source, injected so that controller logic is tested without
//! waiting.

use std::fmt::Debug;
use std::time::SystemTime;

/// Where controllers get the time of day.
pub trait Clock: Send + Sync + Debug + 'static {
    /// Now.
    fn now(&self) -> SystemTime;

    /// Now, as the timestamp type of k8s-openapi's `Time`.
    fn timestamp(&self) -> jiff::Timestamp {
        jiff::Timestamp::try_from(self.now()).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    }
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}
