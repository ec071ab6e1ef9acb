//! The instance metadata stand-in of the smoke image (`smoke-imds`), served
//! on loopback: its own rules first (it must be as strict as IMDSv2 with
//! tokens required), then the payload's spot watcher against it.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{have, root};

/// A running `smoke-imds` on 127.0.0.1, killed when dropped.
pub struct Imds {
    child: Child,
    pub url: String,
    pub records: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Imds {
    pub fn start() -> Imds {
        let tmp = tempfile::tempdir().unwrap();
        let records = tmp.path().to_path_buf();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .arg(root().join("src/smoke/recipe/smoke-imds"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--records"])
            .arg(&records)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "smoke-imds did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Imds {
            child,
            url: format!("http://127.0.0.1:{port}"),
            records,
            _tmp: tmp,
        }
    }

    /// EC2 decides to reclaim the instance: `action` at `seconds` from now.
    pub fn notice(&self, action: &str, seconds: u64) {
        let at = std::time::SystemTime::now() + Duration::from_secs(seconds);
        let time = humantime::format_rfc3339_seconds(at).to_string();
        std::fs::write(
            self.records.join("spot-notice"),
            format!(r#"{{"action": "{action}", "time": "{time}"}}"#),
        )
        .unwrap();
    }

    fn port(&self) -> u16 {
        self.url.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// One HTTP/1.0 request: the status code and the body.
    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port())).unwrap();
        let mut text = format!("{method} {path} HTTP/1.0\r\nHost: 169.254.169.254\r\n");
        for (k, v) in headers {
            text.push_str(&format!("{k}: {v}\r\n"));
        }
        text.push_str("Content-Length: 0\r\n\r\n");
        stream.write_all(text.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let status = answer
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        (status, body)
    }

    fn token(&self, ttl: &str) -> (u16, String) {
        self.request(
            "PUT",
            "/latest/api/token",
            &[("X-aws-ec2-metadata-token-ttl-seconds", ttl)],
        )
    }
}

impl Drop for Imds {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const ACTION: &str = "/latest/meta-data/spot/instance-action";

#[test]
fn the_stand_in_is_as_strict_as_imdsv2_with_tokens_required() {
    if !have("python3") {
        return;
    }
    let imds = Imds::start();
    // No token, or a made-up one: 401, as with HttpTokens=required.
    assert_eq!(imds.request("GET", ACTION, &[]).0, 401);
    assert_eq!(
        imds.request("GET", ACTION, &[("X-aws-ec2-metadata-token", "made-up")])
            .0,
        401
    );
    // A token needs its TTL header, within 1..21600, and no proxy.
    assert_eq!(imds.request("PUT", "/latest/api/token", &[]).0, 400);
    for bad in ["0", "21601", "ten"] {
        assert_eq!(imds.token(bad).0, 400, "ttl {bad}");
    }
    let forwarded = imds.request(
        "PUT",
        "/latest/api/token",
        &[
            ("X-aws-ec2-metadata-token-ttl-seconds", "60"),
            ("X-Forwarded-For", "10.0.0.1"),
        ],
    );
    assert_eq!(forwarded.0, 403);
    let (status, token) = imds.token("21600");
    assert_eq!(status, 200);
    let with = [("X-aws-ec2-metadata-token", token.as_str())];
    // No notice yet: 404; then the notice as EC2 words it.
    assert_eq!(imds.request("GET", ACTION, &with).0, 404);
    imds.notice("terminate", 120);
    let (status, body) = imds.request("GET", ACTION, &with);
    assert_eq!(status, 200);
    let notice: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(notice["action"], "terminate");
    assert!(notice["time"].as_str().unwrap().ends_with('Z'));
    // An expired token is refused.
    let (_, short) = imds.token("1");
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        imds.request("GET", ACTION, &[("X-aws-ec2-metadata-token", &short)])
            .0,
        401
    );
    let log = std::fs::read_to_string(imds.records.join("imds.log")).unwrap();
    assert!(log.contains(&format!("GET {ACTION} 404")), "{log}");
}

/// Runs the payload's spot watcher against the metadata service at `url`
/// until it ends (at most `bound`); whether it signalled its runner, and the notice it wrote.
fn watch(url: &str, bound: Duration) -> (bool, Option<serde_json::Value>, String) {
    let compiled =
        bootforge::compile(&bootforge::Library::builtin(), "traffic-sign-gpu", &[]).unwrap();
    let watcher = compiled
        .files
        .iter()
        .find(|f| f.path == "/usr/local/lib/bootforge/spot-watch")
        .expect("the payload carries the spot watcher");
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("spot-watch");
    std::fs::write(&script, &watcher.content).unwrap();
    let notice = dir.path().join("notice.json");
    // A runner stand-in: records SIGUSR1 in a file, and waits.
    let told = dir.path().join("told");
    let mut runner = Command::new("bash")
        .args([
            "-c",
            "trap 'echo USR1 >\"$0\"; exit 0' USR1; while :; do sleep 0.1; done",
        ])
        .arg(&told)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut watcher = Command::new("python3")
        .arg(&script)
        .arg(&notice)
        .arg(runner.id().to_string())
        .arg(url)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while start.elapsed() < bound && watcher.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = watcher.kill();
    let out = watcher.wait_with_output().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let _ = runner.kill();
    let _ = runner.wait();
    let signalled = std::fs::read_to_string(&told).is_ok_and(|t| t.contains("USR1"));
    let written = std::fs::read_to_string(&notice)
        .ok()
        .map(|t| serde_json::from_str(&t).unwrap());
    (
        signalled,
        written,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn the_spot_watcher_signals_the_runner_on_a_notice_and_only_then() {
    if !have("python3") {
        return;
    }
    let imds = Imds::start();
    // No notice: it keeps watching, every 5 s, with a token.
    let (signalled, written, _) = watch(&imds.url, Duration::from_secs(6));
    assert!(!signalled && written.is_none());
    let log = std::fs::read_to_string(imds.records.join("imds.log")).unwrap();
    assert!(log.contains("PUT /latest/api/token 200"), "{log}");
    assert_eq!(
        log.matches(&format!("GET {ACTION} 404")).count(),
        2,
        "{log}"
    );
    // A rebalance recommendation is logged, not acted on.
    std::fs::write(
        imds.records.join("rebalance"),
        r#"{"noticeTime": "2026-12-01T12:00:00Z"}"#,
    )
    .unwrap();
    let (signalled, _, out) = watch(&imds.url, Duration::from_secs(3));
    assert!(!signalled);
    assert!(out.contains("rebalance recommendation"), "{out}");
    // The notice: written, then the runner is told.
    imds.notice("terminate", 120);
    let (signalled, written, out) = watch(&imds.url, Duration::from_secs(10));
    assert!(signalled, "{out}");
    let written = written.unwrap();
    assert_eq!(written["action"], "terminate");
    let noticed = bootforge::clock::parse_rfc3339(written["noticed_at"].as_str().unwrap()).unwrap();
    let left = written["action_epoch"].as_u64().unwrap() - noticed;
    assert!((110..=121).contains(&left), "{left}s left when noticed");
}

#[test]
fn the_spot_watcher_outlives_a_metadata_service_that_does_not_answer() {
    if !have("python3") {
        return;
    }
    // Nothing listens there: the watcher warns once and goes on watching.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (signalled, written, out) =
        watch(&format!("http://127.0.0.1:{port}"), Duration::from_secs(7));
    assert!(!signalled && written.is_none());
    assert_eq!(out.matches("does not answer").count(), 1, "{out}");
}
