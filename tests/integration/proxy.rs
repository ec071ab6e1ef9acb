//! A fault-injecting HTTP proxy between the launcher and the EC2 emulator,
//! for what moto does not do: capacity errors, throttling, connections
//! dropped after the request reached EC2, and ClientToken idempotency.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// What the proxy does to the traffic.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// RunInstances for these (instance type, subnet) answer InsufficientInstanceCapacity.
    pub no_capacity: Vec<(String, String)>,
    /// The first N requests answer RequestLimitExceeded.
    pub throttle: usize,
    /// The first N RunInstances are forwarded, then the connection is closed
    /// without an answer.
    pub drop_after_run: usize,
    /// Dry runs answer UnauthorizedOperation.
    pub deny_dry_run: bool,
    /// Spot requests answer InsufficientInstanceCapacity.
    pub no_spot: bool,
}

#[derive(Default)]
struct State {
    faults: Faults,
    /// Every request's Action, with RunInstances' type and subnet.
    seen: Vec<String>,
    /// ClientToken → the answer EC2 gave to it (once there is one).
    tokens: HashMap<String, Arc<Mutex<Option<Vec<u8>>>>>,
}

pub struct Proxy {
    pub url: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    port: u16,
}

impl Proxy {
    /// A proxy on a free loopback port forwarding to `upstream` (`host:port`).
    pub fn start(upstream: &str, faults: Faults) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            faults,
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st, up) = (state.clone(), stop.clone(), upstream.to_string());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (s, up) = (s.clone(), up.clone());
                thread::spawn(move || serve(conn, &up, &s));
            }
        });
        Proxy {
            url: format!("http://127.0.0.1:{port}"),
            state,
            stop,
            port,
        }
    }

    /// The RunInstances calls the launcher made, in order.
    pub fn run_instances(&self) -> Vec<String> {
        let s = self.state.lock().unwrap();
        s.seen
            .iter()
            .filter(|a| a.starts_with("RunInstances"))
            .cloned()
            .collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

struct Request {
    head: String,
    body: Vec<u8>,
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let length = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request { head, body })
}

fn decode(s: &str) -> String {
    let bytes = s.replace('+', " ").into_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) =
                u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or(""), 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn params(body: &[u8]) -> HashMap<String, String> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn error(status: &str, code: &str, message: &str) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>bootforge-proxy</RequestID></Response>"
    );
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/xml;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Sends `request` to `upstream` on a connection of its own and returns the
/// whole answer, rewritten to keep the client's connection open.
fn forward(upstream: &str, request: &Request) -> Option<Vec<u8>> {
    let mut up = TcpStream::connect(upstream).ok()?;
    up.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    let head: String = request
        .head
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:") && !l.is_empty())
        .map(|l| format!("{l}\r\n"))
        .collect();
    up.write_all(format!("{head}Connection: close\r\n\r\n").as_bytes())
        .ok()?;
    up.write_all(&request.body).ok()?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer).ok()?;
    // Re-frame: the client keeps its connection; give it an exact length.
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let (head, body) = answer.split_at(split);
    let head = String::from_utf8_lossy(head);
    let mut out: String = head
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            !l.is_empty()
                && !l.starts_with("connection:")
                && !l.starts_with("content-length:")
                && !l.starts_with("transfer-encoding:")
        })
        .map(|l| format!("{l}\r\n"))
        .collect();
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    Some(bytes)
}

fn serve(conn: TcpStream, upstream: &str, state: &Mutex<State>) {
    let mut writer = conn.try_clone().unwrap();
    let mut reader = BufReader::new(conn);
    while let Some(request) = read_request(&mut reader) {
        let p = params(&request.body);
        let action = p.get("Action").cloned().unwrap_or_default();
        let run = action == "RunInstances";
        let dry = p.get("DryRun").is_some_and(|v| v == "true");
        let (itype, subnet) = (
            p.get("InstanceType").cloned().unwrap_or_default(),
            p.get("SubnetId").cloned().unwrap_or_default(),
        );

        let (throttled, no_capacity, denied, token) = {
            let mut s = state.lock().unwrap();
            let spot = p
                .get("InstanceMarketOptions.MarketType")
                .is_some_and(|m| m == "spot");
            s.seen.push(if run {
                format!(
                    "{action} {itype} {subnet}{}{}",
                    if spot { " spot" } else { "" },
                    if dry { " dry-run" } else { "" }
                )
            } else {
                action.clone()
            });
            let throttled = s.faults.throttle > 0;
            if throttled {
                s.faults.throttle -= 1;
            }
            let no_capacity = run
                && (s
                    .faults
                    .no_capacity
                    .iter()
                    .any(|(t, n)| *t == itype && *n == subnet)
                    || (spot && s.faults.no_spot));
            let denied = run && dry && s.faults.deny_dry_run;
            let token = (run && !dry)
                .then(|| p.get("ClientToken").cloned())
                .flatten()
                .map(|t| s.tokens.entry(t).or_default().clone());
            (throttled, no_capacity, denied, token)
        };

        let answer = if throttled {
            error(
                "503 Service Unavailable",
                "RequestLimitExceeded",
                "Request limit exceeded.",
            )
        } else if denied {
            error(
                "403 Forbidden",
                "UnauthorizedOperation",
                "You are not authorized to perform this operation. User: arn:aws:sts::222634388391:assumed-role/celery/i-0 is not authorized to perform: ec2:RunInstances",
            )
        } else if no_capacity {
            error(
                "500 Internal Server Error",
                "InsufficientInstanceCapacity",
                &format!(
                    "We currently do not have sufficient {itype} capacity in the Availability Zone you requested."
                ),
            )
        } else if let Some(slot) = token {
            // One launch per token, as EC2 documents: the same token gets the
            // same answer, and simultaneous ones wait for the first.
            let mut cached = slot.lock().unwrap();
            let answer = match cached.as_ref() {
                Some(answer) => answer.clone(),
                None => {
                    let Some(answer) = forward(upstream, &request) else {
                        return;
                    };
                    if answer.starts_with(b"HTTP/1.1 200") || answer.starts_with(b"HTTP/1.0 200") {
                        *cached = Some(answer.clone());
                    }
                    answer
                }
            };
            drop(cached);
            let mut s = state.lock().unwrap();
            if s.faults.drop_after_run > 0 {
                s.faults.drop_after_run -= 1;
                let _ = writer.shutdown(Shutdown::Both);
                return;
            }
            answer
        } else {
            let Some(answer) = forward(upstream, &request) else {
                return;
            };
            answer
        };
        if writer.write_all(&answer).is_err() {
            return;
        }
    }
}
