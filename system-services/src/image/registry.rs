//! The registry side, through oci-client: manifests by tag or digest and
//! blobs as byte streams, resumable at an offset. TLS is rustls with ring
//! (no C toolchain beyond ring's own, small assembly); the CA roots come
//! from the system (`/etc/ssl/certs/ca-certificates.crt`).

use std::fmt;

use futures::stream::BoxStream;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;

use super::manifest::{ACCEPTED, Descriptor};
use super::reference::ImageRef;

/// Who to be at the registry.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credentials {
    #[default]
    Anonymous,
    /// HTTP basic authentication, or the credentials a token server asks
    /// for.
    Basic { username: String, password: String },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::Basic { username, .. } => write!(f, "Basic({username}, <password>)"),
        }
    }
}

/// How to reach registries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryOptions {
    pub credentials: Credentials,
    /// Registries (`host:port`, as written in references) spoken to over
    /// plain HTTP, such as a local or lab registry without TLS.
    pub plain_http: Vec<String>,
    /// CA certificates (PEM) trusted besides the system's, for registries
    /// with a private CA.
    pub ca_certificates: Vec<String>,
}

/// A byte stream of one blob.
pub type BlobStream = BoxStream<'static, Result<prost::bytes::Bytes, std::io::Error>>;

/// One registry conversation: oci-client keeps the token it obtains.
pub struct Registry {
    client: oci_client::Client,
    auth: RegistryAuth,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    pub fn new(options: &RegistryOptions) -> Result<Self, OciDistributionError> {
        // reqwest's rustls is built without a provider: ring, installed
        // once per process (a second install is refused, harmlessly).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = ClientConfig {
            protocol: if options.plain_http.is_empty() {
                ClientProtocol::Https
            } else {
                ClientProtocol::HttpsExcept(options.plain_http.clone())
            },
            extra_root_certificates: options
                .ca_certificates
                .iter()
                .map(|pem| Certificate {
                    encoding: CertificateEncoding::Pem,
                    data: pem.as_bytes().to_vec(),
                })
                .collect(),
            // Indexes are resolved here, not by oci-client.
            platform_resolver: None,
            connect_timeout: Some(std::time::Duration::from_secs(30)),
            read_timeout: Some(std::time::Duration::from_secs(120)),
            ..ClientConfig::default()
        };
        let auth = match &options.credentials {
            Credentials::Anonymous => RegistryAuth::Anonymous,
            Credentials::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
        };
        Ok(Self {
            client: oci_client::Client::try_from(config)?,
            auth,
        })
    }

    /// The manifest or index `reference` names: its bytes and digest
    /// (checked against the bytes, and against the reference's digest).
    pub async fn manifest(
        &self,
        reference: &ImageRef,
    ) -> Result<(Vec<u8>, String), OciDistributionError> {
        let (bytes, digest) = self
            .client
            .pull_manifest_raw(&reference.to_oci(), &self.auth, ACCEPTED)
            .await?;
        Ok((bytes.to_vec(), digest))
    }

    /// The blob `descriptor` of `reference`'s repository from byte
    /// `offset` on. The flag says whether the registry honoured the range;
    /// when it did not, the stream starts at byte 0.
    pub async fn blob(
        &self,
        reference: &ImageRef,
        descriptor: &Descriptor,
        offset: u64,
    ) -> Result<(BlobStream, bool), OciDistributionError> {
        let oci = reference.to_oci();
        let layer = OciDescriptor {
            media_type: descriptor.media_type.clone(),
            digest: descriptor.digest.clone(),
            size: descriptor.size,
            ..OciDescriptor::default()
        };
        if offset == 0 {
            let stream = self.client.pull_blob_stream(&oci, &layer).await?;
            return Ok((stream.stream, false));
        }
        match self
            .client
            .pull_blob_stream_partial(&oci, &layer, offset, None)
            .await?
        {
            oci_client::client::BlobResponse::Partial(stream) => Ok((stream.stream, true)),
            oci_client::client::BlobResponse::Full(stream) => Ok((stream.stream, false)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_print_the_password() {
        let credentials = Credentials::Basic {
            username: "ros".into(),
            password: "hunter2".into(),
        };
        let options = RegistryOptions {
            credentials,
            ..RegistryOptions::default()
        };
        let text = format!("{options:?}");
        assert!(text.contains("ros"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}
