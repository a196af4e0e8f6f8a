//! What config drives and NoCloud seeds share: a disk found by its
//! filesystem label (or a directory given instead) holding a user-data
//! file and a meta-data file. Each kind says only its names and how its
//! meta-data reads.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::block::{BlockDevices, Mounter, find_by_label, with_mounted};
use super::file::read_optional;
use super::{BoxFuture, Datasource, DatasourceError, Environment};
use crate::userdata::{Metadata, Payload, UserData};

/// One kind of labelled disk.
#[derive(Debug)]
pub struct DiskKind {
    /// The datasource's name (`configdrive`).
    pub name: &'static str,
    /// The filesystem label that marks the disk.
    pub label: &'static str,
    /// The user-data file, relative to the disk's root.
    pub user_data: &'static str,
    /// The meta-data file, relative to the disk's root.
    pub meta_data: &'static str,
    /// How the meta-data file reads.
    pub parse_meta_data: fn(&[u8]) -> Result<Metadata, DatasourceError>,
}

/// `NAME[:PATH]`: the labelled disk, or its files under PATH.
#[derive(Debug, Clone)]
pub struct LabelledDisk {
    kind: &'static DiskKind,
    path: Option<PathBuf>,
    block_devices: Arc<dyn BlockDevices>,
    mounter: Arc<dyn Mounter>,
    mount_point: PathBuf,
}

impl LabelledDisk {
    /// The source: PATH if given, else the disk with the kind's label.
    pub fn new(kind: &'static DiskKind, path: Option<String>, env: &Environment) -> Self {
        Self {
            kind,
            path: path.map(PathBuf::from),
            block_devices: Arc::clone(&env.block_devices),
            mounter: Arc::clone(&env.mounter),
            mount_point: env.mount_dir.join(kind.name),
        }
    }
}

impl Datasource for LabelledDisk {
    fn name(&self) -> String {
        match &self.path {
            Some(path) => format!("{}:{}", self.kind.name, path.display()),
            None => self.kind.name.to_owned(),
        }
    }

    fn needs_network(&self) -> bool {
        false
    }

    fn fetch(&self) -> BoxFuture<'_, Result<Option<UserData>, DatasourceError>> {
        Box::pin(async move {
            let kind = self.kind;
            if let Some(path) = &self.path {
                return read(kind, path);
            }
            let found =
                find_by_label(self.block_devices.as_ref(), kind.label).map_err(|source| {
                    DatasourceError::Io {
                        path: PathBuf::from("/sys/class/block"),
                        source,
                    }
                })?;
            let Some((device, fs_type)) = found else {
                return Ok(None);
            };
            with_mounted(
                self.mounter.as_ref(),
                &device,
                fs_type,
                &self.mount_point,
                |root| read(kind, root),
            )
            .map_err(|source| DatasourceError::Mount {
                device,
                target: self.mount_point.clone(),
                source,
            })?
        })
    }
}

/// Reads a disk of `kind` mounted (or copied) at `root`; `None` when it
/// has neither file.
pub fn read(kind: &DiskKind, root: &Path) -> Result<Option<UserData>, DatasourceError> {
    let user_data = read_optional(&root.join(kind.user_data))?;
    let meta_data = read_optional(&root.join(kind.meta_data))?;
    if user_data.is_none() && meta_data.is_none() {
        return Ok(None);
    }
    let payload = match user_data {
        Some(bytes) => Payload::from_bytes(&bytes)?,
        None => Payload::Empty,
    };
    let metadata = match meta_data {
        Some(bytes) => (kind.parse_meta_data)(&bytes)?,
        None => Metadata::default(),
    };
    Ok(Some(UserData { payload, metadata }))
}
