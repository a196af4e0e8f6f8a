//! Helpers of the image tests (`pull.rs`, `load.rs`) that reach past the
//! driver into containerd's own API. Apart from `common/mod.rs`, which
//! the `ros` crate's tests include too and which must not need
//! `containerd-client`.

use std::time::Duration;

use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::{
    CreateRequest as CreateLeaseRequest, DeleteRequest as DeleteLeaseRequest,
};
use containerd_client::with_namespace;
use system_services::containerd::Containerd;
use system_services::root::Root;
use system_services::runtime::ContainerRuntime;
use system_services::service::{Service, ServiceName};
use tonic::Request;

use crate::common::PrivateContainerd;

/// Runs containerd's garbage collector now: deleting a lease with `sync`
/// collects before answering.
pub async fn collect_garbage(daemon: &PrivateContainerd) {
    let channel = containerd_client::connect(&daemon.config.socket)
        .await
        .unwrap();
    let mut leases = LeasesClient::new(channel);
    let id = "ros-test-gc-trigger".to_string();
    leases
        .create(with_namespace!(
            CreateLeaseRequest {
                id: id.clone(),
                labels: Default::default(),
            },
            daemon.namespace.as_str()
        ))
        .await
        .unwrap();
    leases
        .delete(with_namespace!(
            DeleteLeaseRequest { id, sync: true },
            daemon.namespace.as_str()
        ))
        .await
        .unwrap();
}

/// Runs the image's default command as the engine would: the driver
/// prepares the root (a snapshot of the image), the spec takes the image's
/// defaults, the task runs on the snapshot; asserts it exits 0, cleans up
/// and returns what it printed.
pub async fn run_image(daemon: &PrivateContainerd, runtime: &Containerd, image: &str) -> String {
    let id = "run-image";
    let root = Root::Image(image.to_string());
    let prepared = runtime
        .prepare_root(id, &root, std::path::Path::new("/dev/null"))
        .await
        .unwrap();
    assert!(!prepared.mounts.is_empty());
    let mut service = Service::new(ServiceName::new(id).unwrap(), "unused", Vec::new());
    service.command = None;
    service.root = root.clone();
    let spec = system_services::spec::build(&service, &prepared).unwrap();
    runtime.create_container(id, &spec).await.unwrap();
    // A test may run images one after the other: each output alone.
    let log = daemon.dir.path().join(format!("{id}.log"));
    let _ = std::fs::remove_file(&log);
    runtime
        .start_task(id, &log, &prepared.mounts)
        .await
        .unwrap_or_else(|e| panic!("start task: {e}\n{}", daemon.log()));
    let exit = tokio::time::timeout(Duration::from_secs(30), runtime.wait_task(id))
        .await
        .expect("the container exits")
        .unwrap();
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(exit, 0, "exit status; output {output:?}");
    runtime.delete_task(id).await.unwrap();
    runtime.delete_container(id).await.unwrap();
    runtime.release_root(id, &root).await.unwrap();
    output
}
