//! The console's users and groups, with RancherOS's ids: `rancher` is uid
//! 1100 in group `rancher` (1100), also in `docker` (1101) and `sudo`
//! (Debian's 27, what RancherOS's Debian consoles used), home
//! `/home/rancher`, shell busybox's `/bin/sh`. root has no password: it is
//! reached through `sudo`, never by logging in.
//!
//! `rancher.password` is either a crypt hash (`$6$`, `$5$`, `$1$`, and
//! `$y$`/`$2b$` which only dropbear checks) used as it is, or plain text,
//! hashed with SHA-512 crypt. Without one the account has no password
//! (`*`): a login prompt cannot be passed, an SSH key still can.

use std::fmt;
use std::process::ExitStatus;

// The ids are the schema's (`write_files[].owner` resolves names with
// the same table): one definition of who is who.
pub use os_config::schema::owner::{GROUPS, RANCHER_GID, RANCHER_UID, USERS};

/// The user people log in as.
pub const USER: &str = "rancher";
/// Its home, on the state partition through the console's `/home` bind.
pub const HOME: &str = "/home/rancher";
/// Its shell (busybox).
pub const SHELL: &str = "/bin/sh";

/// Home and shell of each of [`USERS`]; a user not listed never logs in.
fn home_and_shell(user: &str) -> (&'static str, &'static str) {
    match user {
        "root" => ("/root", SHELL),
        USER => (HOME, SHELL),
        _ => ("/nonexistent", "/bin/false"),
    }
}

/// The groups `rancher` is a member of besides its own.
const RANCHER_GROUPS: &[&str] = &["sudo", "docker"];

/// `/etc/passwd`, from the schema's [`USERS`].
pub fn passwd() -> String {
    USERS
        .iter()
        .map(|(name, uid, gid)| {
            let (home, shell) = home_and_shell(name);
            format!("{name}:x:{uid}:{gid}:{name}:{home}:{shell}\n")
        })
        .collect()
}

/// `/etc/group`, from the schema's [`GROUPS`].
pub fn group() -> String {
    GROUPS
        .iter()
        .map(|(name, gid)| {
            let members = if RANCHER_GROUPS.contains(name) {
                USER
            } else {
                ""
            };
            format!("{name}:x:{gid}:{members}\n")
        })
        .collect()
}

/// The shells a user may have (dropbear checks the user's is one).
pub const SHELLS: &str = "/bin/sh\n/bin/ash\n";

/// `rancher`'s password field in `/etc/shadow`.
#[derive(Clone, PartialEq, Eq)]
pub enum Password {
    /// No password: nothing typed matches.
    Locked,
    /// A crypt hash.
    Hash(String),
}

impl fmt::Debug for Password {
    // The hash stays out of logs and panics.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Locked => f.write_str("Locked"),
            Self::Hash(_) => f.write_str("Hash(..)"),
        }
    }
}

/// How a `rancher.password` value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordForm {
    /// A hash busybox's login and dropbear both check.
    Hash,
    /// A hash only dropbear (glibc's libcrypt) checks: SSH, not the console.
    HashForSshOnly,
    /// Plain text, to hash.
    Plain,
}

/// Whether `value` is a crypt hash, and which kind.
pub fn password_form(value: &str) -> PasswordForm {
    let hash_chars = |rest: &str| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"./$=,".contains(&b))
    };
    for prefix in ["$1$", "$5$", "$6$"] {
        if let Some(rest) = value.strip_prefix(prefix)
            && hash_chars(rest)
            && rest.contains('$')
        {
            return PasswordForm::Hash;
        }
    }
    for prefix in ["$y$", "$2b$", "$2y$", "$2a$"] {
        if let Some(rest) = value.strip_prefix(prefix)
            && hash_chars(rest)
        {
            return PasswordForm::HashForSshOnly;
        }
    }
    PasswordForm::Plain
}

/// Why a plain password could not be hashed (never the password itself).
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("starting {program}: {source}")]
    Start {
        program: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("giving {program} the password: {source}")]
    Input {
        program: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("waiting for {program}: {source}")]
    Wait {
        program: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} failed: {status}")]
    Failed {
        program: &'static str,
        status: ExitStatus,
    },
}

/// Hashes a plain password (SHA-512 crypt, random salt).
pub trait Hasher {
    fn sha512_crypt(&self, plain: &str) -> Result<String, HashError>;
}

/// `rancher`'s password field from `rancher.password`, and a warning for
/// what the configuration asks that cannot be done as asked.
pub fn password(value: Option<&str>, hasher: &dyn Hasher) -> (Password, Option<String>) {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return (Password::Locked, None);
    };
    match password_form(value) {
        PasswordForm::Hash => (Password::Hash(value.to_owned()), None),
        PasswordForm::HashForSshOnly => (
            Password::Hash(value.to_owned()),
            Some(
                "rancher.password: this hash kind (yescrypt/bcrypt) is checked by SSH only; \
                 the console's login prompt needs $6$, $5$ or $1$"
                    .to_owned(),
            ),
        ),
        PasswordForm::Plain => match hasher.sha512_crypt(value) {
            Ok(hash) if password_form(&hash) == PasswordForm::Hash => (Password::Hash(hash), None),
            Ok(_) => (
                Password::Locked,
                Some(
                    "rancher.password: hashing gave no SHA-512 crypt hash; no password set".into(),
                ),
            ),
            Err(error) => (
                Password::Locked,
                Some(format!(
                    "rancher.password: cannot hash it ({error}); no password set"
                )),
            ),
        },
    }
}

/// `/etc/shadow`: root and nobody never log in with a password.
pub fn shadow(rancher: &Password) -> String {
    let field = match rancher {
        Password::Locked => "*",
        Password::Hash(hash) => hash,
    };
    format!("root:*::0:99999:7:::\n{USER}:{field}::0:99999:7:::\nnobody:*::0:99999:7:::\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gives this hash, or fails as a missing `mkpasswd` does.
    struct FakeHasher(Option<&'static str>);

    impl Hasher for FakeHasher {
        fn sha512_crypt(&self, _plain: &str) -> Result<String, HashError> {
            self.0.map(str::to_owned).ok_or_else(|| HashError::Start {
                program: "mkpasswd",
                source: std::io::ErrorKind::NotFound.into(),
            })
        }
    }

    const HASH: &str = "$6$saltsalt$YTeBOLnmm3CoeJTzBuijUEtOEWCqrw/nQ8/AeMmON4LGp3k0ZiMjC1OdqzWFUAfDQBvYkOch9BWtQTBcZ1E/p0";

    #[test]
    fn rancher_has_rancheros_ids_and_groups() {
        assert_eq!(
            passwd(),
            "root:x:0:0:root:/root:/bin/sh\n\
             rancher:x:1100:1100:rancher:/home/rancher:/bin/sh\n\
             nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
        );
        assert_eq!(
            group(),
            "root:x:0:\ntty:x:5:\nsudo:x:27:rancher\nrancher:x:1100:\n\
             docker:x:1101:rancher\nnogroup:x:65534:\n"
        );
    }

    #[test]
    fn an_owner_the_schema_accepts_has_the_ids_the_console_files_give() {
        let owner = os_config::schema::Owner::try_from("rancher:docker".to_owned()).unwrap();
        let uid = format!(":x:{}:", owner.uid());
        let gid = format!(":x:{}:", owner.gid());
        assert!(
            passwd()
                .lines()
                .any(|l| l.starts_with("rancher:") && l.contains(&uid))
        );
        assert!(
            group()
                .lines()
                .any(|l| l.starts_with("docker:") && l.contains(&gid))
        );
    }

    #[test]
    fn no_password_locks_the_account_and_root_never_has_one() {
        let hasher = FakeHasher(None);
        assert_eq!(password(None, &hasher), (Password::Locked, None));
        assert_eq!(password(Some(""), &hasher), (Password::Locked, None));
        let shadow = shadow(&Password::Locked);
        assert!(shadow.starts_with("root:*:"), "{shadow}");
        assert!(shadow.contains("\nrancher:*:"), "{shadow}");
    }

    #[test]
    fn a_crypt_hash_is_used_as_it_is_and_plain_text_is_hashed() {
        let hasher = FakeHasher(Some(HASH));
        assert_eq!(
            password(Some("$5$abc$def"), &hasher),
            (Password::Hash("$5$abc$def".into()), None)
        );
        assert_eq!(
            password(Some("rancher-secret"), &hasher),
            (Password::Hash(HASH.into()), None)
        );
        assert!(shadow(&Password::Hash(HASH.into())).contains(&format!("\nrancher:{HASH}::")));
        // A password that merely starts with a dollar is plain text.
        assert_eq!(password_form("$money$"), PasswordForm::Plain);
        assert_eq!(password_form("$6$no spaces$x"), PasswordForm::Plain);
    }

    #[test]
    fn a_yescrypt_hash_is_kept_with_a_warning_about_the_console() {
        let (field, warning) = password(Some("$y$j9T$abc$def"), &FakeHasher(None));
        assert_eq!(field, Password::Hash("$y$j9T$abc$def".into()));
        assert!(warning.unwrap().contains("SSH only"));
    }

    #[test]
    fn a_failed_hash_leaves_the_account_locked_and_says_so() {
        let (field, warning) = password(Some("secret"), &FakeHasher(None));
        assert_eq!(field, Password::Locked);
        let warning = warning.unwrap();
        assert!(
            warning.starts_with("rancher.password: cannot hash it (starting mkpasswd: ")
                && !warning.contains("secret"),
            "{warning}"
        );
        assert_eq!(format!("{:?}", Password::Hash(HASH.into())), "Hash(..)");
    }
}
