//! A small HTTP/1.1 client over a tokio `TcpStream`, with TLS (rustls,
//! which `ros` links for registry pulls anyway) for `https://`: enough for
//! the EC2 instance metadata service and user-data URLs, without the
//! weight of a full client in PID 1. One request per connection
//! (`Connection: close`); bounded retries with doubling backoff.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The CA certificates `https://` trusts: Debian's bundle, which the
/// image build puts in the root.
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The largest body accepted: user-data is small, a runaway server is not.
/// The user-data cap, so a source cannot hand PID 1 more than any other.
pub const MAX_BODY: usize = crate::userdata::MAX_USER_DATA;

/// The reason in the I/O error of an answer that grows past [`MAX_BODY`]
/// while it is read.
#[derive(Debug, thiserror::Error)]
#[error("the answer is larger than {MAX_BODY} bytes")]
struct AnswerTooLarge;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The CA certificates for `https://` cannot be read.
    #[error("{url}: no CA certificates for https from {}: {reason}", path.display())]
    CaCertificates {
        /// The URL.
        url: String,
        /// The bundle.
        path: PathBuf,
        /// Why.
        reason: CaBundleError,
    },
    /// Not an `http://` or `https://host[:port]/path` URL.
    #[error("`{url}` is not an http:// or https:// URL")]
    BadUrl {
        /// The URL.
        url: String,
    },
    /// No connection could be made, after every attempt.
    #[error("{url}: cannot connect after {attempts} attempts: {source}")]
    Connect {
        /// The URL.
        url: String,
        /// How many tries.
        attempts: u32,
        /// The last error.
        source: io::Error,
    },
    /// The exchange took longer than the timeout, on every attempt.
    #[error("{url}: no answer within {timeout:?}, after {attempts} attempts")]
    Timeout {
        /// The URL.
        url: String,
        /// The per-attempt timeout.
        timeout: Duration,
        /// How many tries.
        attempts: u32,
    },
    /// The answer is larger than user-data may be: not retried.
    #[error("{url}: the answer is larger than {limit} bytes (the user-data cap); refused")]
    TooLarge {
        /// The URL.
        url: String,
        /// The cap.
        limit: usize,
    },
    /// The answer is not HTTP/1.x.
    #[error("{url}: malformed response: {reason}")]
    Malformed {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: MalformedResponse,
    },
}

/// Why bytes are not an HTTP/1.x response (what [`parse_response`] found).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MalformedResponse {
    #[error("no end of headers")]
    NoEndOfHeaders,
    #[error("headers are not UTF-8")]
    HeadersNotUtf8,
    #[error("no status line")]
    NoStatusLine,
    #[error("not HTTP/1.x")]
    NotHttp1,
    #[error("bad status code")]
    BadStatus,
    #[error("header without `:`")]
    HeaderWithoutColon,
    #[error("bad Content-Length")]
    BadContentLength,
    #[error("body shorter than Content-Length")]
    BodyShort,
    #[error("chunk size line not terminated")]
    ChunkSizeUnterminated,
    #[error("bad chunk size")]
    BadChunkSize,
    #[error("chunk shorter than its size")]
    ChunkShort,
    #[error("chunk not terminated")]
    ChunkUnterminated,
    /// Past [`MAX_BODY`]: the client reports it as [`HttpError::TooLarge`].
    #[error("body too large")]
    BodyTooLarge,
}

/// Why the CA bundle gives no TLS configuration (the bundle's path is in
/// the [`HttpError::CaCertificates`] around it).
#[derive(Debug, thiserror::Error)]
pub enum CaBundleError {
    /// The file cannot be read, or a PEM section in it is broken.
    #[error("cannot read it: {0}")]
    Pem(#[from] rustls_pki_types::pem::Error),
    /// Read, but not one certificate in it was accepted.
    #[error("no certificate in it")]
    Empty,
    /// rustls refuses the protocol versions (a build without TLS 1.2/1.3).
    #[error("no TLS protocol version: {0}")]
    Protocol(#[from] rustls::Error),
}

impl HttpError {
    /// True when nothing answered at all (as off EC2 for the IMDS).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Connect { .. } | Self::Timeout { .. })
    }
}

/// A parsed `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// `https://`.
    pub tls: bool,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port, 80 or 443 by default.
    pub port: u16,
    /// Path and query, at least `/`.
    pub path: String,
}

impl HttpUrl {
    /// Parses `http[s]://host[:port][/path]`.
    pub fn parse(url: &str) -> Result<Self, HttpError> {
        let bad = || HttpError::BadUrl {
            url: url.to_owned(),
        };
        let (tls, rest) = match url.strip_prefix("https://") {
            Some(rest) => (true, rest),
            None => (false, url.strip_prefix("http://").ok_or_else(bad)?),
        };
        let (authority, path) = match rest.find('/') {
            Some(index) => (&rest[..index], &rest[index..]),
            None => (rest, "/"),
        };
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']').ok_or_else(bad)?;
            let port = match after.strip_prefix(':') {
                Some(port) => Some(port),
                None if after.is_empty() => None,
                None => return Err(bad()),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        let port = match port {
            Some(port) => port.parse().map_err(|_| bad())?,
            None => default_port(tls),
        };
        if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '@') {
            return Err(bad());
        }
        Ok(Self {
            tls,
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }

    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default_port(self.tls) {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

fn default_port(tls: bool) -> u16 {
    if tls { 443 } else { 80 }
}

/// A response: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// The client's limits.
#[derive(Debug, Clone)]
pub struct HttpClient {
    /// Per attempt, for connect + request + response.
    pub timeout: Duration,
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// Wait before the second attempt; doubles after each.
    pub backoff: Duration,
    /// The PEM bundle of CA certificates `https://` trusts.
    pub ca_bundle: PathBuf,
}

impl Default for HttpClient {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            attempts: 3,
            backoff: Duration::from_millis(500),
            ca_bundle: PathBuf::from(CA_BUNDLE),
        }
    }
}

impl HttpClient {
    /// GET `url`.
    pub async fn get(
        &self,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<HttpResponse, HttpError> {
        self.request("GET", url, headers).await
    }

    /// Sends a request without a body, retrying connection failures,
    /// timeouts and 5xx answers.
    pub async fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<HttpResponse, HttpError> {
        let parsed = HttpUrl::parse(url)?;
        let tls = if parsed.tls {
            Some(
                tls_connector(&self.ca_bundle).map_err(|reason| HttpError::CaCertificates {
                    url: url.to_owned(),
                    path: self.ca_bundle.clone(),
                    reason,
                })?,
            )
        } else {
            None
        };
        let attempts = self.attempts.max(1);
        let mut backoff = self.backoff;
        let mut last_error = None;
        for attempt in 1..=attempts {
            if attempt > 1 {
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
            }
            let exchange = tokio::time::timeout(
                self.timeout,
                exchange(&parsed, tls.as_ref(), method, headers),
            );
            match exchange.await {
                Ok(Ok(bytes)) => {
                    let response = parse_response(&bytes).map_err(|reason| {
                        if reason == MalformedResponse::BodyTooLarge {
                            HttpError::TooLarge {
                                url: url.to_owned(),
                                limit: MAX_BODY,
                            }
                        } else {
                            HttpError::Malformed {
                                url: url.to_owned(),
                                reason,
                            }
                        }
                    })?;
                    if response.status >= 500 && attempt < attempts {
                        tracing::debug!(url, status = response.status, "server error, retrying");
                        continue;
                    }
                    return Ok(response);
                }
                // The same server would send the same again.
                Ok(Err(error)) if error.get_ref().is_some_and(|e| e.is::<AnswerTooLarge>()) => {
                    return Err(HttpError::TooLarge {
                        url: url.to_owned(),
                        limit: MAX_BODY,
                    });
                }
                Ok(Err(error)) => last_error = Some(error),
                Err(_elapsed) => last_error = None,
            }
        }
        Err(match last_error {
            Some(source) => HttpError::Connect {
                url: url.to_owned(),
                attempts,
                source,
            },
            None => HttpError::Timeout {
                url: url.to_owned(),
                timeout: self.timeout,
                attempts,
            },
        })
    }
}

/// TLS that trusts the certificates of `ca_bundle`, with ring (as for
/// registry pulls).
fn tls_connector(ca_bundle: &Path) -> Result<tokio_rustls::TlsConnector, CaBundleError> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(ca_bundle)? {
        // One certificate the store refuses does not spoil the rest.
        let _ = roots.add(certificate?);
    }
    if roots.is_empty() {
        return Err(CaBundleError::Empty);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

async fn exchange(
    url: &HttpUrl,
    tls: Option<&tokio_rustls::TlsConnector>,
    method: &str,
    headers: &[(&str, &str)],
) -> io::Result<Vec<u8>> {
    let stream = TcpStream::connect((url.host.as_str(), url.port)).await?;
    let Some(tls) = tls else {
        return talk(stream, url, method, headers).await;
    };
    let name = ServerName::try_from(url.host.clone())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let stream = tls.connect(name, stream).await?;
    talk(stream, url, method, headers).await
}

/// One request and its whole response over `stream`.
async fn talk<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    url: &HttpUrl,
    method: &str,
    headers: &[(&str, &str)],
) -> io::Result<Vec<u8>> {
    let mut request = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ros\r\nAccept: */*\r\nConnection: close\r\n",
        url.path,
        url.host_header()
    );
    if method == "PUT" || method == "POST" {
        request.push_str("Content-Length: 0\r\n");
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let read = match stream.read(&mut chunk).await {
            Ok(0) => break,
            Ok(read) => read,
            // A TLS server that closes without saying so ends an answer
            // without a length as a plain close does.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !response.is_empty() => break,
            Err(e) => return Err(e),
        };
        if response.len() + read > MAX_BODY + 64 * 1024 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, AnswerTooLarge));
        }
        response.extend_from_slice(&chunk[..read]);
        // Stop as soon as a Content-Length body is complete: some servers
        // keep the connection open despite `Connection: close`.
        if let Some(total) = complete_length(&response)
            && response.len() >= total
        {
            response.truncate(total);
            break;
        }
    }
    Ok(response)
}

/// Header length plus Content-Length, when the headers are complete and say it.
fn complete_length(response: &[u8]) -> Option<usize> {
    let header_end = find(response, b"\r\n\r\n")? + 4;
    let headers = std::str::from_utf8(&response[..header_end]).ok()?;
    let length = headers.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    })?;
    Some(header_end + length)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Parses a whole HTTP/1.x response (status line, headers, body with
/// Content-Length, chunked encoding, or up to the end).
pub fn parse_response(bytes: &[u8]) -> Result<HttpResponse, MalformedResponse> {
    use MalformedResponse as M;
    let header_end = find(bytes, b"\r\n\r\n").ok_or(M::NoEndOfHeaders)?;
    let head = std::str::from_utf8(&bytes[..header_end]).map_err(|_| M::HeadersNotUtf8)?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or(M::NoStatusLine)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(M::NotHttp1);
    }
    let status: u16 = parts
        .next()
        .and_then(|code| code.parse().ok())
        .filter(|code| (100..600).contains(code))
        .ok_or(M::BadStatus)?;
    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        let (name, value) = line.split_once(':').ok_or(M::HeaderWithoutColon)?;
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(value.parse::<usize>().map_err(|_| M::BadContentLength)?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    let rest = &bytes[header_end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(length) = content_length {
        rest.get(..length).ok_or(M::BodyShort)?.to_vec()
    } else {
        rest.to_vec()
    };
    if body.len() > MAX_BODY {
        return Err(M::BodyTooLarge);
    }
    Ok(HttpResponse { status, body })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, MalformedResponse> {
    use MalformedResponse as M;
    let mut body = Vec::new();
    loop {
        let line_end = find(rest, b"\r\n").ok_or(M::ChunkSizeUnterminated)?;
        let size_text = std::str::from_utf8(&rest[..line_end]).map_err(|_| M::BadChunkSize)?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| M::BadChunkSize)?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if size > MAX_BODY || body.len() + size > MAX_BODY {
            return Err(M::BodyTooLarge);
        }
        let chunk = rest.get(..size).ok_or(M::ChunkShort)?;
        body.extend_from_slice(chunk);
        rest = rest.get(size + 2..).ok_or(M::ChunkUnterminated)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_urls() {
        let url = HttpUrl::parse("http://169.254.169.254/latest/api/token").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.path.as_str()),
            ("169.254.169.254", 80, "/latest/api/token")
        );
        let url = HttpUrl::parse("http://[::1]:8080").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.path.as_str()),
            ("::1", 8080, "/")
        );
        assert_eq!(url.host_header(), "[::1]:8080");
        assert!(!url.tls);
        let url = HttpUrl::parse("https://example.com/x?y=1").unwrap();
        assert_eq!(
            (url.tls, url.host.as_str(), url.port, url.path.as_str()),
            (true, "example.com", 443, "/x?y=1")
        );
        assert_eq!(url.host_header(), "example.com");
        assert_eq!(
            HttpUrl::parse("https://example.com:8443")
                .unwrap()
                .host_header(),
            "example.com:8443"
        );
        for bad in [
            "ftp://x",
            "http://",
            "https://",
            "http://host:port/",
            "http://[::1/x",
            "http://u@h/",
        ] {
            assert!(
                matches!(HttpUrl::parse(bad), Err(HttpError::BadUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn parses_responses() {
        let plain =
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello-extra").unwrap();
        assert_eq!((plain.status, plain.body.as_slice()), (200, &b"hello"[..]));
        let chunked = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(chunked.body, b"hello world");
        let to_end = parse_response(b"HTTP/1.0 404 Not Found\r\n\r\nnope").unwrap();
        assert_eq!((to_end.status, to_end.body.as_slice()), (404, &b"nope"[..]));
        use MalformedResponse as M;
        for (bad, why) in [
            (&b"garbage"[..], M::NoEndOfHeaders),
            (b"HTTP/1.1 abc\r\n\r\n", M::BadStatus),
            (b"SPDY/3 200 OK\r\n\r\n", M::NotHttp1),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
                M::BodyShort,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                M::BadChunkSize,
            ),
            (b"HTTP/1.1 200 OK\r\nX\r\n\r\n", M::HeaderWithoutColon),
        ] {
            assert_eq!(
                parse_response(bad).map(|_| ()),
                Err(why),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    proptest! {
        #[test]
        fn response_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_response(&bytes);
        }

        #[test]
        fn chunked_bodies_round_trip(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..40), 0..5)) {
            let mut wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for chunk in &chunks {
                wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                wire.extend_from_slice(chunk);
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b"0\r\n\r\n");
            prop_assert_eq!(parse_response(&wire).unwrap().body, chunks.concat());
        }

        #[test]
        fn url_parser_never_panics(text in "\\PC{0,40}") {
            let _ = HttpUrl::parse(&text);
        }
    }
}
