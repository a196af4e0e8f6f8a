//! `cmdline`: user-data from the URL in `cloud-config-url=` on the kernel
//! command line (as coreos-cloudinit and RancherOS read it: `_` for `-` in
//! the name, anywhere on the line, the last one winning). It is fetched
//! with the `url:` source's client, so the same retries and limits apply,
//! once the network is up: with a URL this source needs the network.

use super::http::HttpClient;
use super::{BoxFuture, Datasource, DatasourceError, Environment};
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
        let url = (env.cmdline.params().iter().rev())
            .filter(|param| param.key.replace('_', "-") == URL_PARAM)
            .find_map(|param| param.value.as_deref().filter(|url| !url.is_empty()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Cmdline;

    fn url_of(cmdline: &str) -> Option<String> {
        CmdlineSource::new(&Environment::system(Cmdline::parse(cmdline))).url
    }

    #[test]
    fn finds_the_url_as_rancheros_did() {
        assert_eq!(url_of("quiet"), None);
        assert_eq!(
            url_of("cloud-config-url=http://a/1 quiet cloud_config_url=\"http://b/2\""),
            Some("http://b/2".to_owned())
        );
        assert_eq!(url_of("cloud-config-url= cloud-config-url"), None);
        assert_eq!(
            url_of("quiet -- cloud-config-url=http://10.0.2.2:8000/x"),
            Some("http://10.0.2.2:8000/x".to_owned())
        );
        let env = Environment::system(Cmdline::parse("cloud-config-url=http://10.0.2.2/x"));
        assert!(CmdlineSource::new(&env).needs_network());
        assert!(!CmdlineSource::new(&Environment::system(Cmdline::default())).needs_network());
    }
}
