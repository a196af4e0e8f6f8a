//! A scripted container runtime for tests: tasks run until the test makes
//! them exit, the runtime can go away for a while (as containerd does when
//! it restarts) while tasks live on, and every call is recorded.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use oci_spec::runtime::Spec;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tonic::Code;

use crate::root::{ImageDefaults, PreparedRoot, Root, RootfsMount};
use crate::runtime::{ContainerRuntime, RuntimeError, TaskState, TaskStatus};

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeCall {
    PrepareRoot(String),
    ReleaseRoot(String),
    CreateContainer(String),
    DeleteContainer(String),
    StartTask(String),
    Task(String),
    Wait(String),
    Kill(String, u32),
    /// The task's first process only.
    KillInit(String, u32),
    DeleteTask(String),
}

#[derive(Debug)]
struct FakeTask {
    pid: u32,
    exit: watch::Sender<Option<u32>>,
}

#[derive(Debug, Default)]
struct State {
    containers: HashMap<String, Option<FakeTask>>,
    calls: Vec<FakeCall>,
    next_pid: u32,
    started: usize,
    away_until: Option<Instant>,
    fail_next_start: Option<String>,
    ignore_sigterm: bool,
    /// Registry images that "pull", by reference.
    images: HashMap<String, ImageDefaults>,
    /// Every pull fails as a registry that does not answer.
    images_unavailable: bool,
    /// The spec each container was created with.
    specs: HashMap<String, Spec>,
}

#[derive(Debug, Default)]
pub struct FakeRuntime {
    state: Mutex<State>,
    /// Wakes waiters when the runtime goes away.
    gone: Notify,
}

impl FakeRuntime {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn calls(&self) -> Vec<FakeCall> {
        self.lock().calls.clone()
    }

    /// How many tasks were started through `start_task`.
    pub fn started(&self) -> usize {
        self.lock().started
    }

    pub fn has_container(&self, id: &str) -> bool {
        self.lock().containers.contains_key(id)
    }

    /// A container left over from before, without a task.
    pub fn add_container(&self, id: &str) {
        self.lock().containers.insert(id.to_string(), None);
    }

    /// A container whose task is already running (it survived a restart).
    pub fn add_running(&self, id: &str, pid: u32) {
        let (exit, _) = watch::channel(None);
        self.lock()
            .containers
            .insert(id.to_string(), Some(FakeTask { pid, exit }));
    }

    /// The task of `id` exits with `code`.
    pub fn exit(&self, id: &str, code: u32) {
        if let Some(Some(task)) = self.lock().containers.get(id) {
            task.exit.send_replace(Some(code));
        }
    }

    /// Every call fails as unavailable for `duration`; tasks live on.
    pub fn go_away(&self, duration: Duration) {
        self.lock().away_until = Some(Instant::now() + duration);
        self.gone.notify_waiters();
    }

    /// Pulls fail with `Unavailable`, as a registry that does not answer.
    pub fn fail_images_unavailable(&self) {
        self.lock().images_unavailable = true;
    }

    /// A registry image that prepares with these defaults.
    pub fn add_image(&self, reference: &str, defaults: ImageDefaults) {
        self.lock().images.insert(reference.to_string(), defaults);
    }

    /// The spec of the container `id` as last created.
    pub fn spec(&self, id: &str) -> Option<Spec> {
        self.lock().specs.get(id).cloned()
    }

    pub fn fail_next_start(&self, message: &str) {
        self.lock().fail_next_start = Some(message.to_string());
    }

    /// Tasks survive SIGTERM and need SIGKILL.
    pub fn ignore_sigterm(&self) {
        self.lock().ignore_sigterm = true;
    }

    /// Records the call; fails it when the runtime is away.
    fn enter(&self, call: FakeCall, id: &str) -> Result<MutexGuard<'_, State>, RuntimeError> {
        let mut state = self.lock();
        state.calls.push(call);
        if state.away_until.is_some_and(|until| Instant::now() < until) {
            return Err(RuntimeError::new(
                "fake",
                id,
                Code::Unavailable,
                "connection refused",
            ));
        }
        Ok(state)
    }
}

fn not_found(operation: &'static str, id: &str) -> RuntimeError {
    RuntimeError::new(operation, id, Code::NotFound, "not found")
}

impl FakeRuntime {
    /// A signal to a task: records `call`; the task exits with 128 +
    /// `signal` unless it ignores SIGTERM.
    fn signal(&self, call: FakeCall, id: &str, signal: u32) -> Result<(), RuntimeError> {
        let state = self.enter(call, id)?;
        let Some(Some(task)) = state.containers.get(id) else {
            return Err(not_found("kill task", id));
        };
        if !(signal == 15 && state.ignore_sigterm) && task.exit.borrow().is_none() {
            task.exit.send_replace(Some(128 + signal));
        }
        Ok(())
    }
}

impl ContainerRuntime for FakeRuntime {
    async fn prepare_root(
        &self,
        id: &str,
        root: &Root,
        _log: &Path,
    ) -> Result<PreparedRoot, RuntimeError> {
        let state = self.enter(FakeCall::PrepareRoot(id.into()), id)?;
        match root {
            Root::Dir(_) => Ok(PreparedRoot::dir()),
            Root::Image(reference) if state.images_unavailable => Err(RuntimeError::new(
                "pull image",
                reference,
                Code::Unavailable,
                "registry does not answer",
            )),
            Root::Image(reference) => match state.images.get(reference) {
                Some(defaults) => Ok(PreparedRoot {
                    mounts: vec![RootfsMount {
                        typ: "overlay".into(),
                        source: "overlay".into(),
                        options: vec![format!("lowerdir=/snapshots/{id}")],
                    }],
                    image: Some(defaults.clone()),
                }),
                None => Err(not_found("pull image", reference)),
            },
        }
    }

    async fn release_root(&self, id: &str, _root: &Root) -> Result<(), RuntimeError> {
        drop(self.enter(FakeCall::ReleaseRoot(id.into()), id)?);
        Ok(())
    }

    async fn create_container(&self, id: &str, spec: &Spec) -> Result<(), RuntimeError> {
        let mut state = self.enter(FakeCall::CreateContainer(id.into()), id)?;
        if state.containers.contains_key(id) {
            return Err(RuntimeError::new(
                "create container",
                id,
                Code::AlreadyExists,
                "already exists",
            ));
        }
        state.containers.insert(id.to_string(), None);
        state.specs.insert(id.to_string(), spec.clone());
        Ok(())
    }

    async fn delete_container(&self, id: &str) -> Result<(), RuntimeError> {
        let mut state = self.enter(FakeCall::DeleteContainer(id.into()), id)?;
        match state.containers.get(id) {
            None => Err(not_found("delete container", id)),
            Some(Some(_)) => Err(RuntimeError::new(
                "delete container",
                id,
                Code::FailedPrecondition,
                "has a task",
            )),
            Some(None) => {
                state.containers.remove(id);
                Ok(())
            }
        }
    }

    async fn start_task(
        &self,
        id: &str,
        _log: &Path,
        _rootfs: &[RootfsMount],
    ) -> Result<u32, RuntimeError> {
        let mut state = self.enter(FakeCall::StartTask(id.into()), id)?;
        if let Some(message) = state.fail_next_start.take() {
            return Err(RuntimeError::new(
                "start task",
                id,
                Code::FailedPrecondition,
                message,
            ));
        }
        let pid = 1000 + state.next_pid;
        match state.containers.get_mut(id) {
            None => return Err(not_found("start task", id)),
            Some(Some(_)) => {
                return Err(RuntimeError::new(
                    "start task",
                    id,
                    Code::AlreadyExists,
                    "task exists",
                ));
            }
            Some(slot) => {
                *slot = Some(FakeTask {
                    pid,
                    exit: watch::channel(None).0,
                })
            }
        }
        state.next_pid += 1;
        state.started += 1;
        Ok(pid)
    }

    async fn task(&self, id: &str) -> Result<Option<TaskState>, RuntimeError> {
        let state = self.enter(FakeCall::Task(id.into()), id)?;
        Ok(state
            .containers
            .get(id)
            .and_then(Option::as_ref)
            .map(|task| TaskState {
                pid: task.pid,
                status: match *task.exit.borrow() {
                    Some(exit_code) => TaskStatus::Stopped { exit_code },
                    None => TaskStatus::Running,
                },
            }))
    }

    async fn wait_task(&self, id: &str) -> Result<u32, RuntimeError> {
        // Created before the lookup, so a go-away in between is not missed.
        let gone = self.gone.notified();
        let mut exit = {
            let state = self.enter(FakeCall::Wait(id.into()), id)?;
            match state.containers.get(id) {
                Some(Some(task)) => task.exit.subscribe(),
                _ => return Err(not_found("wait task", id)),
            }
        };
        tokio::select! {
            code = exit.wait_for(Option::is_some) => match code {
                Ok(code) => Ok(code.unwrap_or_default()),
                Err(_) => Err(not_found("wait task", id)),
            },
            () = gone => Err(RuntimeError::new("wait task", id, Code::Unavailable, "connection reset")),
        }
    }

    async fn kill_task(&self, id: &str, signal: u32) -> Result<(), RuntimeError> {
        self.signal(FakeCall::Kill(id.into(), signal), id, signal)
    }

    async fn kill_init(&self, id: &str, signal: u32) -> Result<(), RuntimeError> {
        self.signal(FakeCall::KillInit(id.into(), signal), id, signal)
    }

    async fn delete_task(&self, id: &str) -> Result<(), RuntimeError> {
        let mut state = self.enter(FakeCall::DeleteTask(id.into()), id)?;
        match state.containers.get_mut(id) {
            Some(slot @ Some(_)) => {
                if slot
                    .as_ref()
                    .is_some_and(|task| task.exit.borrow().is_none())
                {
                    return Err(RuntimeError::new(
                        "delete task",
                        id,
                        Code::FailedPrecondition,
                        "task is running",
                    ));
                }
                *slot = None;
                Ok(())
            }
            _ => Err(not_found("delete task", id)),
        }
    }
}
