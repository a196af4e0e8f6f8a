//! The join token, in k3s's two forms: secure
//! `K10<sha256 hex of the server's CA bundle>::<user>:<secret>`, which
//! pins the server's CA before anything is trusted, and short
//! `<secret>`, which trusts whatever CA `/cacerts` returns.

/// A parsed token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The sha256 hex the `/cacerts` body must hash to (secure form).
    ca_hash: Option<String>,
    /// What goes in `Authorization: Bearer`.
    secret: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is empty")]
    Empty,
    #[error("the token's CA hash {0:?} is not 64 hex digits (K10<sha256>::<user>:<secret>)")]
    BadCaHash(String),
    #[error("the token has no secret after its CA hash (K10<sha256>::<user>:<secret>)")]
    NoSecret,
}

impl Token {
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(TokenError::Empty);
        }
        let Some((hash, credentials)) = text
            .strip_prefix("K10")
            .and_then(|rest| rest.split_once("::"))
        else {
            return Ok(Self {
                ca_hash: None,
                secret: text.to_string(),
            });
        };
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TokenError::BadCaHash(hash.to_string()));
        }
        // `user:secret`; k3s sends the part after the last colon.
        let secret = credentials.rsplit(':').next().unwrap_or_default();
        if secret.is_empty() {
            return Err(TokenError::NoSecret);
        }
        Ok(Self {
            ca_hash: Some(hash.to_ascii_lowercase()),
            secret: secret.to_string(),
        })
    }

    /// The CA hash a secure token pins, lower-case hex.
    pub fn ca_hash(&self) -> Option<&str> {
        self.ca_hash.as_deref()
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn a_secure_token_pins_the_ca_hash_and_sends_the_part_after_the_last_colon() {
        let token = Token::parse(&format!("K10{HASH}::server:s3cret")).unwrap();
        assert_eq!(token.ca_hash(), Some(HASH));
        assert_eq!(token.secret(), "s3cret");
    }

    #[test]
    fn a_secure_token_without_a_user_sends_what_follows_the_hash() {
        let token = Token::parse(&format!("K10{HASH}::s3cret")).unwrap();
        assert_eq!(token.secret(), "s3cret");
    }

    #[test]
    fn the_ca_hash_is_compared_in_lower_case() {
        let token = Token::parse(&format!("K10{}::server:x", HASH.to_uppercase())).unwrap();
        assert_eq!(token.ca_hash(), Some(HASH));
    }

    #[test]
    fn a_short_token_is_all_secret_and_pins_nothing() {
        let token = Token::parse("just-a-secret").unwrap();
        assert_eq!(token.ca_hash(), None);
        assert_eq!(token.secret(), "just-a-secret");
        // K10 without `::` is a short token that happens to start so.
        assert_eq!(Token::parse("K10abc").unwrap().secret(), "K10abc");
    }

    #[test]
    fn malformed_secure_tokens_say_what_is_wrong() {
        assert_eq!(
            Token::parse("K10abc::server:x"),
            Err(TokenError::BadCaHash("abc".into()))
        );
        assert_eq!(
            Token::parse(&format!("K10{HASH}::server:")),
            Err(TokenError::NoSecret)
        );
        assert_eq!(Token::parse(" \n"), Err(TokenError::Empty));
    }
}
