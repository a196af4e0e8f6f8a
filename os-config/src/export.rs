//! `ros config export`: the stored or merged configuration as YAML, with
//! secrets replaced unless the caller asks for them.

use serde_norway::Value;

use crate::parse::keypath::KeyPath;
use crate::tree;

/// What a secret is replaced with.
pub const REDACTED: &str = "<redacted>";

/// Keys whose values are secret.
const SECRET_KEYS: &[&str] = &[
    "rancher.password",
    "rancher.cluster.token",
    "rancher.docker.server_key",
    "rancher.docker.ca_key",
    "rancher.system_docker.server_key",
    "rancher.system_docker.ca_key",
];

/// Replaces every secret in `value`: the keys above, SSH host private keys
/// (`rancher.ssh.keys.*` except `*.pub`) and registry credentials.
pub fn redact(value: &mut Value) {
    for key in SECRET_KEYS {
        let path = KeyPath::parse(key).expect("secret key paths are valid");
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
                    if matches!(field.as_str(), Some("password" | "auth" | "identitytoken")) {
                        *secret = Value::from(REDACTED);
                    }
                }
            }
        }
    }
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
}
