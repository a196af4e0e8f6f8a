//! `url:URL`: user-data from an `http://` or `https://` URL.

use super::http::HttpClient;
use super::{BoxFuture, Datasource, DatasourceError, Environment};
use crate::userdata::{Metadata, Payload, UserData};

/// Fetches `url`: 404 is nothing there, another non-2xx status an error.
pub(crate) async fn fetch_url(
    client: &HttpClient,
    url: &str,
) -> Result<Option<UserData>, DatasourceError> {
    let response = client.get(url, &[]).await?;
    match response.status {
        404 => Ok(None),
        _ if response.is_success() => Ok(Some(UserData {
            payload: Payload::from_bytes(&response.body)?,
            metadata: Metadata::default(),
        })),
        status => Err(DatasourceError::Status {
            url: url.to_owned(),
            status,
        }),
    }
}

/// `url:URL`.
#[derive(Debug, Clone)]
pub struct UrlSource {
    url: String,
    client: HttpClient,
}

impl UrlSource {
    /// The source for `url`.
    pub fn new(url: &str, env: &Environment) -> Self {
        Self {
            url: url.to_owned(),
            client: env.http.clone(),
        }
    }
}

impl Datasource for UrlSource {
    fn name(&self) -> String {
        format!("url:{}", self.url)
    }

    fn needs_network(&self) -> bool {
        true
    }

    fn fetch(&self) -> BoxFuture<'_, Result<Option<UserData>, DatasourceError>> {
        Box::pin(fetch_url(&self.client, &self.url))
    }
}
