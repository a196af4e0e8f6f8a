//! Datasources: where user-data comes from. One trait, one module per
//! source; network sources take a base URL so tests point them at a local
//! server. Sources are tried in the configured order, or all at once with
//! a deadline; the first that has something wins, a source with nothing is
//! not an error, and a failing one is reported while the others go on.

pub mod block;
pub mod cmdline;
pub mod configdrive;
pub mod disk;
pub mod ec2;
pub mod file;
pub mod http;
pub mod label;
pub mod nocloud;
pub mod url;

use std::fmt::Debug;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::Cmdline;
use crate::schema::DatasourceSpec;
use crate::userdata::{UserData, UserDataError};
use block::{BlockDevices, Mounter, SysBlockDevices, SystemMounter};
use http::{HttpClient, HttpError};

/// A boxed future, so the trait stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One place user-data may come from.
pub trait Datasource: Send + Sync + Debug {
    /// The name as configured (`configdrive`, `url:http://…`).
    fn name(&self) -> String;

    /// True when the network must be up first.
    fn needs_network(&self) -> bool;

    /// The user-data, `Ok(None)` when this source has nothing.
    fn fetch(&self) -> BoxFuture<'_, Result<Option<UserData>, DatasourceError>>;
}

/// Why a datasource failed.
#[derive(Debug, thiserror::Error)]
pub enum DatasourceError {
    /// A network request failed.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// A server answered with an unexpected status.
    #[error("{url}: HTTP status {status}")]
    Status {
        /// What was asked for.
        url: String,
        /// The answer.
        status: u16,
    },
    /// Reading a file or device failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// What was read.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file past the user-data cap ([`crate::userdata::MAX_USER_DATA`]).
    #[error("{}: larger than {limit} bytes (the user-data cap); this source is skipped", path.display())]
    TooLarge {
        /// What was read.
        path: PathBuf,
        /// The cap.
        limit: usize,
    },
    /// Mounting the source failed.
    #[error("cannot mount {} at {}: {source}", device.display(), target.display())]
    Mount {
        /// The device.
        device: PathBuf,
        /// The mount point.
        target: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The metadata does not parse.
    #[error("{path}: metadata does not parse: {reason}")]
    Metadata {
        /// Which file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The user-data is not usable.
    #[error(transparent)]
    UserData(#[from] UserDataError),
    /// A RancherOS datasource this system does not have.
    #[error("datasource `{0}` is not supported here")]
    Unsupported(String),
}

/// What sources need from the machine; tests replace every part.
#[derive(Debug, Clone)]
pub struct Environment {
    /// The kernel command line, parsed once at boot.
    pub cmdline: Cmdline,
    /// The block devices to search for labelled disks.
    pub block_devices: Arc<dyn BlockDevices>,
    /// How to mount them.
    pub mounter: Arc<dyn Mounter>,
    /// Where to mount them (a directory per source is made below it).
    pub mount_dir: PathBuf,
    /// The EC2 metadata service.
    pub ec2_base_url: String,
    /// The HTTP client's limits.
    pub http: HttpClient,
}

impl Environment {
    /// The real machine.
    pub fn system(cmdline: Cmdline) -> Self {
        Self {
            cmdline,
            block_devices: Arc::new(SysBlockDevices::default()),
            mounter: Arc::new(SystemMounter),
            mount_dir: PathBuf::from("/run/ros/datasource"),
            ec2_base_url: ec2::DEFAULT_BASE_URL.to_owned(),
            http: HttpClient::default(),
        }
    }
}

/// The sources for `rancher.cloud_init.datasources`, in order.
pub fn from_specs(specs: &[DatasourceSpec], env: &Environment) -> Vec<Arc<dyn Datasource>> {
    specs
        .iter()
        .map(|spec| -> Arc<dyn Datasource> {
            match spec {
                DatasourceSpec::Cmdline => Arc::new(cmdline::CmdlineSource::new(env)),
                DatasourceSpec::ConfigDrive(path) => Arc::new(disk::LabelledDisk::new(
                    &configdrive::CONFIG_DRIVE,
                    path.clone(),
                    env,
                )),
                DatasourceSpec::NoCloud(path) => Arc::new(disk::LabelledDisk::new(
                    &nocloud::NO_CLOUD,
                    path.clone(),
                    env,
                )),
                DatasourceSpec::File(path) => Arc::new(file::FileSource::new(path)),
                DatasourceSpec::Url(address) => Arc::new(url::UrlSource::new(address, env)),
                DatasourceSpec::Ec2 => Arc::new(ec2::Ec2::new(&env.ec2_base_url, env)),
                DatasourceSpec::Unsupported(name) => Arc::new(UnsupportedSource(name.clone())),
            }
        })
        .collect()
}

/// A configured RancherOS datasource that does not exist here: it reports
/// itself so the user learns why nothing came from it.
#[derive(Debug)]
struct UnsupportedSource(String);

impl Datasource for UnsupportedSource {
    fn name(&self) -> String {
        self.0.clone()
    }

    fn needs_network(&self) -> bool {
        false
    }

    fn fetch(&self) -> BoxFuture<'_, Result<Option<UserData>, DatasourceError>> {
        Box::pin(async move { Err(DatasourceError::Unsupported(self.0.clone())) })
    }
}

/// How to try several sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// One after another, in order.
    InOrder,
    /// All at once; the first to answer with something wins; give up at the deadline.
    Parallel {
        /// The deadline.
        timeout: Duration,
    },
}

/// The outcome of trying the sources.
#[derive(Debug, Default)]
pub struct FetchReport {
    /// The winning source and what it gave.
    pub found: Option<(String, UserData)>,
    /// Sources that failed, and why.
    pub errors: Vec<(String, DatasourceError)>,
    /// Sources still running at the deadline.
    pub timed_out: Vec<String>,
}

/// Tries `sources` and returns the first user-data found.
pub async fn fetch_first(sources: &[Arc<dyn Datasource>], strategy: Strategy) -> FetchReport {
    match strategy {
        Strategy::InOrder => fetch_in_order(sources).await,
        Strategy::Parallel { timeout } => fetch_in_parallel(sources, timeout).await,
    }
}

async fn fetch_in_order(sources: &[Arc<dyn Datasource>]) -> FetchReport {
    let mut report = FetchReport::default();
    for source in sources {
        match source.fetch().await {
            Ok(Some(data)) => {
                report.found = Some((source.name(), data));
                break;
            }
            Ok(None) => tracing::debug!(source = %source.name(), "no user-data"),
            Err(error) => {
                tracing::warn!(source = %source.name(), %error, "datasource failed");
                report.errors.push((source.name(), error));
            }
        }
    }
    report
}

async fn fetch_in_parallel(sources: &[Arc<dyn Datasource>], timeout: Duration) -> FetchReport {
    let mut report = FetchReport::default();
    let mut tasks = tokio::task::JoinSet::new();
    for (index, source) in sources.iter().enumerate() {
        let source = Arc::clone(source);
        tasks.spawn(async move { (index, source.fetch().await) });
    }
    let mut pending: Vec<bool> = vec![true; sources.len()];
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let next = match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(Some(next)) => next,
            Ok(None) => break,
            Err(_deadline) => {
                report.timed_out = sources
                    .iter()
                    .zip(&pending)
                    .filter(|(_, pending)| **pending)
                    .map(|(source, _)| source.name())
                    .collect();
                break;
            }
        };
        let Ok((index, result)) = next else {
            // A panicking source task: counted as failed by its absence.
            continue;
        };
        pending[index] = false;
        let name = sources[index].name();
        match result {
            Ok(Some(data)) => {
                report.found = Some((name, data));
                break;
            }
            Ok(None) => {}
            Err(error) => report.errors.push((name, error)),
        }
    }
    // Dropping the set aborts the sources still running.
    tasks.abort_all();
    report
}
