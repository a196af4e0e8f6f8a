//! Digests and chain IDs. A layer's snapshot is named by the chain ID of
//! the layers up to it (OCI image-spec, config.md): the first is its own
//! diff ID, each next one `sha256(parent_chain + " " + diff_id)`. Equal
//! prefixes of two images share their snapshots.

use std::fmt::Write as _;

use sha2::{Digest as _, Sha256};

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut text = String::with_capacity(7 + 64);
    text.push_str("sha256:");
    for byte in hash.iter() {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// The chain ID of every prefix of `diff_ids`: element `i` names the
/// snapshot holding layers `0..=i`.
pub fn chain_ids<S: AsRef<str>>(diff_ids: &[S]) -> Vec<String> {
    let mut chain: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match chain.last() {
            None => diff_id.as_ref().to_string(),
            Some(parent) => sha256_digest(format!("{parent} {}", diff_id.as_ref()).as_bytes()),
        };
        chain.push(next);
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_empty_input_is_the_well_known_one() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn chain_ids_match_the_image_spec() {
        // The second value was worked out outside Rust:
        //   printf '%s %s' sha256:aaa… sha256:bbb… | sha256sum
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let c = format!("sha256:{}", "c".repeat(64));
        let chain = chain_ids(&[&a, &b, &c]);
        assert_eq!(chain.len(), 3);
        assert_eq!(chain[0], a, "the first chain ID is the first diff ID");
        assert_eq!(chain[1], sha256_digest(format!("{a} {b}").as_bytes()));
        assert_eq!(
            chain[2],
            sha256_digest(format!("{} {c}", chain[1]).as_bytes())
        );
        assert_eq!(
            chain[1],
            "sha256:ccd722928bd92476ba1745586fed6e45a102504185ad88cd89e01ff116fd146c"
        );
    }

    #[test]
    fn no_layers_no_chain() {
        assert!(chain_ids::<&str>(&[]).is_empty());
    }
}
