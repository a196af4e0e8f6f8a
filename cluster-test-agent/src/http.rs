//! HTTPS to the server, one request per connection (HTTP/1.1,
//! `Connection: close`, `Content-Length`), on a blocking `TcpStream`
//! under rustls.
//!
//! Two TLS setups, as k3s bootstraps: [`Tls::unverified`] to fetch
//! `/cacerts` (any certificate, but the handshake signature is still
//! checked, so the peer does hold the key of the certificate it shows),
//! then [`Tls::trusting`] that CA bundle for everything after.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};

use crate::args::ServerUrl;

const TIMEOUT: Duration = Duration::from_secs(10);
/// More than any answer of the server; a guard against a runaway peer.
const MAX_RESPONSE: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("TLS setup: {0}")]
    Config(#[from] rustls::Error),
    #[error("the CA bundle from {server}/cacerts: {reason}")]
    CaBundle {
        server: String,
        reason: BundleProblem,
    },
    #[error("resolving {server}: {source}")]
    Resolve {
        server: String,
        source: std::io::Error,
    },
    #[error("{server} is not a valid TLS server name")]
    ServerName { server: String },
    #[error("connecting to {server}: {source}")]
    Connect {
        server: String,
        source: std::io::Error,
    },
    #[error("{method} {server}{path}: {source}")]
    Exchange {
        method: String,
        server: String,
        path: String,
        source: std::io::Error,
    },
    #[error("{method} {server}{path}: the answer is not HTTP ({reason})")]
    Malformed {
        method: String,
        server: String,
        path: String,
        reason: Malformed,
    },
}

/// What is wrong with the CA bundle `/cacerts` gave.
#[derive(Debug, thiserror::Error)]
pub enum BundleProblem {
    #[error("not PEM: {0}")]
    NotPem(rustls::pki_types::pem::Error),
    #[error("not a CA certificate: {0}")]
    NotCa(rustls::Error),
    #[error("no certificate in it")]
    Empty,
}

/// Why an answer is not HTTP/1.x.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("no end of head")]
    NoEndOfHead,
    #[error("status line {0:?}")]
    StatusLine(String),
    #[error("body cut short at {got} of {total} bytes")]
    CutShort { got: usize, total: usize },
}

/// An answer: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// A TLS client setup for one server.
#[derive(Debug, Clone)]
pub struct Tls {
    config: Arc<ClientConfig>,
}

impl Tls {
    /// Accepts any certificate: only for fetching `/cacerts`, whose
    /// hash a secure token then checks.
    pub fn unverified() -> Result<Self, HttpError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth();
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// Trusts the certificates of a PEM bundle (what `/cacerts` gave).
    pub fn trusting(server: &ServerUrl, bundle: &[u8]) -> Result<Self, HttpError> {
        let invalid = |reason: BundleProblem| HttpError::CaBundle {
            server: server.to_string(),
            reason,
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(bundle) {
            let cert = cert.map_err(|e| invalid(BundleProblem::NotPem(e)))?;
            roots
                .add(cert)
                .map_err(|e| invalid(BundleProblem::NotCa(e)))?;
        }
        if roots.is_empty() {
            return Err(invalid(BundleProblem::Empty));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// One request on a new connection; `bearer` goes in `Authorization`.
    pub fn request(
        &self,
        server: &ServerUrl,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: &[u8],
    ) -> Result<Response, HttpError> {
        let name = server.to_string();
        let tcp = connect(server)?;
        let server_name =
            ServerName::try_from(server.host.clone()).map_err(|_| HttpError::ServerName {
                server: name.clone(),
            })?;
        let connection = ClientConnection::new(self.config.clone(), server_name)?;
        let mut stream = StreamOwned::new(connection, tcp);
        let exchange = |source| HttpError::Exchange {
            method: method.into(),
            server: name.clone(),
            path: path.into(),
            source,
        };
        let host = match server.host.contains(':') {
            true => format!("[{}]:{}", server.host, server.port),
            false => format!("{}:{}", server.host, server.port),
        };
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: cluster-test-agent\r\n\
             Connection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        if !body.is_empty() {
            head.push_str("Content-Type: application/json\r\n");
        }
        if let Some(secret) = bearer {
            head.push_str(&format!("Authorization: Bearer {secret}\r\n"));
        }
        head.push_str("\r\n");
        stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(body))
            .and_then(|()| stream.flush())
            .map_err(exchange)?;
        let raw = read_response(&mut stream).map_err(exchange)?;
        parse_response(&raw).map_err(|reason| HttpError::Malformed {
            method: method.into(),
            server: name.clone(),
            path: path.into(),
            reason,
        })
    }
}

fn connect(server: &ServerUrl) -> Result<TcpStream, HttpError> {
    let name = server.to_string();
    let addresses = (server.host.as_str(), server.port)
        .to_socket_addrs()
        .map_err(|source| HttpError::Resolve {
            server: name.clone(),
            source,
        })?;
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for address in addresses {
        match TcpStream::connect_timeout(&address, TIMEOUT) {
            Ok(tcp) => {
                let timeouts = tcp
                    .set_read_timeout(Some(TIMEOUT))
                    .and_then(|()| tcp.set_write_timeout(Some(TIMEOUT)));
                return timeouts.map(|()| tcp).map_err(|source| HttpError::Connect {
                    server: name.clone(),
                    source,
                });
            }
            Err(error) => last = error,
        }
    }
    Err(HttpError::Connect {
        server: name,
        source: last,
    })
}

/// Reads the head, then the body to its `Content-Length` (or to the
/// end when there is none). A peer that closes without TLS
/// close_notify after a complete answer is fine.
fn read_response(stream: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(expected) = expected_length(&raw)
            && raw.len() >= expected
        {
            return Ok(raw);
        }
        if raw.len() > MAX_RESPONSE {
            return Err(std::io::Error::other("answer larger than 1 MiB"));
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(raw),
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {
                return Ok(raw);
            }
            Err(error) => return Err(error),
        }
    }
}

/// The head's end, if it has arrived.
fn head_end(raw: &[u8]) -> Option<usize> {
    raw.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// The whole answer's length when the head has come and gives one.
fn expected_length(raw: &[u8]) -> Option<usize> {
    let end = head_end(raw)?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    })?;
    Some(end + length)
}

fn parse_response(raw: &[u8]) -> Result<Response, Malformed> {
    let end = head_end(raw).ok_or(Malformed::NoEndOfHead)?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let status_line = head.lines().next().unwrap_or_default();
    let mut parts = status_line.split(' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(Malformed::StatusLine(status_line.to_owned()));
    }
    let status = parts
        .next()
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| Malformed::StatusLine(status_line.to_owned()))?;
    let body = match expected_length(raw) {
        Some(total) if raw.len() < total => {
            return Err(Malformed::CutShort {
                got: raw.len(),
                total,
            });
        }
        Some(total) => raw[end..total].to_vec(),
        None => raw[end..].to_vec(),
    };
    Ok(Response { status, body })
}

/// Takes any certificate, still checking the handshake's signature.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_read_to_its_content_length_even_if_more_follows() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloTRAILING";
        let mut reader = &raw[..];
        let read = read_response(&mut reader).unwrap();
        assert_eq!(
            parse_response(&read).unwrap(),
            Response {
                status: 200,
                body: b"hello".to_vec()
            }
        );
    }

    #[test]
    fn an_answer_without_a_length_runs_to_the_end() {
        let raw = b"HTTP/1.0 401 Unauthorized\r\n\r\nno";
        assert_eq!(parse_response(raw).unwrap().body, b"no");
        assert_eq!(parse_response(raw).unwrap().status, 401);
    }

    #[test]
    fn a_cut_short_or_foreign_answer_is_malformed() {
        let short = parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc");
        assert_eq!(short, Err(Malformed::CutShort { got: 42, total: 49 }));
        assert_eq!(
            short.unwrap_err().to_string(),
            "body cut short at 42 of 49 bytes"
        );
        let foreign = parse_response(b"SSH-2.0-x\r\n\r\n").unwrap_err();
        assert_eq!(foreign, Malformed::StatusLine("SSH-2.0-x".into()));
        assert_eq!(foreign.to_string(), "status line \"SSH-2.0-x\"");
        let headless = parse_response(b"HTTP/1.1 200").unwrap_err();
        assert_eq!(headless, Malformed::NoEndOfHead);
    }

    #[test]
    fn a_bundle_without_certificates_is_refused() {
        let server = ServerUrl::parse("https://s:1").unwrap();
        let error = Tls::trusting(&server, b"not pem at all").unwrap_err();
        assert!(
            matches!(
                error,
                HttpError::CaBundle {
                    reason: BundleProblem::Empty,
                    ..
                }
            ),
            "{error}"
        );
        assert!(error.to_string().contains("no certificate"), "{error}");
    }
}
