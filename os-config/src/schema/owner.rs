//! `write_files[].owner`: `user[:group]`, by number or by a name the image
//! has, resolved when the configuration is read, so a typo is a key-path
//! error of `ros config validate` rather than a file left unwritten at
//! boot.
//!
//! The names are the accounts this system ships (the console's
//! `/etc/passwd` and `/etc/group`, the same ids RancherOS used): the table
//! here is their one definition.

use std::fmt;

use serde::Deserialize;

/// `rancher`'s uid and its own group's gid (RancherOS's).
pub const RANCHER_UID: u32 = 1100;
/// `rancher`'s primary group.
pub const RANCHER_GID: u32 = 1100;
/// The `docker` group.
pub const DOCKER_GID: u32 = 1101;
/// The group `sudo` lets become root (Debian's).
pub const SUDO_GID: u32 = 27;

/// The users of the image: name, uid, primary gid.
pub const USERS: &[(&str, u32, u32)] = &[
    ("root", 0, 0),
    ("rancher", RANCHER_UID, RANCHER_GID),
    ("nobody", 65534, 65534),
];

/// The groups of the image: name, gid.
pub const GROUPS: &[(&str, u32)] = &[
    ("root", 0),
    ("tty", 5),
    ("sudo", SUDO_GID),
    ("rancher", RANCHER_GID),
    ("docker", DOCKER_GID),
    ("nogroup", 65534),
];

/// Why an owner was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidOwner {
    /// The user part names no user of the image.
    #[error(
        "owner `{owner}`: no user `{user}` in this system (a uid, or one of: {})",
        names(USERS.iter().map(|(name, _, _)| *name))
    )]
    User {
        /// The owner as written.
        owner: String,
        /// The user part.
        user: String,
    },
    /// The group part names no group of the image.
    #[error(
        "owner `{owner}`: no group `{group}` in this system (a gid, or one of: {})",
        names(GROUPS.iter().map(|(name, _)| *name))
    )]
    Group {
        /// The owner as written.
        owner: String,
        /// The group part.
        group: String,
    },
}

fn names<'a>(list: impl Iterator<Item = &'a str>) -> String {
    list.collect::<Vec<_>>().join(", ")
}

/// A file's owner, resolved to ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    text: String,
    uid: u32,
    gid: u32,
}

impl Owner {
    /// root:root, what a file gets without `owner`.
    pub fn root() -> Self {
        Self {
            text: "root".to_owned(),
            uid: 0,
            gid: 0,
        }
    }

    /// The user id.
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// The group id: the one given, else the user's primary group (its own
    /// id for a bare number, as RancherOS's `chown` did).
    pub fn gid(&self) -> u32 {
        self.gid
    }

    /// As written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl TryFrom<String> for Owner {
    type Error = InvalidOwner;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        let (user, group) = match text.split_once(':') {
            Some((user, group)) => (user, Some(group)),
            None => (text.as_str(), None),
        };
        let (uid, primary) = match user.parse::<u32>() {
            Ok(uid) => (uid, uid),
            Err(_) => USERS
                .iter()
                .find(|(name, _, _)| *name == user)
                .map(|(_, uid, gid)| (*uid, *gid))
                .ok_or_else(|| InvalidOwner::User {
                    owner: text.clone(),
                    user: user.to_owned(),
                })?,
        };
        let gid = match group {
            None => primary,
            Some(group) => match group.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => GROUPS
                    .iter()
                    .find(|(name, _)| *name == group)
                    .map(|(_, gid)| *gid)
                    .ok_or_else(|| InvalidOwner::Group {
                        owner: text.clone(),
                        group: group.to_owned(),
                    })?,
            },
        };
        Ok(Self { text, uid, gid })
    }
}

impl<'de> Deserialize<'de> for Owner {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // `owner: 0` is a number in YAML.
        let super::scalar::ScalarText(text) = Deserialize::deserialize(deserializer)?;
        Self::try_from(text).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(text: &str) -> Result<(u32, u32), InvalidOwner> {
        Owner::try_from(text.to_owned()).map(|o| (o.uid(), o.gid()))
    }

    #[test]
    fn owners_are_numbers_or_names_the_image_has() {
        assert_eq!(ids("root"), Ok((0, 0)));
        assert_eq!(ids("1000:100"), Ok((1000, 100)));
        assert_eq!(ids("1000"), Ok((1000, 1000)));
        assert_eq!(ids("root:5"), Ok((0, 5)));
        assert_eq!(ids("rancher"), Ok((1100, 1100)));
        assert_eq!(ids("rancher:docker"), Ok((1100, 1101)));
        assert_eq!(ids("0:sudo"), Ok((0, 27)));
    }

    #[test]
    fn an_unknown_name_says_which_part_and_what_there_is() {
        assert_eq!(
            ids("www-data"),
            Err(InvalidOwner::User {
                owner: "www-data".into(),
                user: "www-data".into()
            })
        );
        let error = ids("rancher:wheel").unwrap_err();
        assert_eq!(
            error.to_string(),
            "owner `rancher:wheel`: no group `wheel` in this system (a gid, or one of: root, tty, \
             sudo, rancher, docker, nogroup)"
        );
        assert!(matches!(ids(""), Err(InvalidOwner::User { .. })));
    }

    #[test]
    fn a_numeric_yaml_owner_is_read() {
        let owner: Owner = serde_norway::from_str("0").unwrap();
        assert_eq!((owner.uid(), owner.gid(), owner.as_str()), (0, 0, "0"));
    }
}
