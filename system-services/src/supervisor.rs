//! Keeps one service's container running: creates it, or re-attaches to a
//! task that survived a restart of containerd or of ros; restarts it by its
//! policy with backoff; stops it when asked.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::Code;

use crate::restart::Backoff;
use crate::runtime::{ContainerRuntime, RuntimeError, TaskStatus};
use crate::service::{Service, ServiceName};
use crate::spec::SpecError;

/// How often to look again while containerd itself is away.
const RECONNECT_DELAY: Duration = Duration::from_millis(200);
/// How long a stopping task gets between its stop signal and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
const SIGKILL: u32 = 9;

/// What a supervised service is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceState {
    Starting,
    Running {
        pid: u32,
    },
    /// Exited and not restarted (by its policy).
    Exited {
        code: u32,
    },
    /// Could not be started; retried with backoff unless `permanent`.
    Failed {
        error: String,
        /// Trying again cannot help (a bad definition): it stays down
        /// until a person starts it again.
        permanent: bool,
    },
    /// The container exists and is not started (`io.rancher.os.createonly`).
    Created,
    Stopped,
}

impl ServiceState {
    /// One word for tables: starting, running, exited, failed, created, stopped.
    pub fn word(&self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running { .. } => "running",
            Self::Exited { .. } => "exited",
            Self::Failed { .. } => "failed",
            Self::Created => "created",
            Self::Stopped => "stopped",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStatus {
    pub state: ServiceState,
    /// Starts after the first, whatever caused them.
    pub restarts: u32,
    /// Whether the current task was found running rather than started.
    pub reattached: bool,
    /// When it entered this state (wall clock): "running since".
    pub since: SystemTime,
}

/// A step of a service's start, for the boot timeline (`ros analyze`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Milestone {
    /// What it comes after has settled: its start begins.
    Begun,
    /// Its root is ready and its container exists.
    Created,
    /// Its task runs.
    Started,
    /// Dependants may start: it runs, or (a one-shot job) has finished,
    /// or it failed.
    Settled,
}

impl Milestone {
    /// One word, as the timeline records it.
    pub fn word(self) -> &'static str {
        match self {
            Self::Begun => "begun",
            Self::Created => "created",
            Self::Started => "started",
            Self::Settled => "settled",
        }
    }
}

/// Told each [`Milestone`] of each service; cheap and never blocking (it
/// runs on the supervisors' task).
pub type Observer = Arc<dyn Fn(&ServiceName, Milestone) + Send + Sync>;

/// A service under supervision.
#[derive(Debug)]
pub struct Supervised {
    status: watch::Receiver<ServiceStatus>,
    keep_running: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Supervised {
    pub fn status(&self) -> watch::Receiver<ServiceStatus> {
        self.status.clone()
    }

    /// Waits until the service is running (or has failed or exited):
    /// dependants start after it.
    pub async fn settled(&self) -> ServiceStatus {
        settled(self.status()).await
    }

    /// Waits until a one-shot service has run.
    pub async fn finished(&self) -> ServiceStatus {
        finished(self.status()).await
    }

    /// Stops the task (its stop signal, SIGTERM unless set, then SIGKILL
    /// after a grace period) and removes the container; returns when done.
    pub async fn stop(self) {
        let _ = self.keep_running.send(false);
        if let Err(err) = self.task.await {
            tracing::error!(%err, "service supervisor ended abnormally");
        }
    }
}

/// Waits until the service is no longer starting: running, or failed,
/// or exited.
pub async fn settled(status: watch::Receiver<ServiceStatus>) -> ServiceStatus {
    wait_until(status, |s| !matches!(s.state, ServiceState::Starting)).await
}

/// Waits until a one-shot service has run (exited, or failed, or was
/// created only): what services after a non-detached one wait for.
pub async fn finished(status: watch::Receiver<ServiceStatus>) -> ServiceStatus {
    wait_until(status, |s| {
        matches!(
            s.state,
            ServiceState::Exited { .. }
                | ServiceState::Failed { .. }
                | ServiceState::Created
                | ServiceState::Stopped
        )
    })
    .await
}

async fn wait_until(
    mut status: watch::Receiver<ServiceStatus>,
    f: impl Fn(&ServiceStatus) -> bool,
) -> ServiceStatus {
    let found = status.wait_for(|s| f(s)).await.map(|s| s.clone());
    // The supervisor is gone: its last word stands.
    found.unwrap_or_else(|_| status.borrow().clone())
}

/// Starts supervising `service`; its output goes to `log`.
pub fn supervise<R: ContainerRuntime>(
    runtime: Arc<R>,
    service: Service,
    log: PathBuf,
    backoff: Backoff,
) -> Supervised {
    supervise_observed(runtime, service, log, backoff, None)
}

/// [`supervise`], telling `observer` when the container is created and
/// its task started.
pub fn supervise_observed<R: ContainerRuntime>(
    runtime: Arc<R>,
    service: Service,
    log: PathBuf,
    backoff: Backoff,
    observer: Option<Observer>,
) -> Supervised {
    let initial = ServiceStatus {
        state: ServiceState::Starting,
        restarts: 0,
        reattached: false,
        since: SystemTime::now(),
    };
    let (status_tx, status) = watch::channel(initial);
    let (keep_running, keep_running_rx) = watch::channel(true);
    let job = Job {
        runtime,
        id: service.name.to_string(),
        service,
        log,
        backoff,
        status: status_tx,
        keep_running: keep_running_rx,
        starts: 0,
        failures: 0,
        observer,
    };
    Supervised {
        status,
        keep_running,
        task: tokio::spawn(job.run()),
    }
}

struct Job<R> {
    runtime: Arc<R>,
    id: String,
    service: Service,
    log: PathBuf,
    backoff: Backoff,
    status: watch::Sender<ServiceStatus>,
    keep_running: watch::Receiver<bool>,
    starts: u32,
    /// Non-zero exits in a row (for `on-failure:N`).
    failures: u32,
    observer: Option<Observer>,
}

/// What one look at the runtime found.
enum Found {
    Running { pid: u32 },
    Exited { code: u32 },
    Absent,
}

/// Why a round failed.
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// Preparing the root (pulling a registry image) failed. Never taken
    /// for containerd being away: a registry that does not answer is
    /// retried with backoff and shown as failed meanwhile.
    #[error(transparent)]
    Root(RuntimeError),
    #[error(transparent)]
    Spec(#[from] SpecError),
}

impl<R: ContainerRuntime> Job<R> {
    async fn run(mut self) {
        while self.wanted() {
            match self.step().await {
                Ok(()) => {}
                Err(StepError::Runtime(err)) if err.is_unavailable() => {
                    // containerd is restarting; its shims keep tasks alive,
                    // so look again rather than start anything new.
                    tracing::warn!(service = %self.id, %err, "runtime unavailable; will re-attach");
                    self.pause(RECONNECT_DELAY).await;
                }
                Err(err) => {
                    let permanent = match &err {
                        StepError::Runtime(err) | StepError::Root(err) => err.is_permanent(),
                        StepError::Spec(_) => true,
                    };
                    tracing::error!(service = %self.id, %err, permanent, "service failed");
                    self.set_state(
                        ServiceState::Failed {
                            error: err.to_string(),
                            permanent,
                        },
                        false,
                    );
                    if permanent {
                        self.until_stopped().await;
                    } else {
                        let delay = self.backoff.delay_after(Duration::ZERO);
                        self.pause(delay).await;
                    }
                }
            }
        }
        self.remove().await;
        self.set_state(ServiceState::Stopped, false);
    }

    /// Waits until a person stops the service.
    async fn until_stopped(&self) {
        let mut keep_running = self.keep_running.clone();
        let _ = keep_running.wait_for(|wanted| !wanted).await;
    }

    fn wanted(&self) -> bool {
        *self.keep_running.borrow()
    }

    /// One round: find or start the task, wait for it to exit, handle the exit.
    async fn step(&mut self) -> Result<(), StepError> {
        let (pid, reattached) = match self.look().await? {
            Found::Running { pid } => (pid, true),
            Found::Exited { code } => return Ok(self.exited(code, Duration::ZERO).await?),
            Found::Absent if self.service.create_only => {
                self.create().await?;
                self.set_state(ServiceState::Created, false);
                self.until_stopped().await;
                return Ok(());
            }
            Found::Absent => (self.start().await?, false),
        };
        self.set_state(ServiceState::Running { pid }, reattached);
        if reattached {
            tracing::info!(service = %self.id, pid, "re-attached to running task");
        }
        let since = Instant::now();
        let mut keep_running = self.keep_running.clone();
        let code = tokio::select! {
            code = self.runtime.wait_task(&self.id) => code?,
            _ = keep_running.wait_for(|wanted| !wanted) => return Ok(()),
        };
        Ok(self.exited(code, since.elapsed()).await?)
    }

    async fn look(&self) -> Result<Found, RuntimeError> {
        Ok(match self.runtime.task(&self.id).await? {
            Some(task) => match task.status {
                TaskStatus::Running => Found::Running { pid: task.pid },
                TaskStatus::Stopped { exit_code } => Found::Exited { code: exit_code },
                // Created but never started, paused, or unknown: a leftover
                // of an interrupted start; clear it and start afresh.
                TaskStatus::Created | TaskStatus::Paused | TaskStatus::Unknown => {
                    self.clear_task().await?;
                    Found::Absent
                }
            },
            None => Found::Absent,
        })
    }

    /// Prepares the root, builds the spec and creates the container
    /// (replacing a stale one: the spec may have changed); returns the
    /// mounts its task needs.
    async fn create(&mut self) -> Result<Vec<crate::root::RootfsMount>, StepError> {
        self.set_state(ServiceState::Starting, false);
        let prepared = self
            .runtime
            .prepare_root(&self.id, &self.service.root, &self.log)
            .await
            .map_err(StepError::Root)?;
        let spec = crate::spec::build(&self.service, &prepared)?;
        match self.runtime.create_container(&self.id, &spec).await {
            Err(err) if err.code == Code::AlreadyExists => {
                self.runtime.delete_container(&self.id).await?;
                self.runtime.create_container(&self.id, &spec).await?;
            }
            other => other?,
        }
        self.observe(Milestone::Created);
        Ok(prepared.mounts)
    }

    /// Creates the container and starts its task.
    async fn start(&mut self) -> Result<u32, StepError> {
        let rootfs = self.create().await?;
        let pid = self
            .runtime
            .start_task(&self.id, &self.log, &rootfs)
            .await?;
        self.starts += 1;
        self.observe(Milestone::Started);
        tracing::info!(service = %self.id, pid, "started");
        Ok(pid)
    }

    /// The task exited after running for `ran_for`: clear it, and run it
    /// again after a backoff if the policy says so.
    async fn exited(&mut self, code: u32, ran_for: Duration) -> Result<(), RuntimeError> {
        if code == 0 {
            tracing::info!(service = %self.id, "exited");
        } else {
            tracing::warn!(service = %self.id, code, "exited");
        }
        self.runtime
            .delete_task(&self.id)
            .await
            .or_else(ignore_not_found)?;
        let failures = self.failures;
        self.failures = if code == 0 { 0 } else { failures + 1 };
        if !self.service.restart.restarts_after(code, failures) {
            self.set_state(ServiceState::Exited { code }, false);
            // Stays down until stopped for good.
            self.until_stopped().await;
            return Ok(());
        }
        let delay = self.backoff.delay_after(ran_for);
        self.pause(delay).await;
        Ok(())
    }

    async fn clear_task(&self) -> Result<(), RuntimeError> {
        self.runtime
            .kill_task(&self.id, SIGKILL)
            .await
            .or_else(ignore_not_found)?;
        self.runtime
            .delete_task(&self.id)
            .await
            .or_else(ignore_not_found)
    }

    /// Stops the task, if any: its stop signal, a grace period, SIGKILL;
    /// then removes task and container.
    async fn remove(&self) {
        let id = &self.id;
        if let Ok(Some(task)) = self.runtime.task(id).await
            && task.status == TaskStatus::Running
        {
            // With its own PID namespace, its first process ends the rest
            // and may have moved out of the top cgroup (a nested engine);
            // in the host's, every process of the cgroup is told.
            let signal = self.service.stop_signal.number();
            let _ = if self.service.host.pid {
                self.runtime.kill_task(id, signal).await
            } else {
                self.runtime.kill_init(id, signal).await
            };
            let exited = tokio::time::timeout(STOP_GRACE, self.runtime.wait_task(id)).await;
            if exited.is_err() {
                tracing::warn!(service = %id, "did not stop in time; killing");
                let _ = self.runtime.kill_task(id, SIGKILL).await;
                let _ = self.runtime.wait_task(id).await;
            }
        }
        if let Err(err) = self.runtime.delete_task(id).await.or_else(ignore_not_found) {
            tracing::warn!(service = %id, %err, "removing task");
        }
        if let Err(err) = self
            .runtime
            .delete_container(id)
            .await
            .or_else(ignore_not_found)
        {
            tracing::warn!(service = %id, %err, "removing container");
        }
        if let Err(err) = self.runtime.release_root(id, &self.service.root).await {
            tracing::warn!(service = %id, %err, "releasing root");
        }
    }

    /// Sleeps, unless a stop comes first.
    async fn pause(&self, delay: Duration) {
        let mut keep_running = self.keep_running.clone();
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = keep_running.wait_for(|wanted| !wanted) => {}
        }
    }

    fn observe(&self, milestone: Milestone) {
        if let Some(observer) = &self.observer {
            observer(&self.service.name, milestone);
        }
    }

    fn set_state(&self, state: ServiceState, reattached: bool) {
        let restarts = self.starts.saturating_sub(1);
        let since = {
            let now = self.status.borrow();
            if now.state == state {
                now.since
            } else {
                SystemTime::now()
            }
        };
        self.status.send_replace(ServiceStatus {
            state,
            restarts,
            reattached,
            since,
        });
    }
}

fn ignore_not_found(err: RuntimeError) -> Result<(), RuntimeError> {
    if err.code == Code::NotFound {
        Ok(())
    } else {
        Err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIGTERM: u32 = 15;
    use crate::fake::{FakeCall, FakeRuntime};
    use crate::root::{ImageDefaults, Root};
    use crate::service::{RestartPolicy, ServiceName};

    fn service(policy: RestartPolicy) -> Service {
        let mut s = Service::new(
            ServiceName::new("svc").unwrap(),
            "/root",
            vec!["run".into()],
        );
        s.restart = policy;
        s
    }

    fn start(runtime: &Arc<FakeRuntime>, policy: RestartPolicy) -> Supervised {
        start_service(runtime, service(policy))
    }

    fn start_service(runtime: &Arc<FakeRuntime>, service: Service) -> Supervised {
        supervise(
            Arc::clone(runtime),
            service,
            "/var/log/ros/svc.log".into(),
            Backoff::default(),
        )
    }

    /// Waits until the supervised service is running.
    async fn until_running(supervised: &Supervised) {
        let mut status = supervised.status();
        until(&mut status, |s| {
            matches!(s.state, ServiceState::Running { .. })
        })
        .await;
    }

    async fn until(
        status: &mut watch::Receiver<ServiceStatus>,
        f: impl Fn(&ServiceStatus) -> bool,
    ) -> ServiceStatus {
        tokio::time::timeout(Duration::from_secs(120), status.wait_for(|s| f(s)))
            .await
            .unwrap()
            .unwrap()
            .clone()
    }

    #[tokio::test(start_paused = true)]
    async fn starts_a_fresh_service_and_reports_its_pid() {
        let runtime = Arc::new(FakeRuntime::default());
        let supervised = start(&runtime, RestartPolicy::Always);
        let status = supervised.settled().await;
        assert_eq!(status.state, ServiceState::Running { pid: 1000 });
        assert!(!status.reattached);
        assert_eq!(
            runtime.calls()[..4],
            [
                FakeCall::Task("svc".into()),
                FakeCall::PrepareRoot("svc".into()),
                FakeCall::CreateContainer("svc".into()),
                FakeCall::StartTask("svc".into())
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_crash_is_restarted_within_a_second() {
        let runtime = Arc::new(FakeRuntime::default());
        let supervised = start(&runtime, RestartPolicy::Always);
        let mut status = supervised.status();
        until(&mut status, |s| {
            s.state == ServiceState::Running { pid: 1000 }
        })
        .await;
        let crashed_at = Instant::now();
        runtime.exit("svc", 1);
        let after = until(&mut status, |s| {
            s.state == ServiceState::Running { pid: 1001 }
        })
        .await;
        assert_eq!(after.restarts, 1);
        assert!(
            crashed_at.elapsed() < Duration::from_secs(1),
            "{:?}",
            crashed_at.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_grows_while_it_keeps_crashing() {
        let runtime = Arc::new(FakeRuntime::default());
        let supervised = start(&runtime, RestartPolicy::OnFailure(None));
        let mut status = supervised.status();
        let mut gaps = Vec::new();
        for pid in 1000..1004 {
            until(&mut status, |s| s.state == ServiceState::Running { pid }).await;
            let at = Instant::now();
            runtime.exit("svc", 2);
            until(&mut status, |s| {
                s.state == ServiceState::Running { pid: pid + 1 }
            })
            .await;
            gaps.push(at.elapsed());
        }
        assert!(gaps.windows(2).all(|w| w[1] > w[0]), "{gaps:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_clean_exit_is_final_under_on_failure() {
        let runtime = Arc::new(FakeRuntime::default());
        let supervised = start(&runtime, RestartPolicy::OnFailure(None));
        let mut status = supervised.status();
        until(&mut status, |s| {
            matches!(s.state, ServiceState::Running { .. })
        })
        .await;
        runtime.exit("svc", 0);
        let done = until(&mut status, |s| s.state == ServiceState::Exited { code: 0 }).await;
        assert_eq!(done.restarts, 0);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(runtime.started(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_survived_is_reattached_not_duplicated() {
        let runtime = Arc::new(FakeRuntime::default());
        runtime.add_running("svc", 4242);
        let supervised = start(&runtime, RestartPolicy::Always);
        let status = supervised.settled().await;
        assert_eq!(status.state, ServiceState::Running { pid: 4242 });
        assert!(status.reattached);
        assert_eq!(runtime.started(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn containerd_going_away_reattaches_to_the_same_task() {
        let runtime = Arc::new(FakeRuntime::default());
        let supervised = start(&runtime, RestartPolicy::Always);
        let mut status = supervised.status();
        until(&mut status, |s| {
            s.state == ServiceState::Running { pid: 1000 }
        })
        .await;
        runtime.go_away(Duration::from_secs(2));
        until(&mut status, |s| s.reattached).await;
        assert_eq!(status.borrow().state, ServiceState::Running { pid: 1000 });
        assert_eq!(runtime.started(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_exit_while_containerd_was_away_is_restarted() {
        let runtime = Arc::new(FakeRuntime::default());
        let supervised = start(&runtime, RestartPolicy::Always);
        let mut status = supervised.status();
        until(&mut status, |s| {
            s.state == ServiceState::Running { pid: 1000 }
        })
        .await;
        runtime.go_away(Duration::from_secs(2));
        runtime.exit("svc", 137);
        until(&mut status, |s| {
            s.state == ServiceState::Running { pid: 1001 }
        })
        .await;
        assert_eq!(runtime.started(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_start_is_retried_and_reported() {
        let runtime = Arc::new(FakeRuntime::default());
        runtime.fail_next_start("no such binary");
        let supervised = start(&runtime, RestartPolicy::No);
        let mut status = supervised.status();
        let failed = until(&mut status, |s| {
            matches!(s.state, ServiceState::Failed { .. })
        })
        .await;
        let ServiceState::Failed { error, permanent } = failed.state else {
            unreachable!()
        };
        assert!(error.contains("no such binary"), "{error}");
        assert!(!permanent);
        until(&mut status, |s| {
            s.state == ServiceState::Running { pid: 1000 }
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_container_is_replaced() {
        let runtime = Arc::new(FakeRuntime::default());
        runtime.add_container("svc");
        let supervised = start(&runtime, RestartPolicy::Always);
        assert_eq!(
            supervised.settled().await.state,
            ServiceState::Running { pid: 1000 }
        );
        let calls = runtime.calls();
        let delete = calls
            .iter()
            .position(|c| *c == FakeCall::DeleteContainer("svc".into()))
            .unwrap();
        assert_eq!(calls[delete + 1], FakeCall::CreateContainer("svc".into()));
    }

    #[tokio::test(start_paused = true)]
    async fn stop_terminates_then_removes() {
        let runtime = Arc::new(FakeRuntime::default());
        let supervised = start(&runtime, RestartPolicy::Always);
        let mut status = supervised.status();
        until(&mut status, |s| {
            matches!(s.state, ServiceState::Running { .. })
        })
        .await;
        supervised.stop().await;
        assert_eq!(status.borrow().state, ServiceState::Stopped);
        let calls = runtime.calls();
        let tail: Vec<_> = calls.iter().rev().take(5).rev().cloned().collect();
        assert_eq!(
            tail,
            vec![
                FakeCall::KillInit("svc".into(), SIGTERM),
                FakeCall::Wait("svc".into()),
                FakeCall::DeleteTask("svc".into()),
                FakeCall::DeleteContainer("svc".into()),
                FakeCall::ReleaseRoot("svc".into())
            ]
        );
        assert!(!runtime.has_container("svc"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_service_in_the_hosts_pid_namespace_is_stopped_process_by_process() {
        let runtime = Arc::new(FakeRuntime::default());
        let mut service = service(RestartPolicy::Always);
        service.host.pid = true;
        let supervised = start_service(&runtime, service);
        until_running(&supervised).await;
        supervised.stop().await;
        let calls = runtime.calls();
        assert!(calls.contains(&FakeCall::Kill("svc".into(), SIGTERM)));
        assert!(!calls.contains(&FakeCall::KillInit("svc".into(), SIGTERM)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_signal_is_sent_instead_of_sigterm_and_ends_it_without_the_grace() {
        // As acpid: the first process of its PID namespace, it catches no
        // signal, so SIGTERM would only start the grace period.
        let runtime = Arc::new(FakeRuntime::default());
        runtime.ignore_sigterm();
        let mut service = service(RestartPolicy::Always);
        service.stop_signal = "SIGKILL".parse().unwrap();
        let supervised = start_service(&runtime, service);
        until_running(&supervised).await;
        let at = Instant::now();
        supervised.stop().await;
        assert!(at.elapsed() < STOP_GRACE);
        let calls = runtime.calls();
        assert!(calls.contains(&FakeCall::KillInit("svc".into(), SIGKILL)));
        assert!(
            !calls
                .iter()
                .any(|c| matches!(c, FakeCall::KillInit(_, SIGTERM)))
        );
        assert!(!runtime.has_container("svc"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_ignoring_sigterm_is_killed_after_the_grace_period() {
        let runtime = Arc::new(FakeRuntime::default());
        runtime.ignore_sigterm();
        let supervised = start(&runtime, RestartPolicy::Always);
        until_running(&supervised).await;
        let at = Instant::now();
        supervised.stop().await;
        assert!(at.elapsed() >= STOP_GRACE);
        assert!(
            runtime
                .calls()
                .contains(&FakeCall::Kill("svc".into(), SIGKILL))
        );
        assert!(!runtime.has_container("svc"));
    }

    #[tokio::test(start_paused = true)]
    async fn on_failure_with_a_limit_gives_up_after_that_many_restarts() {
        let runtime = Arc::new(FakeRuntime::default());
        let supervised = start(&runtime, RestartPolicy::OnFailure(Some(2)));
        let mut status = supervised.status();
        for pid in 1000..1003 {
            until(&mut status, |s| s.state == ServiceState::Running { pid }).await;
            runtime.exit("svc", 3);
        }
        let done = until(&mut status, |s| s.state == ServiceState::Exited { code: 3 }).await;
        assert_eq!(done.restarts, 2);
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_eq!(runtime.started(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_definition_that_cannot_become_a_spec_fails_for_good() {
        let runtime = Arc::new(FakeRuntime::default());
        let mut s = service(RestartPolicy::Always);
        s.command = None;
        let supervised = start_service(&runtime, s);
        let status = supervised.settled().await;
        let ServiceState::Failed { error, permanent } = status.state else {
            panic!("{status:?}")
        };
        assert!(error.contains("nothing to run"), "{error}");
        assert!(permanent);
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert!(
            !runtime
                .calls()
                .contains(&FakeCall::CreateContainer("svc".into()))
        );
        supervised.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_registry_image_is_prepared_and_its_defaults_used() {
        let runtime = Arc::new(FakeRuntime::default());
        runtime.add_image(
            "registry.local/app:1",
            ImageDefaults {
                entrypoint: vec!["/app".into()],
                cmd: vec!["--serve".into()],
                ..ImageDefaults::default()
            },
        );
        let mut s = service(RestartPolicy::Always);
        s.root = Root::Image("registry.local/app:1".into());
        s.command = None;
        let supervised = start_service(&runtime, s);
        assert!(matches!(
            supervised.settled().await.state,
            ServiceState::Running { .. }
        ));
        let spec = runtime.spec("svc").unwrap();
        let args = spec.process().as_ref().unwrap().args().clone().unwrap();
        assert_eq!(args, ["/app", "--serve"]);
        supervised.stop().await;
        assert!(
            runtime
                .calls()
                .contains(&FakeCall::ReleaseRoot("svc".into()))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_image_that_cannot_be_had_is_retried() {
        let runtime = Arc::new(FakeRuntime::default());
        let mut s = service(RestartPolicy::Always);
        s.root = Root::Image("registry.local/missing:1".into());
        let supervised = start_service(&runtime, s);
        let status = supervised.settled().await;
        assert!(
            matches!(&status.state, ServiceState::Failed { error, permanent: false } if error.contains("registry.local/missing:1")),
            "{status:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_registry_that_does_not_answer_is_a_failure_retried_with_backoff() {
        let runtime = Arc::new(FakeRuntime::default());
        runtime.fail_images_unavailable();
        let mut s = service(RestartPolicy::Always);
        s.root = Root::Image("registry.local/app:1".into());
        let supervised = start_service(&runtime, s);
        let status = supervised.settled().await;
        assert!(
            matches!(&status.state, ServiceState::Failed { permanent: false, error } if error.contains("registry.local/app:1")),
            "{status:?}"
        );
        // Backoff, not the fast re-attach polling: few attempts in 10 s.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let attempts = runtime
            .calls()
            .iter()
            .filter(|c| **c == FakeCall::PrepareRoot("svc".into()))
            .count();
        assert!((2..=8).contains(&attempts), "{attempts}");
    }

    #[tokio::test(start_paused = true)]
    async fn create_only_creates_and_does_not_start() {
        let runtime = Arc::new(FakeRuntime::default());
        let mut s = service(RestartPolicy::Always);
        s.create_only = true;
        let supervised = start_service(&runtime, s);
        assert_eq!(supervised.settled().await.state, ServiceState::Created);
        assert_eq!(supervised.finished().await.state, ServiceState::Created);
        assert!(runtime.has_container("svc"));
        assert_eq!(runtime.started(), 0);
        supervised.stop().await;
        assert!(!runtime.has_container("svc"));
    }
}
