//! The running set of services: started one after another, each waiting
//! for the one before to settle, stopped in reverse.

use std::path::PathBuf;
use std::sync::Arc;

use oci_spec::OciSpecError;
use tokio::sync::watch;

use crate::restart::Backoff;
use crate::runtime::ContainerRuntime;
use crate::service::{Service, ServiceName};
use crate::supervisor::{ServiceStatus, Supervised, supervise};

/// A service whose definition could not become a container spec.
#[derive(Debug, thiserror::Error)]
#[error("service {service}: {source}")]
pub struct StartError {
    pub service: ServiceName,
    #[source]
    pub source: OciSpecError,
}

#[derive(Debug)]
pub struct Engine<R> {
    runtime: Arc<R>,
    log_dir: PathBuf,
    running: Vec<(ServiceName, Supervised)>,
}

impl<R: ContainerRuntime> Engine<R> {
    /// Services' output goes to `log_dir/<name>.log`.
    pub fn new(runtime: Arc<R>, log_dir: impl Into<PathBuf>) -> Self {
        Self {
            runtime,
            log_dir: log_dir.into(),
            running: Vec::new(),
        }
    }

    /// Starts supervising `service` and waits until it runs (or failed).
    pub async fn start(&mut self, service: &Service) -> Result<ServiceStatus, StartError> {
        let spec = crate::spec::build(service).map_err(|source| StartError {
            service: service.name.clone(),
            source,
        })?;
        let log = self.log_dir.join(format!("{}.log", service.name));
        let supervised = supervise(
            Arc::clone(&self.runtime),
            service,
            spec,
            log,
            Backoff::default(),
        );
        let status = supervised.settled().await;
        self.running.push((service.name.clone(), supervised));
        Ok(status)
    }

    /// The status of every supervised service, in start order.
    pub fn statuses(&self) -> Vec<(ServiceName, ServiceStatus)> {
        self.running
            .iter()
            .map(|(name, s)| (name.clone(), s.status().borrow().clone()))
            .collect()
    }

    /// The live status of one service, if it is supervised.
    pub fn status_of(&self, name: &str) -> Option<watch::Receiver<ServiceStatus>> {
        self.running
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, s)| s.status())
    }

    /// Stops every service, the last started first.
    pub async fn stop_all(self) {
        for (name, supervised) in self.running.into_iter().rev() {
            tracing::info!(service = %name, "stopping");
            supervised.stop().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakeCall, FakeRuntime};
    use crate::supervisor::ServiceState;

    fn service(name: &str) -> Service {
        Service::new(ServiceName::new(name).unwrap(), "/root", vec!["run".into()])
    }

    #[tokio::test(start_paused = true)]
    async fn starts_in_order_and_stops_in_reverse() {
        let runtime = Arc::new(FakeRuntime::default());
        let mut engine = Engine::new(Arc::clone(&runtime), "/var/log/ros");
        for name in ["udev", "syslog", "console"] {
            let status = engine.start(&service(name)).await.unwrap();
            assert!(
                matches!(status.state, ServiceState::Running { .. }),
                "{name}: {status:?}"
            );
        }
        let names: Vec<String> = engine
            .statuses()
            .into_iter()
            .map(|(n, _)| n.to_string())
            .collect();
        assert_eq!(names, ["udev", "syslog", "console"]);
        engine.stop_all().await;
        let removed: Vec<String> = runtime
            .calls()
            .into_iter()
            .filter_map(|c| match c {
                FakeCall::DeleteContainer(id) => Some(id),
                _ => None,
            })
            .collect();
        assert_eq!(removed, ["console", "syslog", "udev"]);
    }
}
