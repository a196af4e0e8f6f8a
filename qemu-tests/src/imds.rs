//! A fake EC2 instance metadata service, IMDSv2 as EC2 serves it: a
//! session token from `PUT /latest/api/token` (which must carry the TTL
//! header), and every `GET` without a valid `X-aws-ec2-metadata-token`
//! is refused with 401, as on an instance that requires IMDSv2.
//!
//! It listens on the host's loopback; a guest reaches it at
//! 169.254.169.254:80 through QEMU user networking ([`Imds::netdev_options`]).
//! Every request is recorded, so a test can say what the guest asked and
//! what it got.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The token header of reads, and the TTL header of the token request.
pub const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
pub const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";

/// Where EC2 guests find the service.
pub const GUEST_ADDRESS: &str = "169.254.169.254";

/// The largest request accepted (headers and body).
const MAX_REQUEST: usize = 64 << 10;

/// What the instance's metadata says.
#[derive(Debug, Clone, Default)]
pub struct Instance {
    pub hostname: String,
    pub instance_id: String,
    pub openssh_key: String,
    pub user_data: String,
}

impl Instance {
    /// The documents under `/latest/`, by path.
    fn documents(&self) -> BTreeMap<String, String> {
        [
            ("meta-data/hostname", &self.hostname),
            ("meta-data/local-hostname", &self.hostname),
            ("meta-data/instance-id", &self.instance_id),
            ("meta-data/public-keys/0/openssh-key", &self.openssh_key),
            ("user-data", &self.user_data),
        ]
        .into_iter()
        .map(|(path, text)| (path.to_string(), text.clone()))
        .collect()
    }
}

/// One request as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// A token header was sent and it was one the service handed out.
    pub valid_token: bool,
    /// Any token header was sent.
    pub had_token: bool,
    /// The answer's status code.
    pub status: u16,
}

#[derive(Debug, Default)]
struct State {
    tokens: Vec<String>,
    requests: Vec<Request>,
}

/// A running fake; stops when dropped.
#[derive(Debug)]
pub struct Imds {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl Imds {
    /// Serves `instance` on an ephemeral port of 127.0.0.1.
    pub fn start(instance: Instance) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the fake IMDS");
        let port = listener.local_addr().expect("its address").port();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let documents = Arc::new(instance.documents());
        {
            let state = Arc::clone(&state);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let state = Arc::clone(&state);
                    let documents = Arc::clone(&documents);
                    std::thread::spawn(move || serve(stream, &documents, &state));
                }
            });
        }
        Self { port, state, stop }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The options of a `-netdev user` that put the service at
    /// 169.254.169.254:80 for the guest. QEMU forwards only addresses of
    /// its virtual network, so that network is the link-local one (the
    /// guest gets 169.254.0.15 by DHCP). Each guest connection runs
    /// busybox's `nc` to this port (a `tcp:` chardev would carry one
    /// connection only).
    pub fn netdev_options(&self) -> String {
        format!(
            "net=169.254.0.0/16,guestfwd=tcp:{GUEST_ADDRESS}:80-cmd:busybox nc 127.0.0.1 {}",
            self.port
        )
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .requests
            .clone()
    }
}

impl Drop for Imds {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop so it sees the stop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Answers one request on `stream`, then closes it.
fn serve(stream: TcpStream, documents: &BTreeMap<String, String>, state: &Mutex<State>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Some((method, path, headers)) = read_request(&stream) else {
        return;
    };
    let token = headers.get(TOKEN_HEADER);
    let (status, body) = {
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        let valid_token = token.is_some_and(|t| state.tokens.contains(t));
        let (status, body) = answer(&method, &path, &headers, valid_token, documents, &mut state);
        state.requests.push(Request {
            method: method.clone(),
            path: path.clone(),
            valid_token,
            had_token: token.is_some(),
            status,
        });
        (status, body)
    };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Method Not Allowed",
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}

/// The status and body of an answer, as IMDSv2 gives them.
fn answer(
    method: &str,
    path: &str,
    headers: &BTreeMap<String, String>,
    valid_token: bool,
    documents: &BTreeMap<String, String>,
    state: &mut State,
) -> (u16, String) {
    match (method, path) {
        ("PUT", "/latest/api/token") => match headers.get(TTL_HEADER).map(|t| t.parse::<u32>()) {
            Some(Ok(1..=21600)) => {
                let token = format!("fake-imds-token-{}", state.tokens.len() + 1);
                state.tokens.push(token.clone());
                (200, token)
            }
            _ => (400, String::new()),
        },
        ("GET", _) if !valid_token => (401, String::new()),
        ("GET", _) => match path
            .strip_prefix("/latest/")
            .and_then(|doc| documents.get(doc))
        {
            Some(text) => (200, text.clone()),
            None => (404, String::new()),
        },
        _ => (405, String::new()),
    }
}

/// The request line and headers (names lower-cased) of one request; its
/// body, if any, is read and dropped.
fn read_request(stream: &TcpStream) -> Option<(String, String, BTreeMap<String, String>)> {
    let mut reader = BufReader::new(stream.take(MAX_REQUEST as u64));
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut words = line.split_whitespace();
    let method = words.next()?.to_string();
    let path = words.next()?.to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            break;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length.min(MAX_REQUEST)];
    reader.read_exact(&mut body).ok()?;
    Some((method, path, headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(port: u16, request: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    }

    fn instance() -> Instance {
        Instance {
            hostname: "ip-10-0-0-7".into(),
            instance_id: "i-0123456789abcdef0".into(),
            openssh_key: "ssh-ed25519 AAAA test".into(),
            user_data: "#cloud-config\nhostname: x\n".into(),
        }
    }

    #[test]
    fn reads_need_a_token_from_the_token_request() {
        let imds = Imds::start(instance());
        let v1 = exchange(
            imds.port(),
            "GET /latest/meta-data/hostname HTTP/1.1\r\n\r\n",
        );
        assert!(v1.starts_with("HTTP/1.1 401 "), "{v1}");

        let no_ttl = exchange(imds.port(), "PUT /latest/api/token HTTP/1.1\r\n\r\n");
        assert!(no_ttl.starts_with("HTTP/1.1 400 "), "{no_ttl}");
        let answer = exchange(
            imds.port(),
            "PUT /latest/api/token HTTP/1.1\r\nX-aws-ec2-metadata-token-ttl-seconds: 21600\r\nContent-Length: 0\r\n\r\n",
        );
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        let token = answer.split("\r\n\r\n").nth(1).unwrap();

        let forged = exchange(
            imds.port(),
            "GET /latest/meta-data/hostname HTTP/1.1\r\nX-aws-ec2-metadata-token: forged\r\n\r\n",
        );
        assert!(forged.starts_with("HTTP/1.1 401 "), "{forged}");
        let hostname = exchange(
            imds.port(),
            &format!(
                "GET /latest/meta-data/hostname HTTP/1.1\r\nX-aws-ec2-metadata-token: {token}\r\n\r\n"
            ),
        );
        assert!(hostname.ends_with("\r\n\r\nip-10-0-0-7"), "{hostname}");
        let missing = exchange(
            imds.port(),
            &format!(
                "GET /latest/meta-data/nothing HTTP/1.1\r\nX-aws-ec2-metadata-token: {token}\r\n\r\n"
            ),
        );
        assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");

        let seen: Vec<(String, u16, bool)> = imds
            .requests()
            .into_iter()
            .map(|r| (r.method, r.status, r.valid_token))
            .collect();
        assert_eq!(
            seen,
            [
                ("GET".to_string(), 401, false),
                ("PUT".to_string(), 400, false),
                ("PUT".to_string(), 200, false),
                ("GET".to_string(), 401, false),
                ("GET".to_string(), 200, true),
                ("GET".to_string(), 404, true),
            ]
        );
    }
}
