//! Secrets kept out of what is shown: `ros config export` prints the
//! stored or merged configuration as YAML with secrets replaced unless the
//! caller asks for them ([`export`]); `ros config get` replaces the secrets
//! below the key asked for, but prints a secret asked for by its own key
//! ([`get_redacted`]); logs use [`redacted_yaml`].

use serde_norway::Value;

use crate::parse::keypath::KeyPath;
use crate::tree;

/// What a secret is replaced with.
pub const REDACTED: &str = "<redacted>";

/// Keys whose values are secret.
pub const SECRET_KEYS: &[&str] = &[
    "rancher.password",
    "rancher.cluster.token",
    "rancher.docker.server_key",
    "rancher.docker.ca_key",
    "rancher.system_docker.server_key",
    "rancher.system_docker.ca_key",
];

/// Environment sections: maps (`NAME: value`) or lists (`NAME=value`).
const ENVIRONMENTS: &[&[&str]] = &[
    &["rancher", "environment"],
    &["rancher", "cluster", "environment"],
    &["rancher", "docker", "environment"],
    &["rancher", "system_docker", "environment"],
];

/// Agent flags whose next argument (or `=value`) is a join token.
const TOKEN_FLAGS: &[&str] = &["--token", "-t", "--agent-token"];

/// Replaces every secret in `value`: the keys above, SSH host private keys
/// (`rancher.ssh.keys.*` except `*.pub`), registry credentials, environment
/// variables named like secrets (`K3S_TOKEN`, `*PASSWORD*`, ...), token
/// flags in the cluster agent's arguments and service commands, and the
/// password in proxy URLs (`http://user:<redacted>@proxy:3128`).
pub fn redact(value: &mut Value) {
    for key in SECRET_KEYS {
        // Every entry parses (a unit test says so).
        let Ok(path) = KeyPath::parse(key) else {
            continue;
        };
        if tree::get(value, &path).is_some_and(|v| !v.is_null()) {
            // The path exists, so setting it cannot fail.
            let _ = tree::set(value, &path, Value::from(REDACTED));
        }
    }
    if let Some(Value::Mapping(keys)) = get_mut(value, &["rancher", "ssh", "keys"]) {
        for (name, key) in keys.iter_mut() {
            let public = name.as_str().is_some_and(|n| n.ends_with(".pub"));
            if !public {
                *key = Value::from(REDACTED);
            }
        }
    }
    if let Some(Value::Mapping(registries)) = get_mut(value, &["rancher", "registry_auths"]) {
        for (_, auth) in registries.iter_mut() {
            if let Value::Mapping(fields) = auth {
                for (field, secret) in fields.iter_mut() {
                    if matches!(
                        field.as_str(),
                        Some("password" | "auth" | "identitytoken" | "registrytoken")
                    ) {
                        *secret = Value::from(REDACTED);
                    }
                }
            }
        }
    }
    for keys in ENVIRONMENTS {
        if let Some(environment) = get_mut(value, keys) {
            redact_environment(environment);
        }
    }
    for keys in [
        ["rancher", "network", "http_proxy"],
        ["rancher", "network", "https_proxy"],
    ] {
        if let Some(url) = get_mut(value, &keys) {
            redact_url(url);
        }
    }
    if let Some(args) = get_mut(value, &["rancher", "cluster", "args"]) {
        redact_token_flags(args);
    }
    // The cluster agent's derived definition carries the cluster's
    // environment and arguments; a user's own service may carry them too.
    if let Some(Value::Mapping(services)) = get_mut(value, &["rancher", "services"]) {
        for (_, service) in services.iter_mut() {
            if let Some(environment) = service.get_mut("environment") {
                redact_environment(environment);
            }
            for key in ["command", "entrypoint"] {
                if let Some(command) = service.get_mut(key) {
                    redact_token_flags(command);
                }
            }
        }
    }
}

/// True for a variable that holds a secret by its name; `*_FILE` names a
/// file that holds one, which is not itself secret.
fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_uppercase();
    !name.ends_with("_FILE")
        && [
            "TOKEN",
            "PASSWORD",
            "PASSWD",
            "SECRET",
            "PRIVATE_KEY",
            "CREDENTIAL",
        ]
        .iter()
        .any(|word| name.contains(word))
}

fn redact_environment(environment: &mut Value) {
    match environment {
        Value::Mapping(variables) => {
            for (name, variable) in variables.iter_mut() {
                if name.as_str().is_some_and(is_secret_name) {
                    *variable = Value::from(REDACTED);
                } else {
                    redact_url(variable);
                }
            }
        }
        Value::Sequence(variables) => {
            for variable in variables {
                let Some((name, text)) = variable.as_str().and_then(|v| v.split_once('=')) else {
                    continue;
                };
                let shown = if is_secret_name(name) {
                    Some(REDACTED.to_owned())
                } else {
                    url_without_password(text)
                };
                if let Some(shown) = shown {
                    *variable = Value::from(format!("{name}={shown}"));
                }
            }
        }
        _ => {}
    }
}

/// Redacts the password of a URL string with credentials.
fn redact_url(url: &mut Value) {
    if let Some(shown) = url.as_str().and_then(url_without_password) {
        *url = Value::from(shown);
    }
}

/// `scheme://user:<redacted>@host...` for a URL with a password, and
/// `scheme://<redacted>@host...` for one with a bare user part (often a
/// token); `None` for text with no credentials.
fn url_without_password(text: &str) -> Option<String> {
    let (scheme, rest) = text.split_once("://")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (user_info, host) = rest[..authority_end].rsplit_once('@')?;
    let shown_user = match user_info.split_once(':') {
        Some((user, _password)) => format!("{user}:{REDACTED}"),
        None => REDACTED.to_owned(),
    };
    Some(format!(
        "{scheme}://{shown_user}@{host}{}",
        &rest[authority_end..]
    ))
}

/// Redacts the token after `--token`, `-t` or `--agent-token` in an
/// argument list, or in a command line given as one string.
fn redact_token_flags(command: &mut Value) {
    match command {
        Value::Sequence(args) => {
            let mut next_is_token = false;
            for arg in args {
                let Some(text) = arg.as_str() else {
                    next_is_token = false;
                    continue;
                };
                let shown = shown_arg(text, next_is_token);
                next_is_token = TOKEN_FLAGS.contains(&text);
                if let Some(shown) = shown {
                    *arg = Value::from(shown);
                }
            }
        }
        Value::String(line) => {
            let mut next_is_token = false;
            let mut changed = false;
            let words: Vec<String> = line
                .split_whitespace()
                .map(|word| {
                    let shown = shown_arg(word, next_is_token);
                    next_is_token = TOKEN_FLAGS.contains(&word);
                    changed |= shown.is_some();
                    shown.unwrap_or_else(|| word.to_owned())
                })
                .collect();
            if changed {
                *line = words.join(" ");
            }
        }
        _ => {}
    }
}

/// What to show for one argument, when it is (or holds) a token.
fn shown_arg(arg: &str, is_token: bool) -> Option<String> {
    if is_token {
        return Some(REDACTED.to_owned());
    }
    let (flag, _token) = arg.split_once('=')?;
    TOKEN_FLAGS
        .contains(&flag)
        .then(|| format!("{flag}={REDACTED}"))
}

fn get_mut<'a>(value: &'a mut Value, keys: &[&str]) -> Option<&'a mut Value> {
    keys.iter().try_fold(value, |node, key| node.get_mut(*key))
}

/// The YAML text for `value`, secrets redacted unless `private`.
pub fn export(mut value: Value, private: bool) -> Result<String, serde_norway::Error> {
    if !private {
        redact(&mut value);
    }
    serde_norway::to_string(&value)
}

/// The YAML text for `value` with every secret redacted: for logs, such
/// as the configuration PID 1 prints under `rancher.debug`.
pub fn redacted_yaml(value: &Value) -> String {
    let mut value = value.clone();
    redact(&mut value);
    serde_norway::to_string(&value)
        .unwrap_or_else(|error| format!("<configuration not shown: {error}>\n"))
}

/// The value at `path` in `value`, with every secret below it redacted;
/// a secret asked for by its own path is returned as it is, since the
/// caller asked for exactly that. `None` when `path` is not there.
pub fn get_redacted(value: &Value, path: &KeyPath) -> Option<Value> {
    let mut redacted = value.clone();
    redact(&mut redacted);
    let shown = tree::get(&redacted, path)?;
    let original = tree::get(value, path)?;
    // Redaction changed this very scalar (all of it, or the password in
    // it): it is the secret asked for. A changed map or list is not.
    let scalar = !matches!(shown, Value::Mapping(_) | Value::Sequence(_));
    let asked_for_the_secret = scalar && original != shown;
    Some(if asked_for_the_secret {
        original.clone()
    } else {
        shown.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_every_secret_and_nothing_else() {
        let config: Value = serde_norway::from_str(
            r#"
hostname: node1
rancher:
  password: hunter2
  cluster: {server: "https://k8s:6443", token: K10abc}
  ssh:
    port: 22
    keys:
      ssh_host_ed25519_key: "-----BEGIN OPENSSH PRIVATE KEY-----"
      ssh_host_ed25519_key.pub: ssh-ed25519 AAAA
  docker: {ca_key: secret, ca_cert: public}
  registry_auths: {docker.io: {username: me, password: pw, auth: abc}}
"#,
        )
        .unwrap();
        let text = export(config.clone(), false).unwrap();
        for secret in ["hunter2", "K10abc", "PRIVATE KEY", "secret", " pw", "abc"] {
            assert!(!text.contains(secret), "{secret} leaked:\n{text}");
        }
        for kept in [
            "node1",
            "https://k8s:6443",
            "ssh-ed25519 AAAA",
            "public",
            "username: me",
        ] {
            assert!(text.contains(kept), "{kept} missing:\n{text}");
        }
        let private = export(config, true).unwrap();
        assert!(private.contains("hunter2") && private.contains("PRIVATE KEY"));
    }

    #[test]
    fn every_secret_key_is_a_valid_key_path() {
        for key in SECRET_KEYS {
            let path = KeyPath::parse(key).unwrap();
            crate::check::check_key_path(&path).unwrap();
        }
    }

    #[test]
    fn registry_tokens_are_redacted_like_passwords() {
        let mut config: Value = serde_norway::from_str(
            "rancher: {registry_auths: {ghcr.io: {username: me, registrytoken: rt-123, identitytoken: it-456}}}",
        )
        .unwrap();
        redact(&mut config);
        let text = serde_norway::to_string(&config).unwrap();
        assert!(
            !text.contains("rt-123") && !text.contains("it-456"),
            "{text}"
        );
        assert!(text.contains("username: me"), "{text}");
    }

    #[test]
    fn redacted_yaml_hides_the_join_token_and_keeps_the_rest() {
        let config: Value = serde_norway::from_str(
            "hostname: node1\nrancher: {debug: true, password: hunter2, cluster: {server: 'https://k8s:6443', token: K10joinsecret}}",
        )
        .unwrap();
        let text = redacted_yaml(&config);
        assert_eq!(
            text,
            "hostname: node1\nrancher:\n  debug: true\n  password: <redacted>\n  cluster:\n    server: https://k8s:6443\n    token: <redacted>\n"
        );
        // The caller's tree is left as it was.
        assert_eq!(
            tree::get(&config, &KeyPath::parse("rancher.cluster.token").unwrap()),
            Some(&Value::from("K10joinsecret"))
        );
    }

    #[test]
    fn get_redacted_shows_a_secret_only_when_asked_for_by_its_own_key() {
        let config: Value = serde_norway::from_str(
            r#"
rancher:
  cluster: {server: "https://k8s:6443", token: K10joinsecret}
  ssh: {keys: {ssh_host_rsa_key: "-----BEGIN RSA PRIVATE KEY-----", ssh_host_rsa_key.pub: ssh-rsa AAAA}}
  registry_auths: {"docker.io": {username: me, password: pw}}
"#,
        )
        .unwrap();
        let get = |path: &str| get_redacted(&config, &KeyPath::parse(path).unwrap());
        let yaml = |text: &str| serde_norway::from_str::<Value>(text).unwrap();

        assert_eq!(
            get("rancher.cluster"),
            Some(yaml("{server: 'https://k8s:6443', token: <redacted>}"))
        );
        let rancher = serde_norway::to_string(&get("rancher").unwrap()).unwrap();
        for secret in ["K10joinsecret", "PRIVATE KEY", " pw"] {
            assert!(!rancher.contains(secret), "{secret} leaked:\n{rancher}");
        }
        assert!(rancher.contains("ssh-rsa AAAA"), "{rancher}");

        assert_eq!(
            get("rancher.cluster.token"),
            Some(Value::from("K10joinsecret"))
        );
        assert_eq!(
            get("rancher.ssh.keys.ssh_host_rsa_key"),
            Some(Value::from("-----BEGIN RSA PRIVATE KEY-----"))
        );
        assert_eq!(
            get(r#"rancher.registry_auths."docker.io".password"#),
            Some(Value::from("pw"))
        );
        assert_eq!(
            get(r#"rancher.registry_auths."docker.io""#),
            Some(yaml("{username: me, password: <redacted>}"))
        );
        assert_eq!(
            get("rancher.cluster.server"),
            Some(Value::from("https://k8s:6443"))
        );
        assert_eq!(get("rancher.password"), None);
    }

    #[test]
    fn secrets_in_environments_agent_arguments_and_proxy_urls_are_redacted() {
        let config: Value = serde_norway::from_str(
            r#"
rancher:
  environment: {K3S_TOKEN: tok-env, TZ: UTC, HTTP_PROXY: "http://me:proxypw@proxy:3128/"}
  network: {http_proxy: "http://me:proxypw@proxy:3128", https_proxy: "https://ghp_usertoken@proxy", no_proxy: localhost}
  cluster:
    server: https://k8s:6443
    environment: {K3S_AGENT_TOKEN: tok-agent, K3S_TOKEN_FILE: /run/token, K3S_DEBUG: "true"}
    args: [--token, tok-arg1, --token=tok-arg2, -t, tok-arg3, --node-ip, 10.0.0.5]
  services:
    cluster-agent:
      image: rancher/k3s
      command: [agent, --agent-token=tok-cmd]
      environment: {K3S_URL: "https://k8s:6443", DB_PASSWORD: tok-svc}
    web:
      image: nginx
      command: k3s agent --token tok-line
      environment: [API_SECRET=tok-list, MODE=prod]
"#,
        )
        .unwrap();
        let text = redacted_yaml(&config);
        for secret in [
            "tok-env",
            "proxypw",
            "ghp_usertoken",
            "tok-agent",
            "tok-arg1",
            "tok-arg2",
            "tok-arg3",
            "tok-cmd",
            "tok-svc",
            "tok-line",
            "tok-list",
        ] {
            assert!(!text.contains(secret), "{secret} leaked:\n{text}");
        }
        let shown: Value = serde_norway::from_str(&text).unwrap();
        let at = |path: &str| {
            tree::get(&shown, &KeyPath::parse(path).unwrap())
                .cloned()
                .unwrap()
        };
        let yaml = |text: &str| serde_norway::from_str::<Value>(text).unwrap();
        assert_eq!(
            at("rancher.environment"),
            yaml(
                "{K3S_TOKEN: <redacted>, TZ: UTC, HTTP_PROXY: 'http://me:<redacted>@proxy:3128/'}"
            )
        );
        assert_eq!(
            at("rancher.network.http_proxy"),
            Value::from("http://me:<redacted>@proxy:3128")
        );
        assert_eq!(
            at("rancher.network.https_proxy"),
            Value::from("https://<redacted>@proxy")
        );
        assert_eq!(at("rancher.network.no_proxy"), Value::from("localhost"));
        assert_eq!(
            at("rancher.cluster.environment"),
            yaml("{K3S_AGENT_TOKEN: <redacted>, K3S_TOKEN_FILE: /run/token, K3S_DEBUG: 'true'}")
        );
        assert_eq!(
            at("rancher.cluster.args"),
            yaml("[--token, <redacted>, --token=<redacted>, -t, <redacted>, --node-ip, 10.0.0.5]")
        );
        assert_eq!(
            at("rancher.services.cluster-agent.command"),
            yaml("[agent, --agent-token=<redacted>]")
        );
        assert_eq!(
            at("rancher.services.web.command"),
            Value::from("k3s agent --token <redacted>")
        );
        assert_eq!(
            at("rancher.services.web.environment"),
            yaml("[API_SECRET=<redacted>, MODE=prod]")
        );

        // Each, asked for by its own key, is shown whole.
        let get = |path: &str| get_redacted(&config, &KeyPath::parse(path).unwrap()).unwrap();
        assert_eq!(get("rancher.cluster.args[1]"), Value::from("tok-arg1"));
        assert_eq!(get("rancher.environment.K3S_TOKEN"), Value::from("tok-env"));
        assert_eq!(
            get("rancher.network.http_proxy"),
            Value::from("http://me:proxypw@proxy:3128")
        );
        assert_eq!(
            get("rancher.services.web.environment[0]"),
            Value::from("API_SECRET=tok-list")
        );
    }
}
