//! One error type for pulls and root file systems: which image, which
//! step, what went wrong, with the registry's and containerd's answers
//! sorted into what a person can act on.

use oci_client::errors::{OciDistributionError, OciErrorCode};
use tonic::Code;

use super::manifest::ManifestError;
use super::reference::ReferenceError;

/// A pull or root file system step that failed.
#[derive(Debug, thiserror::Error)]
#[error("image {reference}: {step}: {failure}")]
pub struct ImageError {
    /// The image, normalised when it could be parsed.
    pub reference: String,
    pub step: String,
    pub failure: Failure,
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("{0}")]
    Reference(ReferenceError),
    /// The registry has no such repository, tag or blob.
    #[error("not found in the registry ({0})")]
    NotFound(String),
    #[error("the registry refused access ({0})")]
    Unauthorized(String),
    #[error("registry: {}", chain(.0))]
    Registry(OciDistributionError),
    #[error("reading from the registry: {}", chain(.0))]
    Transfer(std::io::Error),
    #[error("{0}")]
    Manifest(ManifestError),
    #[error("containerd: {message} ({code:?})")]
    Containerd { code: Code, message: String },
    #[error("the image is not in containerd; pull it first")]
    NotPulled,
    #[error("the layer unpacked to {actual}, but the image config says {expected}")]
    DiffId { expected: String, actual: String },
    /// An image archive (`docker save`, OCI layout) that cannot be loaded.
    #[error("{0}")]
    Archive(super::archive::ArchiveError),
}

impl ImageError {
    pub(crate) fn new(reference: &str, step: impl Into<String>, failure: Failure) -> Self {
        Self {
            reference: reference.to_string(),
            step: step.into(),
            failure,
        }
    }

    /// The registry does not have what was asked for.
    pub fn is_not_found(&self) -> bool {
        matches!(self.failure, Failure::NotFound(_))
    }

    /// A gRPC code for callers that speak in them (the runtime trait):
    /// containerd's own, or the nearest one.
    pub fn code(&self) -> Code {
        match &self.failure {
            Failure::Containerd { code, .. } => *code,
            Failure::NotFound(_) => Code::NotFound,
            Failure::NotPulled => Code::FailedPrecondition,
            Failure::Unauthorized(_) => Code::PermissionDenied,
            Failure::Reference(_) => Code::InvalidArgument,
            Failure::Registry(_) | Failure::Transfer(_) => Code::Unavailable,
            Failure::Manifest(_) | Failure::DiffId { .. } => Code::DataLoss,
            Failure::Archive(error) => error.code(),
        }
    }
}

/// The error and its sources, `: `-separated: reqwest says only "error
/// sending request"; the certificate or connection problem is a source.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.ends_with(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Self {
        Self::Containerd {
            code: crate::containerd::code_of(&status),
            message: status.message().to_string(),
        }
    }
}

impl From<ManifestError> for Failure {
    fn from(error: ManifestError) -> Self {
        Self::Manifest(error)
    }
}

impl From<OciDistributionError> for Failure {
    /// Sorts registry answers: missing things and refused credentials get
    /// their own kinds, everything else is passed on as is.
    fn from(error: OciDistributionError) -> Self {
        match &error {
            OciDistributionError::RegistryError { envelope, .. } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                let messages = envelope
                    .errors
                    .iter()
                    .map(|e| e.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; ");
                let missing = codes.iter().any(|c| {
                    matches!(
                        c,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::BlobUnknown
                            | OciErrorCode::NotFound
                    )
                });
                let refused = codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied));
                if missing {
                    Self::NotFound(messages)
                } else if refused {
                    Self::Unauthorized(messages)
                } else {
                    Self::Registry(error)
                }
            }
            OciDistributionError::ServerError { code: 404, url, .. }
            | OciDistributionError::ImageManifestNotFoundError(url) => Self::NotFound(url.clone()),
            OciDistributionError::UnauthorizedError { url }
            | OciDistributionError::ServerError {
                code: 401 | 403,
                url,
                ..
            } => Self::Unauthorized(url.clone()),
            OciDistributionError::AuthenticationFailure(reason) => {
                Self::Unauthorized(reason.clone())
            }
            _ => Self::Registry(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(code: &str) -> OciDistributionError {
        let body = format!(r#"{{"errors":[{{"code":"{code}","message":"manifest unknown"}}]}}"#);
        OciDistributionError::RegistryError {
            envelope: serde_json::from_str(&body).unwrap(),
            url: "http://127.0.0.1:5000/v2/x/manifests/nope".into(),
        }
    }

    #[test]
    fn registry_answers_are_sorted() {
        assert!(matches!(
            Failure::from(envelope("MANIFEST_UNKNOWN")),
            Failure::NotFound(m) if m == "manifest unknown"
        ));
        assert!(matches!(
            Failure::from(envelope("NAME_UNKNOWN")),
            Failure::NotFound(_)
        ));
        assert!(matches!(
            Failure::from(envelope("DENIED")),
            Failure::Unauthorized(_)
        ));
        assert!(matches!(
            Failure::from(envelope("UNSUPPORTED")),
            Failure::Registry(_)
        ));
        let unauthorized = OciDistributionError::UnauthorizedError { url: "u".into() };
        assert!(matches!(Failure::from(unauthorized), Failure::Unauthorized(u) if u == "u"));
        let gone = OciDistributionError::ServerError {
            code: 404,
            url: "u".into(),
            message: String::new(),
        };
        assert!(matches!(Failure::from(gone), Failure::NotFound(_)));
    }

    #[test]
    fn a_transfer_error_shows_its_sources() {
        #[derive(Debug, thiserror::Error)]
        #[error("error sending request")]
        struct Outer(#[source] std::io::Error);
        let inner = std::io::Error::other("invalid peer certificate: UnknownIssuer");
        let failure = Failure::Transfer(std::io::Error::other(Outer(inner)));
        assert_eq!(
            failure.to_string(),
            "reading from the registry: error sending request: \
             invalid peer certificate: UnknownIssuer"
        );
    }

    #[test]
    fn the_message_names_image_step_and_cause() {
        let error = ImageError::new(
            "127.0.0.1:5000/test/busybox:nope",
            "fetching the manifest",
            Failure::from(envelope("MANIFEST_UNKNOWN")),
        );
        assert!(error.is_not_found());
        assert_eq!(error.code(), Code::NotFound);
        assert_eq!(
            error.to_string(),
            "image 127.0.0.1:5000/test/busybox:nope: fetching the manifest: \
             not found in the registry (manifest unknown)"
        );
        let containerd = ImageError::new(
            "docker.io/library/busybox:latest",
            "recording the image",
            tonic::Status::unavailable("connection refused").into(),
        );
        assert_eq!(
            containerd.code(),
            Code::Unavailable,
            "containerd's code is kept"
        );
        assert_eq!(
            containerd.to_string(),
            "image docker.io/library/busybox:latest: recording the image: \
             containerd: connection refused (Unavailable)"
        );
    }
}
