//! `cmdline`: user-data from the URL in `cloud-config-url=` on the kernel
//! command line (as coreos-cloudinit and RancherOS read it).

use super::http::HttpClient;
use super::{BoxFuture, Datasource, DatasourceError, Environment};
use crate::parse::cmdline::parse_cmdline;
use crate::userdata::UserData;

/// The kernel parameter naming the URL.
pub const URL_PARAM: &str = "cloud-config-url";

/// `cmdline`.
#[derive(Debug, Clone)]
pub struct CmdlineSource {
    url: Option<String>,
    client: HttpClient,
}

impl CmdlineSource {
    /// The source for the environment's command line.
    pub fn new(env: &Environment) -> Self {
        let url = parse_cmdline(&env.cmdline)
            .into_iter()
            .rev()
            .filter(|param| param.key == URL_PARAM)
            .find_map(|param| param.value)
            .map(|url| url.trim_matches('"').to_owned());
        Self {
            url,
            client: env.http.clone(),
        }
    }
}

impl Datasource for CmdlineSource {
    fn name(&self) -> String {
        "cmdline".to_owned()
    }

    fn needs_network(&self) -> bool {
        self.url.is_some()
    }

    fn fetch(&self) -> BoxFuture<'_, Result<Option<UserData>, DatasourceError>> {
        Box::pin(async move {
            match &self.url {
                Some(url) => super::url::fetch_url(&self.client, url).await,
                None => Ok(None),
            }
        })
    }
}
