//! `ec2`: the EC2 instance metadata service, IMDSv2 only: a session token
//! from `PUT /latest/api/token`, then every read carries it.

use super::http::HttpClient;
use super::{BoxFuture, Datasource, DatasourceError, Environment};
use crate::userdata::{Metadata, Payload, UserData};

/// Where the service answers on EC2.
pub const DEFAULT_BASE_URL: &str = "http://169.254.169.254";

/// The token header for reads.
pub const TOKEN_HEADER: &str = "X-aws-ec2-metadata-token";

/// The TTL header the token request must carry.
pub const TOKEN_TTL_HEADER: &str = "X-aws-ec2-metadata-token-ttl-seconds";

/// `ec2`.
#[derive(Debug, Clone)]
pub struct Ec2 {
    base_url: String,
    client: HttpClient,
}

impl Ec2 {
    /// The source, against `base_url` (tests pass a local server).
    pub fn new(base_url: &str, env: &Environment) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            client: env.http.clone(),
        }
    }

    async fn token(&self) -> Result<Option<String>, DatasourceError> {
        let url = format!("{}/latest/api/token", self.base_url);
        let response = match self
            .client
            .request("PUT", &url, &[(TOKEN_TTL_HEADER, "21600")])
            .await
        {
            Ok(response) => response,
            // Nothing answers: this is not EC2, which is not an error.
            Err(error) if error.is_unreachable() => {
                tracing::info!(%error, "no EC2 metadata service");
                return Ok(None);
            }
            Err(error) => return Err(error.into()),
        };
        if !response.is_success() {
            return Err(DatasourceError::Status {
                url,
                status: response.status,
            });
        }
        Ok(Some(
            String::from_utf8_lossy(&response.body).trim().to_owned(),
        ))
    }

    /// GET a path with the token; 404 is `None`.
    async fn read(&self, token: &str, path: &str) -> Result<Option<Vec<u8>>, DatasourceError> {
        let url = format!("{}/latest/{path}", self.base_url);
        let response = self.client.get(&url, &[(TOKEN_HEADER, token)]).await?;
        match response.status {
            404 => Ok(None),
            _ if response.is_success() => Ok(Some(response.body)),
            status => Err(DatasourceError::Status { url, status }),
        }
    }

    async fn read_text(&self, token: &str, path: &str) -> Result<Option<String>, DatasourceError> {
        Ok(self
            .read(token, path)
            .await?
            .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
            .filter(|text| !text.is_empty()))
    }
}

impl Datasource for Ec2 {
    fn name(&self) -> String {
        "ec2".to_owned()
    }

    fn needs_network(&self) -> bool {
        true
    }

    fn fetch(&self) -> BoxFuture<'_, Result<Option<UserData>, DatasourceError>> {
        Box::pin(async move {
            let Some(token) = self.token().await? else {
                return Ok(None);
            };
            let payload = match self.read(&token, "user-data").await? {
                Some(bytes) => Payload::from_bytes(&bytes)?,
                None => Payload::Empty,
            };
            let metadata = Metadata {
                hostname: self.read_text(&token, "meta-data/hostname").await?,
                instance_id: self.read_text(&token, "meta-data/instance-id").await?,
                local_ipv4: self
                    .read_text(&token, "meta-data/local-ipv4")
                    .await?
                    .and_then(|ip| ip.parse().ok()),
                public_keys: self
                    .read_text(&token, "meta-data/public-keys/0/openssh-key")
                    .await?
                    .into_iter()
                    .collect(),
            };
            Ok(Some(UserData { payload, metadata }))
        })
    }
}
