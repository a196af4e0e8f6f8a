//! Image references as people write them (`busybox`, `alpine:3.19`,
//! `127.0.0.1:5000/tools/busybox@sha256:…`), normalised the way Docker and
//! containerd do: Docker Hub is `docker.io`, its one-word names live under
//! `library/`, and a reference without tag or digest means `:latest`.

use std::fmt;

/// The registry Docker Hub images come from.
pub const DOCKER_HUB: &str = "docker.io";
const DEFAULT_TAG: &str = "latest";

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {reference:?}: {reason}")]
pub struct ReferenceError {
    /// The reference as written.
    pub reference: String,
    /// Which part is wrong.
    pub reason: InvalidPart,
}

/// The part of a reference that breaks the rules Docker applies, named
/// with the offending text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPart {
    /// Nothing was given.
    #[error("it is empty")]
    Empty,
    /// Longer than a registry, a repository, a tag and a digest can be.
    #[error("it is too long")]
    TooLong,
    /// A registry with no repository after it (`example.com/`).
    #[error("the repository name is missing")]
    MissingRepository,
    /// `[::1` without the `]`.
    #[error("registry {registry:?} lacks the closing ']'")]
    UnclosedAddress {
        /// The registry part.
        registry: String,
    },
    /// The port after the registry host is not a `u16`.
    #[error("registry port {port:?} is not a number")]
    Port {
        /// The text after the ':'.
        port: String,
    },
    /// The registry host has characters a host name cannot have.
    #[error("registry {registry:?} is not a host name")]
    Host {
        /// The registry part.
        registry: String,
    },
    /// A repository path component breaks the lowercase-and-separators rule.
    #[error(
        "repository component {component:?} must be lowercase letters and digits, \
         joined by '.', '_', '__' or '-'"
    )]
    Component {
        /// The component.
        component: String,
    },
    /// The tag breaks the tag grammar.
    #[error(
        "tag {tag:?} must be 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
    )]
    Tag {
        /// The tag.
        tag: String,
    },
    /// The digest has no ':' between algorithm and hex.
    #[error("digest {digest:?} is not ALGORITHM:HEX")]
    DigestShape {
        /// The digest.
        digest: String,
    },
    /// The digest algorithm is not one registries use.
    #[error("digest algorithm {algorithm:?} is not sha256, sha384 or sha512")]
    DigestAlgorithm {
        /// The algorithm.
        algorithm: String,
    },
    /// The hex part has the wrong length or case.
    #[error("digest {digest:?} needs {length} lowercase hex digits after {algorithm}:")]
    DigestHex {
        /// The digest.
        digest: String,
        /// The hex digits its algorithm needs.
        length: usize,
        /// The algorithm.
        algorithm: String,
    },
}

impl ImageRef {
    /// Parses and normalises `text`.
    pub fn parse(text: &str) -> Result<Self, ReferenceError> {
        let fail = |reason: InvalidPart| ReferenceError {
            reference: text.to_string(),
            reason,
        };
        if text.is_empty() {
            return Err(fail(InvalidPart::Empty));
        }
        if text.len() > 255 + 128 + 72 {
            return Err(fail(InvalidPart::TooLong));
        }
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => (rest, Some(parse_digest(digest).map_err(fail)?)),
            None => (text, None),
        };
        // A tag follows the last ':' after the last '/': a ':' before it
        // belongs to a registry port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let tag = &rest[last_slash + i + 1..];
                check_tag(tag).map_err(fail)?;
                (&rest[..last_slash + i], Some(tag.to_string()))
            }
            None => (rest, None),
        };
        let (registry, path) = split_registry(name);
        if path.is_empty() {
            return Err(fail(InvalidPart::MissingRepository));
        }
        for component in path.split('/') {
            check_path_component(component).map_err(fail)?;
        }
        if let Some(registry) = registry {
            check_registry(registry).map_err(fail)?;
        }
        let registry = match registry {
            None | Some("index.docker.io" | "registry-1.docker.io") => DOCKER_HUB,
            Some(other) => other,
        };
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        let tag = match (tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (tag, _) => tag,
        };
        Ok(Self {
            registry: registry.to_string(),
            repository,
            tag,
            digest,
        })
    }

    /// The registry host, with port if any (`docker.io`, `127.0.0.1:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry (`library/busybox`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The same image pinned to `digest` (a manifest of an index).
    pub fn with_digest(&self, digest: &str) -> Self {
        Self {
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }

    /// The reference as oci-client wants it. A digest wins over a tag:
    /// what is fetched is what was pinned.
    pub(crate) fn to_oci(&self) -> oci_client::Reference {
        match (&self.tag, &self.digest) {
            (Some(tag), Some(digest)) => oci_client::Reference::with_tag_and_digest(
                self.registry.clone(),
                self.repository.clone(),
                tag.clone(),
                digest.clone(),
            ),
            (_, Some(digest)) => oci_client::Reference::with_digest(
                self.registry.clone(),
                self.repository.clone(),
                digest.clone(),
            ),
            (tag, None) => oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                tag.clone().unwrap_or_else(|| DEFAULT_TAG.to_string()),
            ),
        }
    }
}

/// The full normalised name, as containerd's image store keys it:
/// `docker.io/library/busybox:latest`.
impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for ImageRef {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Splits off the registry: the first component is one when it looks like
/// a host (has a '.' or a ':', or is `localhost`), as Docker decides.
fn split_registry(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

fn check_registry(registry: &str) -> Result<(), InvalidPart> {
    let (host, port) = match registry.strip_prefix('[') {
        // An IPv6 address: `[::1]:5000`.
        Some(rest) => match rest.split_once(']') {
            Some((address, after)) => (address, after.strip_prefix(':')),
            None => {
                return Err(InvalidPart::UnclosedAddress {
                    registry: registry.to_owned(),
                });
            }
        },
        None => match registry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        },
    };
    if let Some(port) = port
        && port.parse::<u16>().is_err()
    {
        return Err(InvalidPart::Port {
            port: port.to_owned(),
        });
    }
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
    if valid {
        Ok(())
    } else {
        Err(InvalidPart::Host {
            registry: registry.to_owned(),
        })
    }
}

/// A path component: lowercase letters and digits, separated by one '.',
/// one or two '_', or any number of '-'.
fn check_path_component(component: &str) -> Result<(), InvalidPart> {
    let bad = || {
        Err(InvalidPart::Component {
            component: component.to_owned(),
        })
    };
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return bad();
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let ok = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !ok {
            return bad();
        }
    }
    Ok(())
}

fn check_tag(tag: &str) -> Result<(), InvalidPart> {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok && tag.len() <= 128 {
        Ok(())
    } else {
        Err(InvalidPart::Tag {
            tag: tag.to_owned(),
        })
    }
}

fn parse_digest(digest: &str) -> Result<String, InvalidPart> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(InvalidPart::DigestShape {
            digest: digest.to_owned(),
        });
    };
    let length = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        other => {
            return Err(InvalidPart::DigestAlgorithm {
                algorithm: other.to_owned(),
            });
        }
    };
    if hex.len() != length
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(InvalidPart::DigestHex {
            digest: digest.to_owned(),
            length,
            algorithm: algorithm.to_owned(),
        });
    }
    Ok(digest.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalises_like_docker() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("rancher/os-console", "docker.io/rancher/os-console:latest"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            ("index.docker.io/busybox:1", "docker.io/library/busybox:1"),
            ("quay.io/coreos/etcd:v3.5", "quay.io/coreos/etcd:v3.5"),
            ("localhost/tools", "localhost/tools:latest"),
            (
                "127.0.0.1:5000/test/busybox:v1",
                "127.0.0.1:5000/test/busybox:v1",
            ),
            ("127.0.0.1:5000/busybox", "127.0.0.1:5000/busybox:latest"),
            ("[::1]:5000/busybox:1", "[::1]:5000/busybox:1"),
            (
                "a.b/c/d/e_f__g-h--i:tag_1.2-3",
                "a.b/c/d/e_f__g-h--i:tag_1.2-3",
            ),
        ];
        for (input, expected) in cases {
            let parsed = ImageRef::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(parsed.to_string(), expected, "{input}");
        }
    }

    #[test]
    fn a_digest_pins_and_drops_the_default_tag() {
        let pinned = ImageRef::parse(&format!("busybox@{SHA}")).unwrap();
        assert_eq!(pinned.tag(), None);
        assert_eq!(pinned.digest(), Some(SHA));
        assert_eq!(
            pinned.to_string(),
            format!("docker.io/library/busybox@{SHA}")
        );
        let both = ImageRef::parse(&format!("127.0.0.1:5000/x:1@{SHA}")).unwrap();
        assert_eq!(both.tag(), Some("1"));
        assert_eq!(both.registry(), "127.0.0.1:5000");
        assert_eq!(both.to_oci().digest(), Some(SHA));
    }

    #[test]
    fn splits_registry_repository_and_tag() {
        let r = ImageRef::parse("registry.example.com:8443/team/app:2.0").unwrap();
        assert_eq!(r.registry(), "registry.example.com:8443");
        assert_eq!(r.repository(), "team/app");
        assert_eq!(r.tag(), Some("2.0"));
        let oci = r.to_oci();
        assert_eq!(oci.registry(), "registry.example.com:8443");
        assert_eq!(oci.repository(), "team/app");
        assert_eq!(oci.tag(), Some("2.0"));
    }

    #[test]
    fn rejects_what_docker_rejects_and_says_why() {
        let cases = [
            ("", "empty"),
            ("Busybox", "lowercase"),
            ("busybox:", "tag"),
            ("busybox:-x", "tag"),
            ("busybox@sha256:abc", "64 lowercase hex"),
            ("busybox@md5:0123", "algorithm"),
            ("busybox@nodigest", "ALGORITHM:HEX"),
            ("a//b", "lowercase"),
            ("a/b-", "lowercase"),
            ("a/b...c", "lowercase"),
            ("host:port/x", "port"),
            ("example.com/", "missing"),
        ];
        for (input, reason) in cases {
            let error = ImageRef::parse(input).expect_err(input);
            assert_eq!(error.reference, input);
            let said = error.reason.to_string();
            assert!(
                said.contains(reason),
                "{input}: {said:?} should mention {reason:?}"
            );
        }
    }

    #[test]
    fn the_error_names_the_part_and_its_text() {
        let error = ImageRef::parse("host:port/x").expect_err("a word as port");
        assert_eq!(
            error.reason,
            InvalidPart::Port {
                port: "port".into()
            }
        );
        let error =
            ImageRef::parse(&format!("x@sha256:{}", "A".repeat(64))).expect_err("upper hex");
        assert!(matches!(
            error.reason,
            InvalidPart::DigestHex { length: 64, ref algorithm, .. } if algorithm == "sha256"
        ));
        assert_eq!(
            error.to_string(),
            format!(
                "invalid image reference \"x@sha256:{0}\": digest \"sha256:{0}\" needs 64 \
                 lowercase hex digits after sha256:",
                "A".repeat(64)
            )
        );
    }

    #[test]
    fn parses_from_str() {
        let r: ImageRef = "alpine:3.19".parse().unwrap();
        assert_eq!(r.repository(), "library/alpine");
    }
}
