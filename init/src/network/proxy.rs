//! `rancher.network.http_proxy` and friends, as the environment services
//! get: both spellings, since tools disagree on which they read.

use os_config::schema::Network;

/// `NAME=value` entries for every proxy setting there is.
pub fn environment(network: &Network) -> Vec<String> {
    let mut env = Vec::new();
    for (name, value) in [
        ("HTTP_PROXY", &network.http_proxy),
        ("HTTPS_PROXY", &network.https_proxy),
        ("NO_PROXY", &network.no_proxy),
    ] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            env.push(format!("{name}={value}"));
            env.push(format!("{}={value}", name.to_ascii_lowercase()));
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_of_each_setting() {
        let network: Network = serde_norway::from_str(
            "{http_proxy: 'http://proxy:3128', no_proxy: 'localhost,10.0.0.0/8'}",
        )
        .unwrap();
        assert_eq!(
            environment(&network),
            vec![
                "HTTP_PROXY=http://proxy:3128",
                "http_proxy=http://proxy:3128",
                "NO_PROXY=localhost,10.0.0.0/8",
                "no_proxy=localhost,10.0.0.0/8",
            ]
        );
        assert!(environment(&Network::default()).is_empty());
    }
}
