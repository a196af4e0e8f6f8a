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

/// `rancher`'s uid and its own group's gid.
pub const RANCHER_UID: u32 = 1100;
/// `rancher`'s primary group.
pub const RANCHER_GID: u32 = 1100;
/// The `docker` group.
pub const DOCKER_GID: u32 = 1101;
/// The group `sudo` lets become root (sudo's `SUDO_GROUP`).
pub const SUDO_GID: u32 = 27;
/// The user people log in as.
pub const USER: &str = "rancher";
/// Its home, on the state partition through the console's `/home` bind.
pub const HOME: &str = "/home/rancher";
/// Its shell (busybox).
pub const SHELL: &str = "/bin/sh";

/// `/etc/passwd`.
pub fn passwd() -> String {
    format!(
        "root:x:0:0:root:/root:{SHELL}\n\
         {USER}:x:{RANCHER_UID}:{RANCHER_GID}:{USER}:{HOME}:{SHELL}\n\
         nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    )
}

/// `/etc/group`.
pub fn group() -> String {
    format!(
        "root:x:0:\n\
         tty:x:5:\n\
         sudo:x:{SUDO_GID}:{USER}\n\
         {USER}:x:{RANCHER_GID}:\n\
         docker:x:{DOCKER_GID}:{USER}\n\
         nogroup:x:65534:\n"
    )
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

/// Hashes a plain password (SHA-512 crypt, random salt).
pub trait Hasher {
    fn sha512_crypt(&self, plain: &str) -> Result<String, String>;
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

    struct FakeHasher(Result<&'static str, &'static str>);

    impl Hasher for FakeHasher {
        fn sha512_crypt(&self, _plain: &str) -> Result<String, String> {
            self.0.map(str::to_owned).map_err(str::to_owned)
        }
    }

    const HASH: &str = "$6$saltsalt$YTeBOLnmm3CoeJTzBuijUEtOEWCqrw/nQ8/AeMmON4LGp3k0ZiMjC1OdqzWFUAfDQBvYkOch9BWtQTBcZ1E/p0";

    #[test]
    fn rancher_has_rancheros_ids_and_groups() {
        assert!(passwd().contains("\nrancher:x:1100:1100:rancher:/home/rancher:/bin/sh\n"));
        assert!(passwd().starts_with("root:x:0:0:"));
        let group = group();
        assert!(group.contains("\nrancher:x:1100:\n"), "{group}");
        assert!(group.contains("\ndocker:x:1101:rancher\n"), "{group}");
        assert!(group.contains("\nsudo:x:27:rancher\n"), "{group}");
    }

    #[test]
    fn no_password_locks_the_account_and_root_never_has_one() {
        let hasher = FakeHasher(Err("unused"));
        assert_eq!(password(None, &hasher), (Password::Locked, None));
        assert_eq!(password(Some(""), &hasher), (Password::Locked, None));
        let shadow = shadow(&Password::Locked);
        assert!(shadow.starts_with("root:*:"), "{shadow}");
        assert!(shadow.contains("\nrancher:*:"), "{shadow}");
    }

    #[test]
    fn a_crypt_hash_is_used_as_it_is_and_plain_text_is_hashed() {
        let hasher = FakeHasher(Ok(HASH));
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
        let (field, warning) = password(Some("$y$j9T$abc$def"), &FakeHasher(Err("unused")));
        assert_eq!(field, Password::Hash("$y$j9T$abc$def".into()));
        assert!(warning.unwrap().contains("SSH only"));
    }

    #[test]
    fn a_failed_hash_leaves_the_account_locked_and_says_so() {
        let (field, warning) = password(Some("secret"), &FakeHasher(Err("no mkpasswd")));
        assert_eq!(field, Password::Locked);
        let warning = warning.unwrap();
        assert!(
            warning.contains("no mkpasswd") && !warning.contains("secret"),
            "{warning}"
        );
        assert_eq!(format!("{:?}", Password::Hash(HASH.into())), "Hash(..)");
    }
}
