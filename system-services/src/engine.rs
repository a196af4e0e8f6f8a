//! The running set of services. At boot each service starts as soon as
//! the services it waits for have settled (running, or for a one-shot job
//! finished); afterwards a person starts, stops, restarts and removes them
//! one by one. At shutdown each service stops once the services that wait
//! for it have stopped; those that nothing left waits for stop together.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::sync::watch;

use crate::order::Plan;
use crate::restart::Backoff;
use crate::runtime::ContainerRuntime;
use crate::service::{Service, ServiceName};
use crate::supervisor::{
    Milestone, Observer, ServiceState, ServiceStatus, Supervised, finished, settled,
    supervise_observed,
};

/// A request about a service the engine does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("service {0} is not running and has not run since boot")]
pub struct NotSupervised(pub ServiceName);

/// One service the engine knows: its definition as last started and its
/// status, which outlives the supervisor so a stopped service still shows.
#[derive(Debug)]
struct Slot {
    service: Service,
    status: watch::Receiver<ServiceStatus>,
    supervised: Option<Supervised>,
}

/// What the engine knows of a service.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub service: Service,
    pub status: ServiceStatus,
    /// Whether a supervisor runs it (false after stop).
    pub supervised: bool,
}

#[derive(Debug)]
pub struct Engine<R> {
    runtime: Arc<R>,
    log_dir: PathBuf,
    slots: Mutex<BTreeMap<ServiceName, Slot>>,
    /// Names in the order they were (last) started, for stopping in reverse.
    started: Mutex<Vec<ServiceName>>,
    observer: Watcher,
    /// Bumped whenever a service gets a slot, for [`Engine::status_when_known`].
    known: watch::Sender<u64>,
    /// Set by [`Engine::stop_all`]: nothing starts after it (a service
    /// that comes after the network, or one a person starts, could
    /// otherwise outlive the shutdown's stops).
    closing: AtomicBool,
}

/// The [`Observer`], if any: told each service's milestones.
#[derive(Default)]
struct Watcher(Option<Observer>);

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Some(observer)"
        } else {
            "None"
        })
    }
}

impl Watcher {
    fn tell(&self, name: &ServiceName, milestone: Milestone) {
        if let Some(observer) = &self.0 {
            observer(name, milestone);
        }
    }
}

impl<R: ContainerRuntime> Engine<R> {
    /// Services' output goes to `log_dir/<name>.log`.
    pub fn new(runtime: Arc<R>, log_dir: impl Into<PathBuf>) -> Self {
        Self {
            runtime,
            log_dir: log_dir.into(),
            slots: Mutex::new(BTreeMap::new()),
            started: Mutex::new(Vec::new()),
            observer: Watcher::default(),
            known: watch::Sender::new(0),
            closing: AtomicBool::new(false),
        }
    }

    /// Tells `observer` when each service begins, is created, started and
    /// settled: the boot timeline.
    #[must_use]
    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observer = Watcher(Some(observer));
        self
    }

    /// The log file of `name`.
    pub fn log_file(&self, name: &ServiceName) -> PathBuf {
        self.log_dir.join(format!("{name}.log"))
    }

    fn slots(&self) -> MutexGuard<'_, BTreeMap<ServiceName, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn started(&self) -> MutexGuard<'_, Vec<ServiceName>> {
        self.started.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts every service of `plan` (their definitions in `services`),
    /// each once those it waits for have settled; returns when all have
    /// settled, with their statuses in plan order.
    pub async fn start_plan(
        &self,
        services: &[Service],
        plan: &Plan,
    ) -> Vec<(ServiceName, ServiceStatus)> {
        let by_name: BTreeMap<&ServiceName, &Service> =
            services.iter().map(|s| (&s.name, s)).collect();
        let mut settled_tx = BTreeMap::new();
        let mut settled_rx = BTreeMap::new();
        for name in &plan.order {
            let (tx, rx) = watch::channel(false);
            settled_tx.insert(name.clone(), tx);
            settled_rx.insert(name.clone(), rx);
        }
        let starts = plan.order.iter().filter_map(|name| {
            let service = (*by_name.get(name)?).clone();
            let waits: Vec<watch::Receiver<bool>> = plan
                .waits_for
                .get(name)
                .into_iter()
                .flatten()
                .filter_map(|dep| settled_rx.get(dep).cloned())
                .collect();
            let done = settled_tx.remove(name)?;
            Some(async move {
                for mut wait in waits {
                    // An error means that service's start was dropped: go on.
                    let _ = wait.wait_for(|settled| *settled).await;
                }
                let name = service.name.clone();
                let detach = service.detach;
                self.observer.tell(&name, Milestone::Begun);
                let mut status = self.start(service).await;
                if !detach {
                    // A one-shot job: the services after it wait for it to finish.
                    if let Some(supervised) = self.status_of(&name) {
                        status = finished(supervised).await;
                    }
                }
                self.observer.tell(&name, Milestone::Settled);
                done.send_replace(true);
                (name, status)
            })
        });
        let mut results = futures::future::join_all(starts).await;
        let position = |name: &ServiceName| plan.order.iter().position(|n| n == name);
        results.sort_by_key(|(name, _)| position(name));
        results
    }

    /// Starts `service` and waits until it runs (or failed). A service
    /// already running with the same definition is left alone; one with
    /// another definition is replaced (stopped, then started anew).
    pub async fn start(&self, service: Service) -> ServiceStatus {
        if self.closing.load(Ordering::SeqCst) {
            return shutting_down();
        }
        let previous = {
            let mut slots = self.slots();
            match slots.get_mut(&service.name) {
                Some(slot) if slot.supervised.is_some() && slot.service == service => {
                    return slot.status.borrow().clone();
                }
                Some(slot) => slot.supervised.take(),
                None => None,
            }
        };
        if let Some(previous) = previous {
            tracing::info!(service = %service.name, "definition changed; replacing");
            previous.stop().await;
        }
        let name = service.name.clone();
        let log = self.log_file(&name);
        let supervised = supervise_observed(
            Arc::clone(&self.runtime),
            service.clone(),
            log,
            Backoff::default(),
            self.observer.0.clone(),
        );
        let status = supervised.status();
        {
            let mut slots = self.slots();
            let mut started = self.started();
            // Checked under the lock `stop_all` takes its list with: a
            // start either is in that list or sees the flag.
            if self.closing.load(Ordering::SeqCst) {
                drop(started);
                drop(slots);
                supervised.stop().await;
                return shutting_down();
            }
            slots.insert(
                name.clone(),
                Slot {
                    service,
                    status: status.clone(),
                    supervised: Some(supervised),
                },
            );
            started.retain(|n| *n != name);
            started.push(name.clone());
        }
        self.known.send_modify(|n| *n += 1);
        settled(status).await
    }

    /// Stops `name`: SIGTERM, a grace period, SIGKILL; the container is
    /// removed. The engine still knows its definition and last status.
    pub async fn stop(&self, name: &ServiceName) -> Result<ServiceStatus, NotSupervised> {
        let (supervised, status) = {
            let mut slots = self.slots();
            let slot = slots
                .get_mut(name)
                .ok_or_else(|| NotSupervised(name.clone()))?;
            (slot.supervised.take(), slot.status.clone())
        };
        if let Some(supervised) = supervised {
            tracing::info!(service = %name, "stopping");
            supervised.stop().await;
        }
        let last = status.borrow().clone();
        Ok(last)
    }

    /// Stops `name` and starts it again with `service` (its definition
    /// now), or with the definition it last ran with.
    pub async fn restart(
        &self,
        name: &ServiceName,
        service: Option<Service>,
    ) -> Result<ServiceStatus, NotSupervised> {
        let known = self.slots().get(name).map(|slot| slot.service.clone());
        let service = service
            .or(known)
            .ok_or_else(|| NotSupervised(name.clone()))?;
        if self.slots().contains_key(name) {
            self.stop(name).await?;
        }
        Ok(self.start(service).await)
    }

    /// Stops `name` and forgets it.
    pub async fn remove(&self, name: &ServiceName) -> Result<(), NotSupervised> {
        self.stop(name).await?;
        self.slots().remove(name);
        self.started().retain(|n| n != name);
        Ok(())
    }

    /// Every service the engine knows, by name.
    pub fn snapshot(&self) -> BTreeMap<ServiceName, Snapshot> {
        self.slots()
            .iter()
            .map(|(name, slot)| {
                (
                    name.clone(),
                    Snapshot {
                        service: slot.service.clone(),
                        status: slot.status.borrow().clone(),
                        supervised: slot.supervised.is_some(),
                    },
                )
            })
            .collect()
    }

    /// The live status of one service, if the engine knows it.
    pub fn status_of(&self, name: &ServiceName) -> Option<watch::Receiver<ServiceStatus>> {
        self.slots().get(name).map(|slot| slot.status.clone())
    }

    /// The live status of `name` once the engine knows it: what waits
    /// for a service that a plan starts later (the console, for `ready`).
    pub async fn status_when_known(&self, name: &ServiceName) -> watch::Receiver<ServiceStatus> {
        let mut known = self.known.subscribe();
        loop {
            if let Some(status) = self.status_of(name) {
                return status;
            }
            // The engine holds the sender: this only ends with it.
            let _ = known.changed().await;
        }
    }

    /// Stops every service, in waves: those that no service still running
    /// waits for stop together (a stop can take its whole grace period,
    /// so one after another would add them up), then the next.
    pub async fn stop_all(&self) {
        self.closing.store(true, Ordering::SeqCst);
        let mut left: Vec<ServiceName> = self.started().iter().rev().cloned().collect();
        while !left.is_empty() {
            let (mut now, mut later): (Vec<_>, Vec<_>) = {
                let slots = self.slots();
                let waited_for = |name: &ServiceName| {
                    left.iter()
                        .any(|other| other != name && waits_for(&slots, other, name))
                };
                left.iter().cloned().partition(|name| !waited_for(name))
            };
            if now.is_empty() {
                // A cycle the plan would have refused: last started first.
                now.push(later.remove(0));
            }
            futures::future::join_all(now.iter().map(|name| self.stop(name))).await;
            left = later;
        }
    }
}

/// What a start asked for during the shutdown gets.
fn shutting_down() -> ServiceStatus {
    ServiceStatus {
        state: ServiceState::Failed {
            error: "the machine is shutting down".into(),
            permanent: true,
        },
        restarts: 0,
        reattached: false,
        since: SystemTime::now(),
    }
}

/// Whether `waiter` comes after `service`: its `after` names it, or the
/// service's `before` names the waiter.
fn waits_for(
    slots: &BTreeMap<ServiceName, Slot>,
    waiter: &ServiceName,
    service: &ServiceName,
) -> bool {
    let after = slots
        .get(waiter)
        .is_some_and(|slot| slot.service.after.contains(service));
    let before = slots
        .get(service)
        .is_some_and(|slot| slot.service.before.contains(waiter));
    after || before
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::fake::{FakeCall, FakeRuntime};
    use crate::order::plan;
    use crate::service::RestartPolicy;

    fn name(text: &str) -> ServiceName {
        ServiceName::new(text).unwrap()
    }

    fn service(text: &str, after: &[&str]) -> Service {
        let mut s = Service::new(name(text), "/root", vec!["run".into()]);
        s.after = after.iter().map(|n| name(n)).collect();
        s.restart = RestartPolicy::Always;
        s
    }

    fn engine(runtime: &Arc<FakeRuntime>) -> Engine<FakeRuntime> {
        Engine::new(Arc::clone(runtime), "/var/log/ros")
    }

    fn created(runtime: &FakeRuntime) -> Vec<String> {
        runtime
            .calls()
            .into_iter()
            .filter_map(|c| match c {
                FakeCall::CreateContainer(id) => Some(id),
                _ => None,
            })
            .collect()
    }

    fn removed(runtime: &FakeRuntime) -> Vec<String> {
        runtime
            .calls()
            .into_iter()
            .filter_map(|c| match c {
                FakeCall::DeleteContainer(id) => Some(id),
                _ => None,
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_starts_once_the_shutdown_has_begun() {
        let runtime = Arc::new(FakeRuntime::default());
        let engine = engine(&runtime);
        engine.start(service("console", &[])).await;
        engine.stop_all().await;
        // A service that comes after the network, its lease late.
        let status = engine.start(service("ntp", &[])).await;
        assert_eq!(
            status.state,
            ServiceState::Failed {
                error: "the machine is shutting down".into(),
                permanent: true
            }
        );
        assert_eq!(created(&runtime), ["console"]);
        assert!(engine.status_of(&name("ntp")).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn starts_in_dependency_order_and_stops_in_reverse() {
        let runtime = Arc::new(FakeRuntime::default());
        let engine = engine(&runtime);
        let services = [
            service("console", &["syslog"]),
            service("syslog", &["udev"]),
            service("udev", &[]),
        ];
        let plan = plan(&services, |_| false);
        let statuses = engine.start_plan(&services, &plan).await;
        let names: Vec<&str> = statuses.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["udev", "syslog", "console"]);
        assert!(
            statuses
                .iter()
                .all(|(_, s)| matches!(s.state, ServiceState::Running { .. }))
        );
        assert_eq!(created(&runtime), ["udev", "syslog", "console"]);
        engine.stop_all().await;
        assert_eq!(removed(&runtime), ["console", "syslog", "udev"]);
    }

    #[tokio::test(start_paused = true)]
    async fn services_nothing_waits_for_stop_together_and_before_what_they_wait_for() {
        // Each ignores SIGTERM, so each stop takes the whole grace period.
        let runtime = Arc::new(FakeRuntime::default());
        runtime.ignore_sigterm();
        let engine = engine(&runtime);
        let mut early = service("early", &[]);
        early.before = vec![name("acpid")];
        let services = [
            service("ntp", &["syslog"]),
            service("syslog", &[]),
            service("console", &[]),
            service("acpid", &[]),
            early,
        ];
        let plan = plan(&services, |_| false);
        engine.start_plan(&services, &plan).await;
        let begun = tokio::time::Instant::now();
        engine.stop_all().await;
        // Two waves: ntp, console and acpid; then syslog and early.
        let took = begun.elapsed();
        assert!(
            took >= Duration::from_secs(20) && took < Duration::from_secs(21),
            "{took:?}"
        );
        let removed = removed(&runtime);
        let at = |n: &str| removed.iter().position(|r| r == n).unwrap();
        assert_eq!(removed.len(), 5);
        assert!(at("ntp") < at("syslog"), "{removed:?}");
        assert!(at("acpid") < at("early"), "{removed:?}");
        assert!(
            at("console") < at("syslog") && at("console") < at("early"),
            "{removed:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_observer_sees_each_start_step_in_order() {
        let runtime = Arc::new(FakeRuntime::default());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let observer: Observer = {
            let seen = Arc::clone(&seen);
            Arc::new(move |name: &ServiceName, milestone: Milestone| {
                seen.lock()
                    .unwrap()
                    .push(format!("{name} {}", milestone.word()));
            })
        };
        let engine = engine(&runtime).with_observer(observer);
        let services = [service("console", &["udev"]), service("udev", &[])];
        let plan = plan(&services, |_| false);
        engine.start_plan(&services, &plan).await;
        assert_eq!(
            *seen.lock().unwrap(),
            [
                "udev begun",
                "udev created",
                "udev started",
                "udev settled",
                "console begun",
                "console created",
                "console started",
                "console settled"
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_service_started_later_is_awaited_until_known() {
        let runtime = Arc::new(FakeRuntime::default());
        let engine = Arc::new(engine(&runtime));
        let waiter = {
            let engine = Arc::clone(&engine);
            tokio::spawn(async move { engine.status_when_known(&name("console")).await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiter.is_finished());
        engine.start(service("udev", &[])).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiter.is_finished(), "udev is not the console");
        engine.start(service("console", &[])).await;
        let status = waiter.await.unwrap();
        assert!(matches!(
            status.borrow().state,
            ServiceState::Running { .. }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn services_after_a_one_shot_job_wait_for_it_to_finish() {
        let runtime = Arc::new(FakeRuntime::default());
        let engine = engine(&runtime);
        let mut setup = service("setup", &[]);
        setup.detach = false;
        setup.restart = RestartPolicy::No;
        let services = [setup, service("app", &["setup"])];
        let plan = plan(&services, |_| false);
        let job = {
            let runtime = Arc::clone(&runtime);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                assert_eq!(created(&runtime), ["setup"], "app waits for setup");
                runtime.exit("setup", 0);
            })
        };
        let statuses = engine.start_plan(&services, &plan).await;
        job.await.unwrap();
        assert_eq!(statuses[0].1.state, ServiceState::Exited { code: 0 });
        assert!(matches!(statuses[1].1.state, ServiceState::Running { .. }));
        assert_eq!(created(&runtime), ["setup", "app"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_dependency_does_not_hold_up_the_rest() {
        let runtime = Arc::new(FakeRuntime::default());
        runtime.fail_next_start("exec format error");
        let engine = engine(&runtime);
        let services = [service("udev", &[]), service("console", &["udev"])];
        let plan = plan(&services, |_| false);
        let statuses = engine.start_plan(&services, &plan).await;
        assert!(matches!(statuses[0].1.state, ServiceState::Failed { .. }));
        assert!(matches!(statuses[1].1.state, ServiceState::Running { .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn stop_start_restart_and_remove_one_service() {
        let runtime = Arc::new(FakeRuntime::default());
        let engine = engine(&runtime);
        let ntp = service("ntp", &[]);
        assert!(matches!(
            engine.start(ntp.clone()).await.state,
            ServiceState::Running { pid: 1000 }
        ));
        // Starting it again with the same definition changes nothing.
        assert!(matches!(
            engine.start(ntp.clone()).await.state,
            ServiceState::Running { pid: 1000 }
        ));
        assert_eq!(runtime.started(), 1);

        let stopped = engine.stop(&name("ntp")).await.unwrap();
        assert_eq!(stopped.state, ServiceState::Stopped);
        let snapshot = &engine.snapshot()[&name("ntp")];
        assert!(!snapshot.supervised);
        assert_eq!(snapshot.status.state, ServiceState::Stopped);

        let again = engine.restart(&name("ntp"), None).await.unwrap();
        assert_eq!(again.state, ServiceState::Running { pid: 1001 });

        // A changed definition replaces the running container.
        let mut changed = ntp.clone();
        changed.env.push("DEBUG=1".into());
        assert!(matches!(
            engine.start(changed).await.state,
            ServiceState::Running { pid: 1002 }
        ));

        engine.remove(&name("ntp")).await.unwrap();
        assert!(engine.snapshot().is_empty());
        assert!(!runtime.has_container("ntp"));
        assert_eq!(
            engine.stop(&name("ntp")).await,
            Err(NotSupervised(name("ntp")))
        );
        assert_eq!(
            engine.restart(&name("ntp"), None).await,
            Err(NotSupervised(name("ntp")))
        );
    }
}
