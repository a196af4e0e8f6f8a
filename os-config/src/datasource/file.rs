//! `file:PATH`: user-data in a file on the machine.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::{BoxFuture, Datasource, DatasourceError};
use crate::userdata::{MAX_USER_DATA, Metadata, Payload, UserData};

/// Reads `path`, at most [`MAX_USER_DATA`] bytes: a larger file is an
/// error (nothing past the cap is read, so a 100 MiB file costs PID 1 no
/// more than the cap); a missing file is `None`.
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, DatasourceError> {
    let io_error = |source| DatasourceError::Io {
        path: path.to_owned(),
        source,
    };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(io_error(source)),
    };
    let mut bytes = Vec::new();
    // One byte past the cap tells a file that is too large from one that
    // fits exactly.
    file.take(MAX_USER_DATA as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() > MAX_USER_DATA {
        return Err(DatasourceError::TooLarge {
            path: path.to_owned(),
            limit: MAX_USER_DATA,
        });
    }
    Ok(Some(bytes))
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

    #[tokio::test]
    async fn a_file_past_the_cap_is_refused_naming_it_and_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("user-data");
        let mut script = b"#!/bin/sh\n".to_vec();
        script.resize(MAX_USER_DATA, b'#');
        std::fs::write(&path, &script).unwrap();
        let source = FileSource::new(&path);
        assert_eq!(
            source.fetch().await.unwrap().unwrap().payload,
            Payload::Script(script.clone())
        );
        // 100 MiB, sparse: only the cap and one byte are read.
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(100 << 20).unwrap();
        let error = source.fetch().await.unwrap_err();
        assert!(
            matches!(&error, DatasourceError::TooLarge { limit, .. } if *limit == MAX_USER_DATA),
            "{error}"
        );
        assert_eq!(
            error.to_string(),
            format!(
                "{}: larger than {MAX_USER_DATA} bytes (the user-data cap); this source is skipped",
                path.display()
            )
        );
    }
}
