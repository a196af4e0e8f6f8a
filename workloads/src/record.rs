//! What containerd keeps of a workload, over gRPC: the container record
//! (image, spec, snapshot key, and labels for `ps` and the keeper), its
//! task, and its snapshot's mounts. Errors keep the gRPC code, as
//! `system_services::runtime::RuntimeError`.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::snapshots::MountsRequest;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    Container, GetContainerRequest, ListContainersRequest, ListTasksRequest, UpdateContainerRequest,
};
use oci_spec::runtime::Spec;
use prost_types::FieldMask;
use system_services::containerd::{
    Containerd, NamespaceInterceptor, error, rootfs_mount, task_status,
};
use system_services::root::RootfsMount;
use system_services::runtime::{ContainerRuntime, RuntimeError, TaskStatus};
use system_services::service::RestartPolicy;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::flags::{NetMode, PortMapping, parse_net, parse_restart, ports_from_label};

/// The labels on a workload's container record.
pub mod labels {
    /// The image as the user named it.
    pub const IMAGE: &str = "io.ros.image";
    /// `no`, `always`, `on-failure[:N]`, `unless-stopped`.
    pub const RESTART: &str = "io.ros.restart";
    /// `HOST:CONTAINER/PROTO`, comma separated.
    pub const PORTS: &str = "io.ros.ports";
    /// `bridge`, `host` or `none`.
    pub const NET: &str = "io.ros.net";
    /// Unix seconds (with fraction) of `ros run`.
    pub const CREATED: &str = "io.ros.created";
    /// Unix seconds of the last start of its task.
    pub const STARTED: &str = "io.ros.started";
    /// Set by `ros stop` before it signals: the keeper leaves it down.
    pub const STOPPED: &str = "io.ros.stopped";
    /// The last task's exit code, once that task is deleted.
    pub const EXIT_CODE: &str = "io.ros.exit-code";
    /// Unix seconds of that exit.
    pub const FINISHED: &str = "io.ros.finished";
    /// `ros run --rm`: removed once its task exits.
    pub const AUTO_REMOVE: &str = "io.ros.rm";
}

/// The snapshotter of image root file systems (as system-services uses).
pub const SNAPSHOTTER: &str = "overlayfs";

pub(crate) type Namespaced = InterceptedService<Channel, NamespaceInterceptor>;

/// Unix seconds, as the time labels hold them.
pub fn unix_seconds(time: SystemTime) -> String {
    let d = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:03}", d.as_secs(), d.subsec_millis())
}

pub fn parse_unix_seconds(text: &str) -> Option<SystemTime> {
    let (seconds, fraction) = text.split_once('.').unwrap_or((text, ""));
    let seconds: u64 = seconds.parse().ok()?;
    // Milliseconds, however many digits were written.
    let digits: String = fraction.chars().chain("000".chars()).take(3).collect();
    let millis: u64 = digits.parse().ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(seconds) + Duration::from_millis(millis))
}

fn from_timestamp(ts: &prost_types::Timestamp) -> Option<SystemTime> {
    let secs = u64::try_from(ts.seconds).ok()?;
    let nanos = u32::try_from(ts.nanos).ok()?;
    // containerd sends the zero time for "not exited".
    (secs > 0).then(|| UNIX_EPOCH + Duration::new(secs, nanos))
}

/// A workload's container record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub name: String,
    /// The image reference, normalised (containerd's image name).
    pub image: String,
    pub labels: HashMap<String, String>,
    /// The OCI spec, as JSON.
    pub spec: serde_json::Value,
}

impl Record {
    fn from_container(container: Container) -> Self {
        let spec = container
            .spec
            .and_then(|any| serde_json::from_slice(&any.value).ok())
            .unwrap_or(serde_json::Value::Null);
        Self {
            name: container.id,
            image: container.image,
            labels: container.labels,
            spec,
        }
    }

    fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    /// The image as the user typed it.
    pub fn image_name(&self) -> &str {
        self.label(labels::IMAGE).unwrap_or(&self.image)
    }

    pub fn restart(&self) -> RestartPolicy {
        self.label(labels::RESTART)
            .and_then(|p| parse_restart(p).ok())
            .unwrap_or_default()
    }

    pub fn ports(&self) -> Vec<PortMapping> {
        self.label(labels::PORTS)
            .map(ports_from_label)
            .unwrap_or_default()
    }

    pub fn net(&self) -> NetMode {
        self.label(labels::NET)
            .and_then(|n| parse_net(n).ok())
            .unwrap_or_default()
    }

    /// Stopped by a person (`ros stop`): the keeper leaves it down.
    pub fn stopped(&self) -> bool {
        self.label(labels::STOPPED) == Some("true")
    }

    pub fn auto_remove(&self) -> bool {
        self.label(labels::AUTO_REMOVE) == Some("true")
    }

    pub fn created(&self) -> Option<SystemTime> {
        self.label(labels::CREATED).and_then(parse_unix_seconds)
    }

    pub fn started(&self) -> Option<SystemTime> {
        self.label(labels::STARTED).and_then(parse_unix_seconds)
    }

    /// The exit code and time of the last task, once it was deleted.
    pub fn last_exit(&self) -> Option<(u32, Option<SystemTime>)> {
        let code = self.label(labels::EXIT_CODE)?.parse().ok()?;
        Some((
            code,
            self.label(labels::FINISHED).and_then(parse_unix_seconds),
        ))
    }

    /// The program and its arguments.
    pub fn command(&self) -> Vec<String> {
        self.spec["process"]["args"]
            .as_array()
            .map(|args| {
                args.iter()
                    .filter_map(|a| a.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A task as `ps` and the keeper see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Task {
    pub pid: u32,
    pub status: TaskStatus,
    pub exited_at: Option<SystemTime>,
}

fn task_of(process: &containerd_client::types::v1::Process) -> Task {
    Task {
        pid: process.pid,
        status: task_status(process),
        exited_at: process.exited_at.as_ref().and_then(from_timestamp),
    }
}

/// The records, tasks and snapshots of one namespace.
#[derive(Debug, Clone)]
pub struct Records {
    containerd: Containerd,
}

impl Records {
    pub fn new(containerd: &Containerd) -> Self {
        Self {
            containerd: containerd.clone(),
        }
    }

    fn containers(&self) -> ContainersClient<Namespaced> {
        ContainersClient::with_interceptor(
            self.containerd.channel().clone(),
            self.containerd.namespace().clone(),
        )
    }

    pub(crate) fn tasks(&self) -> TasksClient<Namespaced> {
        TasksClient::with_interceptor(
            self.containerd.channel().clone(),
            self.containerd.namespace().clone(),
        )
    }

    fn snapshots(&self) -> SnapshotsClient<Namespaced> {
        SnapshotsClient::with_interceptor(
            self.containerd.channel().clone(),
            self.containerd.namespace().clone(),
        )
    }

    /// The record, or `None`.
    pub async fn get(&self, name: &str) -> Result<Option<Record>, RuntimeError> {
        let request = GetContainerRequest {
            id: name.to_string(),
        };
        match self.containers().get(request).await {
            Ok(response) => Ok(response.into_inner().container.map(Record::from_container)),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(error("get container", name)(status)),
        }
    }

    /// Every record, by name.
    pub async fn list(&self) -> Result<Vec<Record>, RuntimeError> {
        let response = self
            .containers()
            .list(ListContainersRequest::default())
            .await
            .map_err(error("list containers", ""))?;
        let mut records: Vec<Record> = response
            .into_inner()
            .containers
            .into_iter()
            .map(Record::from_container)
            .collect();
        records.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(records)
    }

    /// Creates the record; `AlreadyExists` when the name is taken.
    pub async fn create(
        &self,
        name: &str,
        image: &str,
        labels: HashMap<String, String>,
        spec: &Spec,
    ) -> Result<(), RuntimeError> {
        let container = Container {
            id: name.to_string(),
            labels,
            image: image.to_string(),
            snapshotter: SNAPSHOTTER.to_string(),
            snapshot_key: name.to_string(),
            ..Default::default()
        };
        self.containerd.create_record(container, spec).await
    }

    /// Sets (`Some`) or removes (`None`) labels, leaving the others.
    pub async fn set_labels(
        &self,
        name: &str,
        changes: &[(&str, Option<String>)],
    ) -> Result<(), RuntimeError> {
        let labels = changes
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.to_string(), v)))
            .collect();
        let paths = changes.iter().map(|(k, _)| format!("labels.{k}")).collect();
        self.containers()
            .update(UpdateContainerRequest {
                container: Some(Container {
                    id: name.to_string(),
                    labels,
                    ..Default::default()
                }),
                update_mask: Some(FieldMask { paths }),
            })
            .await
            .map_err(error("update container labels", name))?;
        Ok(())
    }

    pub async fn delete(&self, name: &str) -> Result<(), RuntimeError> {
        self.containerd.delete_container(name).await
    }

    /// Every task of the namespace, by container name.
    pub async fn all_tasks(&self) -> Result<HashMap<String, Task>, RuntimeError> {
        let response = self
            .tasks()
            .list(ListTasksRequest::default())
            .await
            .map_err(error("list tasks", ""))?;
        Ok(response
            .into_inner()
            .tasks
            .iter()
            .map(|p| (p.id.clone(), task_of(p)))
            .collect())
    }

    /// The container's task, or `None`.
    pub async fn task(&self, name: &str) -> Result<Option<Task>, RuntimeError> {
        let request = containerd_client::services::v1::GetRequest {
            container_id: name.to_string(),
            exec_id: String::new(),
        };
        match self.tasks().get(request).await {
            Ok(response) => Ok(response.into_inner().process.as_ref().map(task_of)),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(error("get task", name)(status)),
        }
    }

    /// The mounts of the container's writable snapshot, for its task.
    pub async fn snapshot_mounts(&self, name: &str) -> Result<Vec<RootfsMount>, RuntimeError> {
        let response = self
            .snapshots()
            .mounts(MountsRequest {
                snapshotter: SNAPSHOTTER.to_string(),
                key: name.to_string(),
            })
            .await
            .map_err(error("snapshot mounts", name))?;
        Ok(response
            .into_inner()
            .mounts
            .into_iter()
            .map(rootfs_mount)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_labels_round_trip_to_the_millisecond() {
        let t = UNIX_EPOCH + Duration::from_millis(1_764_597_600_123);
        assert_eq!(unix_seconds(t), "1764597600.123");
        assert_eq!(parse_unix_seconds(&unix_seconds(t)), Some(t));
        assert_eq!(parse_unix_seconds("x"), None);
    }

    #[test]
    fn a_record_reads_its_labels_and_command() {
        let record = Record {
            name: "web".into(),
            image: "docker.io/library/nginx:latest".into(),
            labels: [
                (labels::IMAGE, "nginx"),
                (labels::RESTART, "on-failure:2"),
                (labels::PORTS, "8080:80/tcp"),
                (labels::NET, "host"),
                (labels::STOPPED, "true"),
                (labels::EXIT_CODE, "137"),
                (labels::FINISHED, "10.5"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            spec: serde_json::json!({"process": {"args": ["nginx", "-g", "daemon off;"]}}),
        };
        assert_eq!(record.image_name(), "nginx");
        assert_eq!(record.restart(), RestartPolicy::OnFailure(Some(2)));
        assert_eq!(record.ports()[0].host, 8080);
        assert_eq!(record.net(), NetMode::Host);
        assert!(record.stopped());
        assert_eq!(
            record.last_exit(),
            Some((137, Some(UNIX_EPOCH + Duration::from_millis(10_500))))
        );
        assert_eq!(record.command(), ["nginx", "-g", "daemon off;"]);
    }
}
