//! Lease-based leader election, as client-go's `leaderelection` does it.
//!
//! Every server campaigns for a `coordination.k8s.io/v1` Lease (for the
//! controllers `kube-system/kube-controller-manager`, for the scheduler
//! `kube-system/kube-scheduler`). The holder renews it every
//! [`LeaderConfig::retry_period`]; the others try as often to take it over.
//!
//! Expiry is judged by the candidate's own clock, never by comparing its
//! clock with the holder's: a candidate remembers when it last saw the
//! Lease's record change, and takes the Lease over only when the record has
//! not changed for `leaseDurationSeconds` since ([`Observation`]). Every
//! write is a compare-and-swap on the Lease's resourceVersion, so two
//! candidates racing for an expired Lease cannot both win.
//!
//! A holder that cannot renew within [`LeaderConfig::renew_deadline`] stops
//! its work before the Lease can expire for the others (the deadline is
//! shorter than the lease duration), so two servers never lead at once.
//! On a clean shutdown the holder releases the Lease, and another server
//! takes over at its next try rather than after the whole lease duration.
//!
//! The decision ([`decide`]) is a pure function of the Lease, the
//! observation and the time, tested on tables; [`run_elected`] is the loop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::{Clock, Error};

/// How a server campaigns for one Lease.
#[derive(Debug, Clone)]
pub struct LeaderConfig {
    /// Namespace of the Lease (`kube-system`).
    pub namespace: String,
    /// Name of the Lease (`kube-controller-manager`, `kube-scheduler`).
    pub name: String,
    /// Who this server is: its hostname and a random suffix, as upstream.
    pub identity: String,
    /// How long others wait after the last renewal before taking over (15 s).
    pub lease_duration: Duration,
    /// How long the holder keeps trying to renew before it gives up (10 s).
    pub renew_deadline: Duration,
    /// How often the holder renews and candidates retry (2 s).
    pub retry_period: Duration,
}

impl LeaderConfig {
    /// Upstream's defaults for a Lease in kube-system.
    pub fn new(name: &str, identity: &str) -> Self {
        LeaderConfig {
            namespace: "kube-system".to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// The durations must leave the holder time to step down before others
    /// take over, as client-go requires.
    pub fn validate(&self) -> Result<(), Error> {
        if self.renew_deadline >= self.lease_duration {
            return Err(Error::Invalid(format!(
                "leader election: the renew deadline ({:?}) must be shorter than the lease duration ({:?})",
                self.renew_deadline, self.lease_duration
            )));
        }
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return Err(Error::Invalid(format!(
                "leader election: the retry period ({:?}) must be positive and shorter than the renew deadline ({:?})",
                self.retry_period, self.renew_deadline
            )));
        }
        if self.identity.is_empty() {
            return Err(Error::Invalid(
                "leader election: the identity must not be empty".to_string(),
            ));
        }
        Ok(())
    }
}

/// What a candidate last saw of the Lease's record, and when by its own
/// clock.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The holder and renew time that were seen.
    pub record: (Option<String>, Option<MicroTime>),
    /// When the record was first seen in this form.
    pub at: Instant,
}

/// What to do after reading the Lease.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Create the Lease, holding it.
    Create,
    /// Write this spec (acquire or renew), conditional on the read version.
    Write(LeaseSpec),
    /// Someone else holds a live Lease.
    Wait,
}

/// Decides what a candidate does with the Lease it read.
///
/// `observed` is updated to the record in `lease` when it changed; `now` is
/// the candidate's monotonic time and `wall` its time of day (written into
/// the Lease for people to read, never compared across servers).
pub fn decide(
    lease: Option<&LeaseSpec>,
    observed: &mut Option<Observation>,
    config: &LeaderConfig,
    now: Instant,
    wall: jiff::Timestamp,
) -> Decision {
    let Some(spec) = lease else {
        return Decision::Create;
    };
    let record = (spec.holder_identity.clone(), spec.renew_time.clone());
    if observed.as_ref().is_none_or(|o| o.record != record) {
        *observed = Some(Observation { record, at: now });
    }
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    let ours = holder == config.identity;
    let duration = spec
        .lease_duration_seconds
        .map(|s| Duration::from_secs(s.max(0) as u64))
        .unwrap_or(config.lease_duration);
    let seen_at = observed.as_ref().map(|o| o.at).unwrap_or(now);
    let expired = holder.is_empty() || now.saturating_duration_since(seen_at) >= duration;
    if !ours && !expired {
        return Decision::Wait;
    }
    let mut next = spec.clone();
    next.holder_identity = Some(config.identity.clone());
    next.lease_duration_seconds = Some(config.lease_duration.as_secs() as i32);
    next.renew_time = Some(MicroTime(wall));
    if !ours {
        next.acquire_time = Some(MicroTime(wall));
        next.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    Decision::Write(next)
}

/// The spec of a Lease created by its first holder.
fn new_spec(config: &LeaderConfig, wall: jiff::Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: Some(config.lease_duration.as_secs() as i32),
        acquire_time: Some(MicroTime(wall)),
        renew_time: Some(MicroTime(wall)),
        lease_transitions: Some(0),
        ..LeaseSpec::default()
    }
}

/// One attempt to acquire or renew: true when this server holds the Lease
/// afterwards.
async fn try_acquire_or_renew(
    api: &Api<Lease>,
    config: &LeaderConfig,
    clock: &dyn Clock,
    observed: &mut Option<Observation>,
) -> Result<bool, Error> {
    let current = api.get_opt(&config.name).await?;
    let wall = clock.timestamp();
    match decide(
        current.as_ref().and_then(|l| l.spec.as_ref()),
        observed,
        config,
        Instant::now(),
        wall,
    ) {
        Decision::Wait => Ok(false),
        Decision::Create => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.name.clone()),
                    namespace: Some(config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(new_spec(config, wall)),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e.into()),
            }
        }
        Decision::Write(spec) => {
            let Some(mut lease) = current else {
                return Ok(false);
            };
            lease.spec = Some(spec);
            match api
                .replace(&config.name, &PostParams::default(), &lease)
                .await
            {
                Ok(_) => Ok(true),
                // Someone else wrote first; read again next time.
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// Gives the Lease up on a clean shutdown, so that another server takes
/// over at its next try.
async fn release(api: &Api<Lease>, config: &LeaderConfig, clock: &dyn Clock) {
    let Ok(Some(mut lease)) = api.get_opt(&config.name).await else {
        return;
    };
    let Some(spec) = lease.spec.as_mut() else {
        return;
    };
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(MicroTime(clock.timestamp()));
    if let Err(e) = api
        .replace(&config.name, &PostParams::default(), &lease)
        .await
    {
        warn!(lease = %config.name, error = %e, "could not release the lease");
    }
}

/// Runs `work` whenever this server holds the Lease, until `shutdown`
/// resolves; then releases the Lease.
///
/// `work` is started anew on each acquisition, and dropped (stopped) as
/// soon as the Lease cannot be renewed within the renew deadline. If `work`
/// returns on its own, the Lease is released and the server campaigns
/// again after one retry period.
pub async fn run_elected<W, Fut>(
    client: kube::Client,
    config: LeaderConfig,
    clock: Arc<dyn Clock>,
    mut work: W,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error>
where
    W: FnMut() -> Fut,
    Fut: Future<Output = Result<(), Error>>,
{
    config.validate()?;
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut observed = None;
    tokio::pin!(shutdown);
    loop {
        // Campaign.
        loop {
            match try_acquire_or_renew(&api, &config, clock.as_ref(), &mut observed).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => {
                    warn!(lease = %config.name, error = %e, "leader election: cannot read or write the lease")
                }
            }
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = tokio::time::sleep(config.retry_period) => {}
            }
        }
        info!(lease = %config.name, identity = %config.identity, "became leader");
        let mut last_renewed = Instant::now();
        let mut running = Box::pin(work());
        let reason = loop {
            tokio::select! {
                _ = &mut shutdown => {
                    // Stop the work first, then let others take over.
                    break None;
                }
                result = &mut running => {
                    break Some(match result {
                        Ok(()) => "work stopped".to_string(),
                        Err(e) => format!("work failed: {e}"),
                    });
                }
                _ = tokio::time::sleep(config.retry_period) => {
                    match try_acquire_or_renew(&api, &config, clock.as_ref(), &mut observed).await {
                        Ok(true) => last_renewed = Instant::now(),
                        Ok(false) => break Some("another server holds the lease".to_string()),
                        Err(e) => {
                            warn!(lease = %config.name, error = %e, "could not renew the lease");
                            if last_renewed.elapsed() >= config.renew_deadline {
                                break Some("could not renew within the renew deadline".to_string());
                            }
                        }
                    }
                }
            }
        };
        // Dropping `running` stops the work before anything else happens.
        drop(running);
        match reason {
            None => {
                release(&api, &config, clock.as_ref()).await;
                info!(lease = %config.name, "released the lease");
                return Ok(());
            }
            Some(why) => {
                warn!(lease = %config.name, %why, "stopped leading");
                release(&api, &config, clock.as_ref()).await;
                tokio::select! {
                    _ = &mut shutdown => return Ok(()),
                    _ = tokio::time::sleep(config.retry_period) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LeaderConfig {
        LeaderConfig::new("kube-controller-manager", "me")
    }

    fn wall(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(s).unwrap()
    }

    fn held_by(holder: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_string()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(wall(renewed))),
            lease_transitions: Some(3),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_missing_lease_is_created() {
        let mut seen = None;
        let d = decide(None, &mut seen, &config(), Instant::now(), wall(100));
        assert_eq!(d, Decision::Create);
    }

    #[tokio::test(start_paused = true)]
    async fn a_live_lease_of_another_is_left_alone_until_it_stops_changing_for_its_duration() {
        let cfg = config();
        let mut seen = None;
        let t0 = Instant::now();
        let other = held_by("other", 100);
        assert_eq!(
            decide(Some(&other), &mut seen, &cfg, t0, wall(100)),
            Decision::Wait
        );
        // 14 s later, unchanged: still waiting.
        let t1 = t0 + Duration::from_secs(14);
        assert_eq!(
            decide(Some(&other), &mut seen, &cfg, t1, wall(114)),
            Decision::Wait
        );
        // The holder renewed: the observation restarts.
        let renewed = held_by("other", 112);
        let t2 = t0 + Duration::from_secs(16);
        assert_eq!(
            decide(Some(&renewed), &mut seen, &cfg, t2, wall(116)),
            Decision::Wait
        );
        // 15 s with no change: taken over, with one more transition.
        let t3 = t2 + Duration::from_secs(15);
        match decide(Some(&renewed), &mut seen, &cfg, t3, wall(131)) {
            Decision::Write(spec) => {
                assert_eq!(spec.holder_identity.as_deref(), Some("me"));
                assert_eq!(spec.lease_transitions, Some(4));
                assert_eq!(spec.acquire_time, Some(MicroTime(wall(131))));
            }
            other => panic!("expected a takeover, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_holder_renews_without_a_transition_and_clock_skew_does_not_matter() {
        let cfg = config();
        let mut seen = None;
        // Our own lease, with a renew time far in the "future" of the wall clock.
        let mine = held_by("me", 10_000);
        match decide(Some(&mine), &mut seen, &cfg, Instant::now(), wall(100)) {
            Decision::Write(spec) => {
                assert_eq!(spec.lease_transitions, Some(3));
                assert_eq!(spec.renew_time, Some(MicroTime(wall(100))));
                assert_eq!(spec.acquire_time, None);
            }
            other => panic!("expected a renewal, got {other:?}"),
        }
        // Another's lease renewed "long ago" by its clock is still live for us.
        let mut seen = None;
        let old = held_by("other", 1);
        assert_eq!(
            decide(Some(&old), &mut seen, &cfg, Instant::now(), wall(100_000)),
            Decision::Wait
        );
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        let mut seen = None;
        let mut released = held_by("other", 100);
        released.holder_identity = None;
        let d = decide(
            Some(&released),
            &mut seen,
            &config(),
            Instant::now(),
            wall(101),
        );
        assert!(matches!(d, Decision::Write(_)), "{d:?}");
    }

    #[test]
    fn durations_are_checked() {
        let mut cfg = config();
        assert!(cfg.validate().is_ok());
        cfg.renew_deadline = cfg.lease_duration;
        assert!(cfg.validate().is_err());
        let mut cfg = config();
        cfg.retry_period = Duration::ZERO;
        assert!(cfg.validate().is_err());
    }
}
