//! `SOURCE_DATE_EPOCH` for the squashfs and the ISO: every time stamp
//! in them is the last commit's time (or earlier), so the same commit
//! builds the same bytes (<https://reproducible-builds.org/docs/source-date-epoch/>).
//! The kernel takes its time stamp from its own inputs instead (see
//! `kernel::build_timestamp`): the commit's would change its cache key on
//! every commit.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

/// `SOURCE_DATE_EPOCH` from the environment when set (a packager's
/// choice), else the committer time of the workspace's `HEAD`.
pub fn source_date_epoch() -> anyhow::Result<String> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    epoch_from(std::env::var_os("SOURCE_DATE_EPOCH"), &workspace)
}

fn epoch_from(set: Option<std::ffi::OsString>, workspace: &Path) -> anyhow::Result<String> {
    if let Some(value) = set {
        let value = value.to_string_lossy().into_owned();
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            bail!("SOURCE_DATE_EPOCH={value:?} is not a number of seconds");
        }
        return Ok(value);
    }
    let output = Command::new("git")
        .args(["log", "-1", "--format=%ct"])
        .current_dir(workspace)
        .output()
        .context("running git for the last commit's time (or set SOURCE_DATE_EPOCH)")?;
    let value = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || value.is_empty() {
        bail!(
            "no last commit in {} to date the image by: set SOURCE_DATE_EPOCH \
             (git: {})",
            workspace.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_epoch_is_the_last_commit_time_of_this_workspace() {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let epoch: u64 = epoch_from(None, &workspace).unwrap().parse().unwrap();
        // After this code was written, and not in the future.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!((1_790_000_000..=now).contains(&epoch), "{epoch}");
    }

    #[test]
    fn a_set_variable_wins_and_must_be_seconds() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(epoch_from(Some("1234".into()), dir.path()).unwrap(), "1234");
        let error = epoch_from(Some("yesterday".into()), dir.path()).unwrap_err();
        assert!(error.to_string().contains("not a number"), "{error}");
    }

    #[test]
    fn outside_a_repository_the_error_says_to_set_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let error = epoch_from(None, dir.path()).unwrap_err().to_string();
        assert!(error.contains("set SOURCE_DATE_EPOCH"), "{error}");
    }
}
