//! An EC2 double: an HTTP proxy in front of the moto emulator that adds what
//! EC2 documents and moto does not do, so that no launcher test passes
//! because its world is kinder than EC2's.
//!
//! - ClientToken ("Ensuring idempotency in Amazon EC2 API requests"): the
//!   same token with the same request gives the same reservation, also while
//!   the first call is in flight; the same token with any other parameter
//!   changed gives `IdempotentParameterMismatch`, also after an attempt that
//!   failed (the token is remembered); a token whose instance has terminated
//!   gives `IdempotentInstanceTerminated`. `no_token_protection` turns all of
//!   it off (moto's own behaviour: every call launches).
//! - Eventual consistency ("Eventual consistency in the Amazon EC2 API"): for
//!   `hide_for` after RunInstances, the new instance is unknown to calls that
//!   name it (`InvalidInstanceID.NotFound`) and absent from filtered
//!   DescribeInstances answers.
//! - Failures: capacity (`InsufficientInstanceCapacity`, HTTP 500 as EC2
//!   sends it), quotas (`VcpuLimitExceeded`, `InstanceLimitExceeded`),
//!   throttling, connections dropped after the request reached EC2, denied
//!   dry runs; instances ended with a `StateReason` of EC2's own (spot
//!   interruption, capacity at launch); a console output per instance.
//! - Spot interruptions (EC2 user guide, "Spot Instance interruptions"): the
//!   notice, then the termination a warning later (two minutes on EC2,
//!   shortened in tests), with `StateReason` `Server.SpotInstanceTermination`;
//!   an instance that powers itself off ends `Client.InstanceInitiatedShutdown`
//!   (moto gives every termination `Client.UserInitiatedShutdown`, the
//!   reason of a TerminateInstances call).
//! - A new instance is `pending` for a while before `running`
//!   (`pending_for`; moto starts every instance running at once), as EC2
//!   boots one.
//! - DescribeSpotPriceHistory as EC2 answers it: a price per zone and type
//!   near the market's (moto answers 0.00001 for everything).
//! - Every call is counted with its time.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// What the double does besides forwarding.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// RunInstances for these (instance type, subnet) answer InsufficientInstanceCapacity.
    pub no_capacity: Vec<(String, String)>,
    /// The first N RunInstances (not dry runs) answer InsufficientInstanceCapacity.
    pub capacity_first: usize,
    /// Spot requests answer InsufficientInstanceCapacity.
    pub no_spot: bool,
    /// RunInstances answers this quota error (`VcpuLimitExceeded`…).
    pub quota: Option<&'static str>,
    /// Spot RunInstances answer this quota error: the spot vCPU quota is
    /// separate from the on-demand one, and new accounts often have 0.
    pub spot_quota: Option<&'static str>,
    /// The first N requests answer RequestLimitExceeded.
    pub throttle: usize,
    /// The first N RunInstances reach EC2, then the connection is closed
    /// without an answer.
    pub drop_after_run: usize,
    /// Dry runs answer UnauthorizedOperation.
    pub deny_dry_run: bool,
    /// New instances are invisible this long after RunInstances.
    pub hide_for: Duration,
    /// New instances are `pending` this long after RunInstances, then
    /// `running`.
    pub pending_for: Duration,
    /// RunInstances takes at least this long (calls overlap in flight).
    pub run_delay: Duration,
    /// No ClientToken semantics at all: every RunInstances launches.
    pub no_token_protection: bool,
    /// TerminateInstances naming an instance of this profile (its
    /// `bootforge:profile` tag) is denied, as a policy scoped to other
    /// profiles does: then none of the call's instances is terminated.
    pub deny_terminate_profile: Option<String>,
}

/// What EC2 remembers of a ClientToken.
#[derive(Default)]
struct Token {
    /// The request it was first used with (every parameter but the token).
    request: Option<String>,
    /// The successful answer, and its instance.
    answer: Option<(Vec<u8>, String)>,
}

#[derive(Default)]
struct State {
    faults: Faults,
    /// Every request: when, and its Action (RunInstances with type, subnet, market).
    seen: Vec<(Instant, String)>,
    tokens: HashMap<String, Arc<Mutex<Token>>>,
    /// Instance id → when RunInstances created it.
    created: HashMap<String, Instant>,
    /// Instance id → the StateReason EC2 gave it (code, message).
    reasons: HashMap<String, (String, String)>,
    /// Instance id → its console output.
    consoles: HashMap<String, String>,
    /// Instance id → when its spot interruption notice was given, and the
    /// action time.
    notices: HashMap<String, (Instant, Instant)>,
}

/// The spot prices the double serves: (type, zone, price an hour), near
/// us-east-2's (the SkyPilot catalog's snapshot gives $0.59–0.75 for a
/// g6e.xlarge).
pub const SPOT_PRICES: &[(&str, &str, &str)] = &[
    ("g6e.xlarge", "us-east-2a", "0.663200"),
    ("g6e.xlarge", "us-east-2b", "0.712400"),
    ("g6e.xlarge", "us-east-2c", "0.598100"),
    ("g6.xlarge", "us-east-2a", "0.352100"),
    ("g6.xlarge", "us-east-2b", "0.339900"),
    ("g6.xlarge", "us-east-2c", "0.361000"),
];

pub struct Proxy {
    pub url: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    port: u16,
    upstream: String,
}

impl Proxy {
    /// A double on a free loopback port in front of `upstream` (`host:port`).
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
            upstream: upstream.to_string(),
        }
    }

    /// The RunInstances calls made, in order (dry runs marked).
    pub fn run_instances(&self) -> Vec<String> {
        let s = self.state.lock().unwrap();
        s.seen
            .iter()
            .filter(|(_, a)| a.starts_with("RunInstances"))
            .map(|(_, a)| a.clone())
            .collect()
    }

    /// How many calls of `action` were made.
    pub fn count(&self, action: &str) -> usize {
        let s = self.state.lock().unwrap();
        s.seen
            .iter()
            .filter(|(_, a)| a.split(' ').next() == Some(action))
            .count()
    }

    /// Changes the faults from now on.
    pub fn set_faults(&self, change: impl FnOnce(&mut Faults)) {
        change(&mut self.state.lock().unwrap().faults);
    }

    /// Ends `instance` as EC2 would for `code` (`Server.SpotInstanceTermination`,
    /// `Server.InsufficientInstanceCapacity`…): terminated, with that reason.
    pub fn end(&self, instance: &str, code: &str, message: &str) {
        end(&self.upstream, &self.state, instance, code, message);
    }

    /// The instance powers itself off (its shutdown behaviour is
    /// terminate): terminated, `Client.InstanceInitiatedShutdown`.
    pub fn power_off(&self, instance: &str) {
        self.end(
            instance,
            "Client.InstanceInitiatedShutdown",
            "Client.InstanceInitiatedShutdown: Instance initiated shutdown",
        );
    }

    /// A spot interruption of `instance`: the notice now, the termination
    /// `warning` later (`Server.SpotInstanceTermination`), from a thread of
    /// its own, as EC2 does it whatever the caller does meanwhile.
    pub fn interrupt(&self, instance: &str, warning: Duration) -> thread::JoinHandle<()> {
        let now = Instant::now();
        self.state
            .lock()
            .unwrap()
            .notices
            .insert(instance.to_string(), (now, now + warning));
        let (upstream, state, id) = (
            self.upstream.clone(),
            self.state.clone(),
            instance.to_string(),
        );
        thread::spawn(move || {
            thread::sleep(warning);
            end(
                &upstream,
                &state,
                &id,
                "Server.SpotInstanceTermination",
                "Server.SpotInstanceTermination: Spot instance termination",
            );
        })
    }

    /// When `instance` got its interruption notice.
    pub fn noticed(&self, instance: &str) -> Option<Instant> {
        self.state
            .lock()
            .unwrap()
            .notices
            .get(instance)
            .map(|(at, _)| *at)
    }

    /// Every RunInstances call made (not dry runs) with its time.
    pub fn run_instances_at(&self) -> Vec<(Instant, String)> {
        let s = self.state.lock().unwrap();
        s.seen
            .iter()
            .filter(|(_, a)| a.starts_with("RunInstances") && !a.ends_with("dry-run"))
            .cloned()
            .collect()
    }

    /// The instances RunInstances started, each with when EC2 shows it
    /// `running` (after `pending_for`), leaving out those EC2 ended.
    pub fn booted(&self) -> Vec<(String, Instant)> {
        let s = self.state.lock().unwrap();
        s.created
            .iter()
            .filter(|(id, _)| !s.reasons.contains_key(*id))
            .map(|(id, at)| (id.clone(), *at + s.faults.pending_for))
            .collect()
    }

    /// What GetConsoleOutput answers for `instance`.
    pub fn set_console(&self, instance: &str, text: &str) {
        self.state
            .lock()
            .unwrap()
            .consoles
            .insert(instance.to_string(), text.to_string());
    }
}

/// Terminates `instance` in moto and gives it the StateReason `code`.
fn end(upstream: &str, state: &Mutex<State>, instance: &str, code: &str, message: &str) {
    let body = format!("Action=TerminateInstances&Version=2016-11-15&InstanceId.1={instance}");
    let request = Request {
        head: format!(
            "POST / HTTP/1.1\r\nHost: {upstream}\r\nContent-Type: application/x-www-form-urlencoded\r\nAuthorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-2/ec2/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\n\r\n",
            body.len()
        ),
        body: body.into_bytes(),
    };
    // The reason is EC2's from the moment the state changes: a
    // DescribeInstances between the two must not see moto's own.
    state.lock().unwrap().reasons.insert(
        instance.to_string(),
        (code.to_string(), message.to_string()),
    );
    let answer = forward(upstream, &request).expect("moto answers");
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

/// DescribeSpotPriceHistory's answer for the types and zones asked
/// (`InstanceType.N`, `AvailabilityZone`; all of them when not asked): the
/// latest price of each, an hour ago.
fn spot_price_history(p: &BTreeMap<String, String>) -> Vec<u8> {
    let types: Vec<&String> = p
        .iter()
        .filter(|(k, _)| k.starts_with("InstanceType."))
        .map(|(_, v)| v)
        .collect();
    let zone = p.get("AvailabilityZone");
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    let stamp = humantime::format_rfc3339_millis(hour_ago);
    let items: String = SPOT_PRICES
        .iter()
        .filter(|(t, z, _)| {
            (types.is_empty() || types.iter().any(|w| w.as_str() == *t))
                && zone.is_none_or(|w| w == z)
        })
        .map(|(t, z, price)| {
            format!(
                "<item><instanceType>{t}</instanceType><productDescription>Linux/UNIX</productDescription><spotPrice>{price}</spotPrice><timestamp>{stamp}</timestamp><availabilityZone>{z}</availabilityZone></item>"
            )
        })
        .collect();
    ok(&format!(
        "<DescribeSpotPriceHistoryResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>bootforge-double</requestId><spotPriceHistorySet>{items}</spotPriceHistorySet><nextToken></nextToken></DescribeSpotPriceHistoryResponse>"
    ))
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

/// The form parameters, ordered (so that a request has one canonical text).
fn params(body: &[u8]) -> BTreeMap<String, String> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn error(status: &str, code: &str, message: &str) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>bootforge-double</RequestID></Response>"
    );
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/xml;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The double's own control, for tests that do not run in this process
/// (the Python API's): `POST /_double/end` with `instance`, `code` and
/// `message` plays EC2 ending an instance with that StateReason, as
/// [`Proxy::end`] does. EC2 has no such path: only tests call it.
fn control(request: &Request, upstream: &str, state: &Mutex<State>) -> Vec<u8> {
    let p = params(&request.body);
    let given = |k: &str| p.get(k).filter(|v| !v.is_empty());
    match (
        request.head.starts_with("POST /_double/end "),
        given("instance"),
        given("code"),
    ) {
        (true, Some(instance), Some(code)) => {
            let message = p.get("message").map_or("", String::as_str);
            end(upstream, state, instance, code, message);
            ok("ended")
        }
        _ => error(
            "400 Bad Request",
            "InvalidControl",
            "POST /_double/end with instance=ID&code=REASON[&message=TEXT]",
        ),
    }
}

fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/xml;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Sends `request` to `upstream` on a connection of its own and returns the
/// whole answer, re-framed to keep the client's connection open.
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

/// The answer's body as text (after the head).
fn body_of(answer: &[u8]) -> String {
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |p| p + 4);
    String::from_utf8_lossy(&answer[split..]).into_owned()
}

/// The text between `<tag>` and `</tag>`, first occurrence.
fn between<'a>(text: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = text.find(&open)? + open.len();
    let end = text[start..].find(&format!("</{tag}>"))? + start;
    Some(&text[start..end])
}

/// The top-level `<item>`s of `<reservationSet>`: (start, end) byte ranges.
fn reservations(xml: &str) -> Vec<(usize, usize)> {
    let Some(set) = xml.find("<reservationSet>") else {
        return Vec::new();
    };
    let mut at = set + "<reservationSet>".len();
    let mut found = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    while let Some(next) = xml[at..].find('<') {
        let pos = at + next;
        let rest = &xml[pos..];
        if rest.starts_with("<item>") {
            if depth == 0 {
                start = pos;
            }
            depth += 1;
            at = pos + "<item>".len();
        } else if rest.starts_with("</item>") {
            depth -= 1;
            at = pos + "</item>".len();
            if depth == 0 {
                found.push((start, at));
            }
        } else if rest.starts_with("</reservationSet>") && depth == 0 {
            break;
        } else {
            at = pos + 1;
        }
    }
    found
}

/// DescribeInstances as EC2 answers it: the hidden instances left out, the
/// StateReasons EC2 gave.
fn rewrite_describe(
    xml: &str,
    hidden: &[String],
    pending: &[String],
    reasons: &HashMap<String, (String, String)>,
) -> String {
    let mut out = String::with_capacity(xml.len());
    let mut last = 0;
    for (start, end) in reservations(xml) {
        let item = &xml[start..end];
        let id = between(item, "instanceId").unwrap_or_default().to_string();
        out.push_str(&xml[last..start]);
        last = end;
        if hidden.contains(&id) {
            continue;
        }
        let ended = between(item, "instanceState")
            .is_some_and(|s| s.contains("terminated") || s.contains("shutting-down"));
        let booting;
        let item = match (item.find("<instanceState>"), item.find("</instanceState>")) {
            (Some(a), Some(b)) if pending.contains(&id) && item[a..b].contains(">running<") => {
                booting = format!(
                    "{}<instanceState><code>0</code><name>pending</name></instanceState>{}",
                    &item[..a],
                    &item[b + "</instanceState>".len()..]
                );
                booting.as_str()
            }
            _ => item,
        };
        match reasons.get(&id).filter(|_| ended) {
            Some((code, message)) => {
                let reason = format!(
                    "<stateReason><code>{code}</code><message>{message}</message></stateReason>"
                );
                let item = match (item.find("<stateReason>"), item.find("</stateReason>")) {
                    (Some(a), Some(b)) => format!(
                        "{}{reason}{}",
                        &item[..a],
                        &item[b + "</stateReason>".len()..]
                    ),
                    _ => item.replacen("<instanceId>", &format!("{reason}<instanceId>"), 1),
                };
                out.push_str(&item);
            }
            None => out.push_str(item),
        }
    }
    out.push_str(&xml[last..]);
    out
}

/// The `bootforge:profile` tag of `instance`, as moto has it.
fn profile_of(upstream: &str, head: &str, instance: &str) -> Option<String> {
    let body = describe_one(upstream, head, instance)?;
    let at = body.find("<key>bootforge:profile</key>")?;
    between(&body[at..], "value").map(str::to_string)
}

/// moto's DescribeInstances answer for one instance.
fn describe_one(upstream: &str, head: &str, instance: &str) -> Option<String> {
    let body = format!("Action=DescribeInstances&Version=2016-11-15&InstanceId.1={instance}");
    let head: String = head
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("content-length:") && !l.is_empty())
        .map(|l| format!("{l}\r\n"))
        .collect();
    let request = Request {
        head: format!("{head}Content-Length: {}\r\n\r\n", body.len()),
        body: body.into_bytes(),
    };
    forward(upstream, &request).map(|a| body_of(&a))
}

/// Whether moto says `instance` is terminated.
fn terminated(upstream: &str, head: &str, instance: &str) -> bool {
    describe_one(upstream, head, instance)
        .and_then(|b| between(&b, "instanceState").map(|s| s.contains("terminated")))
        .unwrap_or(false)
}

fn serve(conn: TcpStream, upstream: &str, state: &Mutex<State>) {
    let mut writer = conn.try_clone().unwrap();
    let mut reader = BufReader::new(conn);
    while let Some(request) = read_request(&mut reader) {
        let Some(answer) = answer(&request, upstream, state, &mut writer) else {
            return;
        };
        if writer.write_all(&answer).is_err() {
            return;
        }
    }
}

/// What EC2 would answer to `request`; `None` when the connection is to be
/// dropped.
fn answer(
    request: &Request,
    upstream: &str,
    state: &Mutex<State>,
    writer: &mut TcpStream,
) -> Option<Vec<u8>> {
    if request.head.starts_with("POST /_double/") {
        return Some(control(request, upstream, state));
    }
    let p = params(&request.body);
    let action = p.get("Action").cloned().unwrap_or_default();
    let run = action == "RunInstances";
    let dry = p.get("DryRun").is_some_and(|v| v == "true");
    let spot = p
        .get("InstanceMarketOptions.MarketType")
        .is_some_and(|m| m == "spot");
    let (itype, subnet) = (
        p.get("InstanceType").cloned().unwrap_or_default(),
        p.get("SubnetId").cloned().unwrap_or_default(),
    );
    let named: Vec<String> = p
        .iter()
        .filter(|(k, _)| *k == "InstanceId" || k.starts_with("InstanceId."))
        .map(|(_, v)| v.clone())
        .collect();

    let mut s = state.lock().unwrap();
    s.seen.push((
        Instant::now(),
        if run {
            format!(
                "{action} {itype} {subnet}{}{}{}",
                if spot { " spot" } else { "" },
                p.get("InstanceMarketOptions.SpotOptions.MaxPrice")
                    .map(|m| format!(" max {m}"))
                    .unwrap_or_default(),
                if dry { " dry-run" } else { "" }
            )
        } else {
            action.clone()
        },
    ));
    if s.faults.throttle > 0 {
        s.faults.throttle -= 1;
        return Some(error(
            "503 Service Unavailable",
            "RequestLimitExceeded",
            "Request limit exceeded.",
        ));
    }
    let (hide_for, pending_for) = (s.faults.hide_for, s.faults.pending_for);
    let hidden: Vec<String> = s
        .created
        .iter()
        .filter(|(_, at)| at.elapsed() < hide_for)
        .map(|(id, _)| id.clone())
        .collect();
    let pending: Vec<String> = s
        .created
        .iter()
        .filter(|(_, at)| at.elapsed() < pending_for)
        .map(|(id, _)| id.clone())
        .collect();
    if let Some(id) = named.iter().find(|id| hidden.contains(id)) {
        return Some(error(
            "400 Bad Request",
            "InvalidInstanceID.NotFound",
            &format!("The instance ID '{id}' does not exist"),
        ));
    }
    match action.as_str() {
        "DescribeInstances" => {
            let reasons = s.reasons.clone();
            drop(s);
            let answer = forward(upstream, request)?;
            if !answer.starts_with(b"HTTP/1.1 200") {
                return Some(answer);
            }
            return Some(ok(&rewrite_describe(
                &body_of(&answer),
                &hidden,
                &pending,
                &reasons,
            )));
        }
        "DescribeSpotPriceHistory" => return Some(spot_price_history(&p)),
        "GetConsoleOutput" => {
            let id = named.first().cloned().unwrap_or_default();
            let text = s.consoles.get(&id).cloned().unwrap_or_default();
            use base64::Engine as _;
            let output = base64::engine::general_purpose::STANDARD.encode(text);
            return Some(ok(&format!(
                "<GetConsoleOutputResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>bootforge-double</requestId><instanceId>{id}</instanceId><timestamp>2026-01-01T00:00:00.000Z</timestamp><output>{output}</output></GetConsoleOutputResponse>"
            )));
        }
        "TerminateInstances" if s.faults.deny_terminate_profile.is_some() => {
            let denied = s.faults.deny_terminate_profile.clone().unwrap_or_default();
            drop(s);
            let tagged = named.iter().any(|id| {
                profile_of(upstream, &request.head, id).as_deref() == Some(denied.as_str())
            });
            return if tagged {
                Some(error(
                    "403 Forbidden",
                    "UnauthorizedOperation",
                    "You are not authorized to perform this operation. User: arn:aws:sts::222634388391:assumed-role/celery/i-0 is not authorized to perform: ec2:TerminateInstances",
                ))
            } else {
                forward(upstream, request)
            };
        }
        "RunInstances" => {}
        _ => {
            drop(s);
            return forward(upstream, request);
        }
    }

    // RunInstances.
    if dry {
        let denied = s.faults.deny_dry_run;
        drop(s);
        return Some(if denied {
            error(
                "403 Forbidden",
                "UnauthorizedOperation",
                "You are not authorized to perform this operation. User: arn:aws:sts::222634388391:assumed-role/celery/i-0 is not authorized to perform: ec2:RunInstances",
            )
        } else {
            forward(upstream, request)?
        });
    }
    let token = p
        .get("ClientToken")
        .cloned()
        .filter(|_| !s.faults.no_token_protection);
    let slot = token
        .as_ref()
        .map(|t| s.tokens.entry(t.clone()).or_default().clone());
    let run_delay = s.faults.run_delay;
    drop(s);
    // One call per token at a time: a second one waits for the first's answer.
    let mut slot_guard = slot.as_ref().map(|slot| slot.lock().unwrap());
    if let Some(t) = slot_guard.as_mut() {
        let canonical: String = p
            .iter()
            .filter(|(k, _)| k.as_str() != "ClientToken")
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect();
        if t.request.as_ref().is_some_and(|r| *r != canonical) {
            return Some(error(
                "400 Bad Request",
                "IdempotentParameterMismatch",
                "The client token you have provided is associated with a resource that is already deleted or with a request whose parameters differ. Use a different client token.",
            ));
        }
        t.request = Some(canonical);
        if let Some((answer, instance)) = &t.answer {
            let head = request.head.clone();
            return Some(if terminated(upstream, &head, instance) {
                error(
                    "400 Bad Request",
                    "IdempotentInstanceTerminated",
                    "The client token you have provided is associated with an instance that is already terminated.",
                )
            } else {
                answer.clone()
            });
        }
    }
    let mut s = state.lock().unwrap();
    let no_capacity = s
        .faults
        .no_capacity
        .iter()
        .any(|(t, n)| *t == itype && *n == subnet)
        || (spot && s.faults.no_spot)
        || s.faults.capacity_first > 0;
    if s.faults.capacity_first > 0 {
        s.faults.capacity_first -= 1;
    }
    if no_capacity {
        return Some(error(
            "500 Internal Server Error",
            "InsufficientInstanceCapacity",
            &format!(
                "We currently do not have sufficient {itype} capacity in the Availability Zone you requested."
            ),
        ));
    }
    if let Some(code) = s.faults.spot_quota.filter(|_| spot) {
        return Some(error(
            "400 Bad Request",
            code,
            "You have requested more vCPU capacity than your current vCPU limit of 0 allows for the instance bucket that the specified instance type belongs to.",
        ));
    }
    if let Some(code) = s.faults.quota {
        return Some(error(
            "400 Bad Request",
            code,
            "You have requested more vCPU capacity than your current vCPU limit allows for the instance bucket that the specified instance type belongs to.",
        ));
    }
    drop(s);
    thread::sleep(run_delay);
    let answer = forward(upstream, request)?;
    let body = body_of(&answer);
    let mut s = state.lock().unwrap();
    if answer.starts_with(b"HTTP/1.1 200")
        && let Some(id) = between(&body, "instanceId")
    {
        s.created.insert(id.to_string(), Instant::now());
        if let Some(t) = slot_guard.as_mut() {
            t.answer = Some((answer.clone(), id.to_string()));
        }
    }
    if s.faults.drop_after_run > 0 {
        s.faults.drop_after_run -= 1;
        let _ = writer.shutdown(Shutdown::Both);
        return None;
    }
    Some(answer)
}
