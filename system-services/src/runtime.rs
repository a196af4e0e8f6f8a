//! What the engine needs of a container runtime, as a trait: the real one
//! is containerd over gRPC, the fake plays back scripted exits so restart,
//! backoff and re-attach are unit tested.

use std::future::Future;
use std::path::Path;

use oci_spec::runtime::Spec;
use tonic::Code;

use crate::root::{PreparedRoot, Root, RootfsMount};

/// A runtime call that failed. The gRPC code is kept: create-or-reattach
/// decides on `AlreadyExists` and `NotFound`, reconnects on `Unavailable`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation} {id}: {message} ({code:?})")]
pub struct RuntimeError {
    pub operation: &'static str,
    pub id: String,
    pub code: Code,
    pub message: String,
}

impl RuntimeError {
    pub fn new(operation: &'static str, id: &str, code: Code, message: impl Into<String>) -> Self {
        Self {
            operation,
            id: id.to_string(),
            code,
            message: message.into(),
        }
    }

    /// The runtime itself is gone (restarting): worth waiting for. Not
    /// `Unknown`: containerd uses it for real failures (a runtime error).
    pub fn is_unavailable(&self) -> bool {
        matches!(self.code, Code::Unavailable | Code::Cancelled)
    }

    /// Trying again cannot help: the request itself is wrong or cannot be
    /// served by this runtime.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self.code,
            Code::InvalidArgument | Code::Unimplemented | Code::PermissionDenied
        )
    }
}

/// The state of a container's task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    Created,
    Running,
    Paused,
    Stopped { exit_code: u32 },
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskState {
    pub pid: u32,
    pub status: TaskStatus,
}

/// The operations on one runtime namespace.
pub trait ContainerRuntime: Send + Sync + 'static {
    /// Makes `root` ready for the container `id`: nothing for a shipped
    /// directory; for a registry image, pulled if missing (its progress
    /// appended to `log`, the service's log) and unpacked into a snapshot
    /// of the container's own.
    fn prepare_root(
        &self,
        id: &str,
        root: &Root,
        log: &Path,
    ) -> impl Future<Output = Result<PreparedRoot, RuntimeError>> + Send;
    /// Frees what `prepare_root` made for `id` (its snapshot); the image
    /// stays.
    fn release_root(
        &self,
        id: &str,
        root: &Root,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Creates a container; `AlreadyExists` if the id is taken.
    fn create_container(
        &self,
        id: &str,
        spec: &Spec,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    fn delete_container(&self, id: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Creates and starts the container's task on `rootfs` (empty when the
    /// spec's root is a directory), its output appended to `log`; returns
    /// its pid.
    fn start_task(
        &self,
        id: &str,
        log: &Path,
        rootfs: &[RootfsMount],
    ) -> impl Future<Output = Result<u32, RuntimeError>> + Send;
    /// The task, or `None` when the container has none (or does not exist).
    fn task(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<TaskState>, RuntimeError>> + Send;
    /// Waits for the task to exit; returns its exit code.
    fn wait_task(&self, id: &str) -> impl Future<Output = Result<u32, RuntimeError>> + Send;
    /// Signals every process of the task's cgroup.
    fn kill_task(
        &self,
        id: &str,
        signal: u32,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Signals the task's first process only: for a task with its own PID
    /// namespace, the one that ends the rest when it exits. (Its cgroup may
    /// be empty: a nested engine moves itself into a leaf below it.)
    fn kill_init(
        &self,
        id: &str,
        signal: u32,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Removes a stopped task.
    fn delete_task(&self, id: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;
}
