//! `file:PATH`: user-data in a file on the machine.

use std::io;
use std::path::{Path, PathBuf};

use super::{BoxFuture, Datasource, DatasourceError};
use crate::userdata::{Metadata, Payload, UserData};

/// Reads `path`; a missing file is `None`.
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, DatasourceError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(DatasourceError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// `file:PATH`.
#[derive(Debug, Clone)]
pub struct FileSource {
    path: PathBuf,
}

impl FileSource {
    /// The source for `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }
}

impl Datasource for FileSource {
    fn name(&self) -> String {
        format!("file:{}", self.path.display())
    }

    fn needs_network(&self) -> bool {
        false
    }

    fn fetch(&self) -> BoxFuture<'_, Result<Option<UserData>, DatasourceError>> {
        Box::pin(async move {
            let Some(bytes) = read_optional(&self.path)? else {
                return Ok(None);
            };
            Ok(Some(UserData {
                payload: Payload::from_bytes(&bytes)?,
                metadata: Metadata::default(),
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_a_file_and_treats_a_missing_one_as_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("user-data");
        let source = FileSource::new(&path);
        assert!(source.fetch().await.unwrap().is_none());
        std::fs::write(&path, "#cloud-config\nhostname: from-file\n").unwrap();
        let data = source.fetch().await.unwrap().unwrap();
        assert_eq!(
            data.payload,
            Payload::CloudConfig("#cloud-config\nhostname: from-file\n".into())
        );
        std::fs::write(&path, "not user data").unwrap();
        assert!(matches!(
            source.fetch().await,
            Err(DatasourceError::UserData(_))
        ));
        assert_eq!(source.name(), format!("file:{}", path.display()));
        assert!(!source.needs_network());
    }
}
