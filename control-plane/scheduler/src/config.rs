//! The scheduler's configuration: a plain struct with upstream's defaults
//! where upstream has one, checked by [`Config::validate`] before the loop
//! touches the API.

use std::time::Duration;

/// How the scheduler loop runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Pods whose `spec.schedulerName` is this (or empty) are ours.
    pub scheduler_name: String,
    /// Binds in flight at once.
    pub bind_concurrency: usize,
    /// First wait before a pod that failed is tried again (upstream: 1 s).
    pub initial_backoff: Duration,
    /// Longest such wait (upstream: 10 s).
    pub max_backoff: Duration,
    /// An unschedulable pod is tried again after this long even if nothing
    /// changed in the cluster (upstream: 5 min; shorter here, since edge
    /// nodes come and go without always telling).
    pub unschedulable_flush: Duration,
    /// Event and status writes in flight at once; "Scheduled" events past
    /// this are dropped (and counted in the log) rather than slowing binds.
    pub event_concurrency: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            scheduler_name: "default-scheduler".to_string(),
            bind_concurrency: 32,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            unschedulable_flush: Duration::from_secs(60),
            event_concurrency: 64,
        }
    }
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scheduler config: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.scheduler_name.is_empty() {
            return Err(ConfigError("scheduler_name must not be empty".into()));
        }
        if !(1..=1024).contains(&self.bind_concurrency) {
            return Err(ConfigError("bind_concurrency must be 1 to 1024".into()));
        }
        if !(1..=1024).contains(&self.event_concurrency) {
            return Err(ConfigError("event_concurrency must be 1 to 1024".into()));
        }
        if self.initial_backoff.is_zero() || self.initial_backoff > self.max_backoff {
            return Err(ConfigError(
                "initial_backoff must be above zero and at most max_backoff".into(),
            ));
        }
        if self.max_backoff > Duration::from_secs(3600) {
            return Err(ConfigError("max_backoff must be at most 1h".into()));
        }
        if self.unschedulable_flush > Duration::from_secs(86_400) {
            return Err(ConfigError(
                "unschedulable_flush must be at most 24h".into(),
            ));
        }
        if self.unschedulable_flush < self.initial_backoff {
            return Err(ConfigError(
                "unschedulable_flush must be at least initial_backoff".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_valid_and_bad_values_are_named() {
        assert!(Config::default().validate().is_ok());
        let bad = Config {
            bind_concurrency: 0,
            ..Config::default()
        };
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "scheduler config: bind_concurrency must be 1 to 1024"
        );
        let bad = Config {
            initial_backoff: Duration::from_secs(20),
            ..Config::default()
        };
        assert!(bad.validate().is_err());
        let bad = Config {
            scheduler_name: String::new(),
            ..Config::default()
        };
        assert!(bad.validate().is_err());
    }
}
