//! The launcher against a real EC2 API emulator (moto_server on a free
//! loopback port, one per test), and the fault-injecting proxy in front of
//! it for what moto does not do.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{Filter, Tag};
use base64::Engine as _;
use serde_json::Value as Json;

use crate::proxy::{Faults, Proxy};
use crate::{Run, Test, contains};

/// A moto_server of this test's own, killed when the test ends.
pub struct Moto {
    child: Child,
    pub url: String,
    pub address: String,
}

impl Moto {
    fn start() -> Option<Moto> {
        if !crate::have("moto_server") {
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let address = format!("127.0.0.1:{port}");
        let start = Instant::now();
        while TcpStream::connect(&address).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "moto_server did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(Moto {
            child,
            url: format!("http://{address}"),
            address,
        })
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// An emulated account: a VPC with two subnets, a security group, the key
/// pair, and an AMI moto knows.
pub struct World {
    pub moto: Moto,
    pub rt: tokio::runtime::Runtime,
    pub client: Client,
    pub subnets: [String; 2],
    pub sg: String,
    pub ami: String,
    pub logs: tempfile::TempDir,
}

/// An SDK client for `endpoint` (moto, or the double in front of it) that
/// tries each call once: the tests see EC2's answers as they are.
pub fn client_for(rt: &tokio::runtime::Runtime, endpoint: &str) -> Client {
    rt.block_on(async {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-2"))
            .endpoint_url(endpoint)
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .load()
            .await;
        Client::new(&config)
    })
}

impl World {
    pub fn new() -> Option<World> {
        let moto = Moto::start()?;
        let rt = runtime();
        let client = client_for(&rt, &moto.url);
        let (subnets, sg, ami) = rt.block_on(async {
            let vpc = client
                .create_vpc()
                .cidr_block("10.0.0.0/16")
                .send()
                .await
                .unwrap();
            let vpc = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
            let mut subnets = Vec::new();
            for (cidr, az) in [("10.0.1.0/24", "us-east-2a"), ("10.0.2.0/24", "us-east-2b")] {
                let s = client
                    .create_subnet()
                    .vpc_id(&vpc)
                    .cidr_block(cidr)
                    .availability_zone(az)
                    .send()
                    .await
                    .unwrap();
                subnets.push(s.subnet().unwrap().subnet_id().unwrap().to_string());
            }
            let sg = client
                .create_security_group()
                .group_name("traffic-sign")
                .description("bootforge tests")
                .vpc_id(&vpc)
                .send()
                .await
                .unwrap();
            client
                .create_key_pair()
                .key_name("traffic-sign-inventory_keypair")
                .send()
                .await
                .unwrap();
            let images = client.describe_images().send().await.unwrap();
            let ami = images.images()[0].image_id().unwrap().to_string();
            (
                [subnets[0].clone(), subnets[1].clone()],
                sg.group_id().unwrap().to_string(),
                ami,
            )
        });
        Some(World {
            moto,
            rt,
            client,
            subnets,
            sg,
            ami,
            logs: tempfile::tempdir().unwrap(),
        })
    }

    /// The profile's ids replaced with the emulated account's. The payload
    /// does not depend on them, so it stays byte-identical to golden/.
    pub fn sets(&self) -> Vec<String> {
        [
            format!(
                "instance.subnets=[{}, {}]",
                self.subnets[0], self.subnets[1]
            ),
            format!("instance.security_groups=[{}]", self.sg),
            format!("instance.ami={}", self.ami),
            // moto wants a size where EC2 would keep the AMI's.
            "instance.root_volume_gb=100".to_string(),
            format!("job.host_log_dir={}", self.logs.path().display()),
        ]
        .into_iter()
        .flat_map(|s| ["--set".to_string(), s])
        .collect()
    }

    /// `bootforge ARGS` talking to `endpoint` (moto, or a proxy in front of it).
    pub fn bootforge(&self, endpoint: &str) -> Test {
        let mut t = Test::new();
        t.env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/nonexistent/bootforge-test")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/bootforge-test")
            .env("AWS_REGION", "us-east-2");
        t
    }

    pub fn launch(&self, endpoint: &str, extra: &[&str]) -> Run {
        self.bootforge(endpoint)
            .args([
                "launch",
                "traffic-sign-gpu",
                "--json",
                "--poll",
                "0.1",
                "--ec2-poll",
                "0.2",
                "--status-grace",
                "1",
            ])
            .args(self.sets())
            .args(extra)
            .run()
    }

    pub fn instances(&self, filters: &[(&str, &str)]) -> Vec<aws_sdk_ec2::types::Instance> {
        self.rt.block_on(async {
            let mut req = self.client.describe_instances();
            for (k, v) in filters {
                req = req.filters(Filter::builder().name(*k).values(*v).build());
            }
            let out = req.send().await.unwrap();
            out.reservations()
                .iter()
                .flat_map(|r| r.instances().to_vec())
                .collect()
        })
    }

    pub fn live_with_job(&self, job: &str) -> Vec<aws_sdk_ec2::types::Instance> {
        self.instances(&[
            ("tag:bootforge:job", job),
            ("instance-state-name", "running"),
        ])
    }

    /// The id of job `job`'s instance, once a launch running beside the
    /// test has started it.
    pub fn wait_for_job(&self, job: &str) -> String {
        let start = Instant::now();
        loop {
            if let Some(i) = self.live_with_job(job).first() {
                return i.instance_id().unwrap().to_string();
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{job} never started"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn terminate(&self, id: &str) {
        self.rt.block_on(async {
            self.client
                .terminate_instances()
                .instance_ids(id)
                .send()
                .await
                .unwrap();
        });
    }
}

pub fn json(run: &Run) -> Json {
    serde_json::from_str(&run.stdout())
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", run.stdout(), run.stderr()))
}

pub fn tag<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

#[test]
fn every_run_instances_field_reads_back_as_the_profile_says() {
    let Some(w) = World::new() else { return };
    let run = w.launch(&w.moto.url, &[]).success();
    let out = json(&run);
    assert_eq!(out["launched"], true);
    let id = out["instance_id"].as_str().unwrap();
    let golden = crate::compile::default_launched_bytes();

    let i = &w.instances(&[("instance-id", id)])[0];
    assert_eq!(i.image_id(), Some(w.ami.as_str()));
    assert_eq!(i.instance_type().unwrap().as_str(), "g6e.xlarge");
    assert_eq!(
        i.subnet_id(),
        Some(w.subnets[0].as_str()),
        "the first subnet first"
    );
    assert_eq!(i.key_name(), Some("traffic-sign-inventory_keypair"));
    let groups: Vec<&str> = i
        .security_groups()
        .iter()
        .filter_map(|g| g.group_id())
        .collect();
    assert_eq!(groups, [w.sg.as_str()]);
    let md = i.metadata_options().unwrap();
    assert_eq!(md.http_tokens().unwrap().as_str(), "required");
    assert_eq!(md.http_put_response_hop_limit(), Some(1));
    assert_eq!(md.instance_metadata_tags().unwrap().as_str(), "disabled");
    let tags = i.tags();
    assert_eq!(tag(tags, "Name"), Some("bootforge-traffic-sign-gpu-manual"));
    assert_eq!(tag(tags, "Project"), Some("traffic-sign-inventory"));
    assert_eq!(tag(tags, "bootforge:profile"), Some("traffic-sign-gpu"));
    assert_eq!(tag(tags, "bootforge:job"), Some("manual"));
    let sha = out["payload_sha256"].as_str().unwrap();
    assert_eq!(tag(tags, "bootforge:payload-sha256"), Some(sha));
    let deadline =
        bootforge::clock::parse_rfc3339(tag(tags, "bootforge:deadline").unwrap()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // timeout 120 min + grace 10 min + 15 min for boot and power-off.
    assert!(
        (now + 145 * 60 - 120..=now + 145 * 60 + 5).contains(&deadline),
        "{deadline} vs {now}"
    );

    let (user_data, shutdown, volume) = w.rt.block_on(async {
        let ud = w
            .client
            .describe_instance_attribute()
            .instance_id(id)
            .attribute("userData".into())
            .send()
            .await
            .unwrap();
        let sd = w
            .client
            .describe_instance_attribute()
            .instance_id(id)
            .attribute("instanceInitiatedShutdownBehavior".into())
            .send()
            .await
            .unwrap();
        let vols = w
            .client
            .describe_volumes()
            .filters(
                Filter::builder()
                    .name("attachment.instance-id")
                    .values(id)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        (
            ud.user_data().and_then(|v| v.value()).unwrap().to_string(),
            sd.instance_initiated_shutdown_behavior()
                .and_then(|v| v.value())
                .unwrap()
                .to_string(),
            vols.volumes()[0].clone(),
        )
    });
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(user_data)
        .unwrap();
    // Compared as a flag: the bytes themselves would flood the report.
    assert!(
        decoded == golden,
        "the user-data is golden/traffic-sign-gpu.yaml gzipped, byte for byte"
    );
    assert_eq!(shutdown, "terminate");
    assert_eq!(volume.volume_type().unwrap().as_str(), "gp3");
    assert_eq!(volume.size(), Some(100));
    assert_eq!(volume.attachments()[0].device(), Some("/dev/xvda"));
    let root = i
        .block_device_mappings()
        .iter()
        .find(|m| m.device_name() == Some("/dev/xvda"))
        .unwrap();
    assert_eq!(
        root.ebs().and_then(|e| e.delete_on_termination()),
        Some(true)
    );
    assert_eq!(
        tag(volume.tags(), "bootforge:job"),
        Some("manual"),
        "the volume is tagged at launch too"
    );
    assert_eq!(out["price_per_hour"], 1.861);
    assert_eq!(
        out["private_ip"].as_str().map(|s| s.starts_with("10.0.1.")),
        Some(true)
    );
}

#[test]
fn a_second_launch_of_the_same_job_starts_nothing() {
    let Some(w) = World::new() else { return };
    let first = json(&w.launch(&w.moto.url, &["--set", "job_id=run-1"]).success());
    let second = w.launch(&w.moto.url, &["--set", "job_id=run-1"]).success();
    let second_json = json(&second);
    assert_eq!(second_json["launched"], false);
    assert_eq!(second_json["instance_id"], first["instance_id"]);
    assert!(
        second.stderr().contains("already has instance"),
        "{}",
        second.stderr()
    );
    assert_eq!(w.live_with_job("run-1").len(), 1);
}

#[test]
fn dry_run_says_allowed_or_names_the_denied_permission() {
    let Some(w) = World::new() else { return };
    let run = w.launch(&w.moto.url, &["--dry-run"]).success();
    assert_eq!(json(&run)["allowed"], true);
    assert!(w.instances(&[]).is_empty(), "a dry run launches nothing");

    let proxy = Proxy::start(
        &w.moto.address,
        Faults {
            deny_dry_run: true,
            ..Faults::default()
        },
    );
    let run = w.launch(&proxy.url, &["--dry-run"]).failure(1);
    let out = json(&run);
    assert_eq!(out["allowed"], false);
    assert!(
        out["message"]
            .as_str()
            .unwrap()
            .contains("ec2:RunInstances"),
        "{out}"
    );
}

#[test]
fn ps_terminate_by_job_and_reap() {
    let Some(w) = World::new() else { return };
    let a = json(&w.launch(&w.moto.url, &["--set", "job_id=job-a"]).success());
    let b = json(&w.launch(&w.moto.url, &["--set", "job_id=job-b"]).success());
    let c = json(&w.launch(&w.moto.url, &["--set", "job_id=job-c"]).success());
    // An instance bootforge never launched, and b's deadline moved to the past.
    let stranger = w.rt.block_on(async {
        let out = w
            .client
            .run_instances()
            .image_id(&w.ami)
            .min_count(1)
            .max_count(1)
            .subnet_id(&w.subnets[0])
            .tag_specifications(
                aws_sdk_ec2::types::TagSpecification::builder()
                    .resource_type(aws_sdk_ec2::types::ResourceType::Instance)
                    .tags(
                        Tag::builder()
                            .key("bootforge:deadline")
                            .value("2000-01-01T00:00:00Z")
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .unwrap();
        w.client
            .create_tags()
            .resources(b["instance_id"].as_str().unwrap())
            .tags(
                Tag::builder()
                    .key("bootforge:deadline")
                    .value("2001-01-01T00:00:00Z")
                    .build(),
            )
            .send()
            .await
            .unwrap();
        out.instances()[0].instance_id().unwrap().to_string()
    });

    let ps = json(
        &w.bootforge(&w.moto.url)
            .args(["ps", "--json"])
            .run()
            .success(),
    );
    let jobs: Vec<&str> = ps
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["job"].as_str().unwrap())
        .collect();
    assert_eq!(jobs.len(), 3, "{ps}");
    for job in ["job-a", "job-b", "job-c"] {
        assert!(jobs.contains(&job), "{ps}");
    }
    let row_b = ps
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["job"] == "job-b")
        .unwrap();
    assert_eq!(row_b["past_deadline"], true);
    assert_eq!(row_b["profile"], "traffic-sign-gpu");
    assert!(row_b["cost_so_far"].is_f64());

    // Listing alone terminates nothing.
    let listed = json(
        &w.bootforge(&w.moto.url)
            .args(["reap", "--json"])
            .run()
            .success(),
    );
    assert_eq!(listed["expired"].as_array().unwrap().len(), 1);
    assert_eq!(listed["expired"][0]["instance"]["id"], b["instance_id"]);
    assert_eq!(listed["expired"][0]["from_tag"], true);
    assert_eq!(w.live_with_job("job-b").len(), 1);

    let reaped = json(
        &w.bootforge(&w.moto.url)
            .args(["reap", "--yes", "--json"])
            .run()
            .success(),
    );
    assert_eq!(reaped["terminated"], serde_json::json!([b["instance_id"]]));
    assert!(w.live_with_job("job-b").is_empty());
    assert_eq!(
        w.live_with_job("job-a").len(),
        1,
        "an unexpired instance is left alone"
    );
    let state = |id: &str| {
        w.instances(&[("instance-id", id)])[0]
            .state()
            .unwrap()
            .name()
            .unwrap()
            .as_str()
            .to_string()
    };
    assert_eq!(
        state(&stranger),
        "running",
        "an instance without bootforge's job tag is never touched"
    );

    let run = w
        .bootforge(&w.moto.url)
        .args(["terminate", "--job", "job-c", "--json"])
        .run()
        .success();
    assert_eq!(
        json(&run)["terminated"],
        serde_json::json!([c["instance_id"]])
    );
    assert!(w.live_with_job("job-c").is_empty());
    assert_eq!(w.live_with_job("job-a").len(), 1);
    let refused = w
        .bootforge(&w.moto.url)
        .args(["terminate", &stranger])
        .run()
        .failure(2);
    assert!(
        refused.stderr().contains("was not launched by bootforge"),
        "{}",
        refused.stderr()
    );
    assert_eq!(state(&stranger), "running");
    let _ = a;
}

#[test]
fn wait_maps_each_outcome_to_an_exit_code() {
    let Some(w) = World::new() else { return };
    for (outcome, code) in [
        (Some("succeeded"), 0),
        (Some("failed"), 1),
        (Some("timed_out"), 1),
        (Some("mount_failed"), 1),
        (Some("deps_failed"), 1),
        (Some("gpu_missing"), 1),
        (None, 3),
    ] {
        let job = format!("wait-{}", outcome.unwrap_or("none").replace('_', "-"));
        let mut child = w
            .bootforge(&w.moto.url)
            .args([
                "launch",
                "traffic-sign-gpu",
                "--json",
                "--poll",
                "0.1",
                "--ec2-poll",
                "0.2",
                "--status-grace",
                "1",
                "--wait",
            ])
            .args(w.sets())
            .args(["--set", &format!("job_id={job}")])
            .spawn();
        // The instance would write its status and terminate itself; here the
        // test does both.
        let id = w.wait_for_job(&job);
        if let Some(outcome) = outcome {
            let dir = w.logs.path().join(&job);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join("status.json"),
                format!("{{\"job_id\": \"{job}\", \"instance_id\": \"{id}\", \"outcome\": \"{outcome}\", \"exit_code\": 0}}"),
            )
            .unwrap();
        }
        w.terminate(&id);
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(code), "{job}");
    }
}

#[test]
fn capacity_errors_fall_back_in_profile_order() {
    let Some(w) = World::new() else { return };
    let proxy = Proxy::start(
        &w.moto.address,
        Faults {
            no_capacity: vec![
                ("g6e.xlarge".to_string(), w.subnets[0].clone()),
                ("g6e.xlarge".to_string(), w.subnets[1].clone()),
            ],
            ..Faults::default()
        },
    );
    let run = w
        .launch(
            &proxy.url,
            &[
                "--set",
                "instance.types=[g6e.xlarge, g6e.2xlarge]",
                "--set",
                "instance.max_cost_usd=10",
            ],
        )
        .success();
    let out = json(&run);
    assert_eq!(out["instance_type"], "g6e.2xlarge");
    assert_eq!(out["subnet"], w.subnets[0].as_str());
    let tried = proxy.run_instances();
    assert_eq!(
        tried,
        [
            format!("RunInstances g6e.xlarge {}", w.subnets[0]),
            format!("RunInstances g6e.xlarge {}", w.subnets[1]),
            format!("RunInstances g6e.2xlarge {}", w.subnets[0]),
        ],
        "each capacity error tried once, in order, never retried in place"
    );
    assert_eq!(out["no_capacity"].as_array().unwrap().len(), 2);
}

#[test]
fn throttling_is_retried() {
    let Some(w) = World::new() else { return };
    let proxy = Proxy::start(
        &w.moto.address,
        Faults {
            throttle: 3,
            ..Faults::default()
        },
    );
    let out = json(
        &w.launch(&proxy.url, &["--set", "job_id=throttled"])
            .success(),
    );
    assert_eq!(out["launched"], true);
    assert_eq!(w.live_with_job("throttled").len(), 1);
}

#[test]
fn a_connection_dropped_after_run_instances_leaves_one_instance() {
    let Some(w) = World::new() else { return };
    let proxy = Proxy::start(
        &w.moto.address,
        Faults {
            drop_after_run: 1,
            ..Faults::default()
        },
    );
    let first = w.launch(&proxy.url, &["--set", "job_id=dropped"]);
    // The SDK retries with the same ClientToken and gets the same instance.
    let first = json(&first.success());
    assert_eq!(w.live_with_job("dropped").len(), 1);
    // A retry of the whole launch finds it.
    let again = json(&w.launch(&proxy.url, &["--set", "job_id=dropped"]).success());
    assert_eq!(again["launched"], false);
    assert_eq!(again["instance_id"], first["instance_id"]);
    assert_eq!(w.live_with_job("dropped").len(), 1);
    let runs = proxy.run_instances().len();
    assert_eq!(runs, 2, "the dropped call and its retry");
}

#[test]
fn ten_simultaneous_launches_of_one_job_leave_one_instance_and_ten_jobs_ten() {
    let Some(w) = World::new() else { return };
    let proxy = Proxy::start(&w.moto.address, Faults::default());
    let spawn = |job: &str| {
        w.bootforge(&proxy.url)
            .args([
                "launch",
                "traffic-sign-gpu",
                "--json",
                "--poll",
                "0.1",
                "--ec2-poll",
                "0.2",
                "--status-grace",
                "1",
            ])
            .args(w.sets())
            .args(["--set", &format!("job_id={job}")])
            .spawn()
    };
    let same: Vec<_> = (0..10).map(|_| spawn("same-job")).collect();
    for mut c in same {
        assert!(c.wait().unwrap().success());
    }
    assert_eq!(w.live_with_job("same-job").len(), 1);

    let jobs: Vec<_> = (0..10).map(|n| spawn(&format!("job-{n}"))).collect();
    for mut c in jobs {
        assert!(c.wait().unwrap().success());
    }
    for n in 0..10 {
        assert_eq!(w.live_with_job(&format!("job-{n}")).len(), 1);
    }
}

#[test]
fn aws_errors_are_one_line_with_what_to_do() {
    let Some(w) = World::new() else { return };
    let run = w
        .launch(
            &w.moto.url,
            &["--set", "instance.subnets=[subnet-0123456789abcdef0]"],
        )
        .failure(2);
    let text = run.stderr();
    contains(&text, "error[aws]: RunInstances: InvalidSubnetID.NotFound");
    contains(
        &text,
        "help: the subnet does not exist in this region: check instance.subnets",
    );

    let run = w
        .bootforge("http://127.0.0.1:9")
        .args(["ps"])
        .run()
        .failure(2);
    contains(&run.stderr(), "error[aws]: DescribeInstances");
    contains(&run.stderr(), "EC2 could not be reached");
}

#[test]
fn the_cost_guard_refuses_with_both_numbers() {
    let run = Test::new()
        .args([
            "launch",
            "traffic-sign-gpu",
            "--set",
            "instance.max_cost_usd=2",
        ])
        .run()
        .failure(1);
    let text = run.stderr();
    contains(&text, "refusing to launch profile `traffic-sign-gpu`");
    contains(
        &text,
        "$1.8610/h × 2.17 h of timeout and grace = $4.03, over max_cost_usd $2.00",
    );
}

#[test]
fn iam_policy_is_least_privilege() {
    let run = Test::new()
        .args(["iam-policy", "traffic-sign-gpu"])
        .run()
        .success();
    let policy: Json = serde_json::from_str(&run.stdout()).unwrap();
    for statement in policy["Statement"].as_array().unwrap() {
        if statement["Resource"] == "*" {
            assert_eq!(
                statement["Action"],
                serde_json::json!(["ec2:DescribeInstances", "ec2:DescribeInstanceStatus"]),
                "only the Describe calls, which cannot be scoped, get Resource *"
            );
        }
    }
    insta::assert_snapshot!("iam_policy_traffic_sign_gpu", run.stdout());
    assert!(!run.stdout().contains("DescribeSpotPriceHistory"));
    // A spot profile's host reads spot prices for `cost`, and only that more.
    let spot = Test::new()
        .args(["iam-policy", "traffic-sign-gpu-spot"])
        .run()
        .success();
    let policy: Json = serde_json::from_str(&spot.stdout()).unwrap();
    let unscoped: Vec<&Json> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["Resource"] == "*")
        .map(|s| &s["Action"])
        .collect();
    assert_eq!(
        unscoped,
        [
            &serde_json::json!(["ec2:DescribeInstances", "ec2:DescribeInstanceStatus"]),
            &serde_json::json!("ec2:DescribeSpotPriceHistory"),
        ]
    );
}

#[test]
fn cost_prices_the_budget_and_names_cheaper_types() {
    let run = Test::new()
        .args(["cost", "traffic-sign-gpu", "--json"])
        .run()
        .success();
    let report: Json = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(report["types"][0]["price_per_hour"], 1.861);
    let at_timeout = report["types"][0]["cost_at_timeout"].as_f64().unwrap();
    assert!((at_timeout - 1.861 * 130.0 / 60.0).abs() < 1e-9);
    // No type with an L40S 48 GB or better is cheaper than g6e.xlarge.
    assert!(report["cheaper"].as_array().unwrap().is_empty(), "{report}");
    let run = Test::new()
        .args(["cost", "g6-quick", "--json"])
        .run()
        .success();
    let report: Json = serde_json::from_str(&run.stdout()).unwrap();
    assert!(
        report["cheaper"].as_array().unwrap().is_empty(),
        "g6.xlarge is the cheapest L4: {report}"
    );
    let run = Test::new()
        .args([
            "cost",
            "traffic-sign-gpu",
            "--set",
            "instance.types=[g6e.4xlarge]",
        ])
        .run()
        .success();
    assert!(
        run.stdout().contains("g6e.xlarge"),
        "a cheaper L40S is named:\n{}",
        run.stdout()
    );
    contains(&run.stdout(), "$4.03 at the timeout");
}

#[test]
fn cost_shows_the_spot_price_beside_the_on_demand_one_and_the_worst_case() {
    let spot = |profile: &str, market: &str| -> Json {
        let run = Test::new()
            .args(["cost", profile, "--json", "--set"])
            .arg(format!("instance.market={market}"))
            .run()
            .success();
        serde_json::from_str(&run.stdout()).unwrap()
    };
    let report = spot("traffic-sign-gpu", "spot-then-on-demand");
    let t = &report["types"][0];
    assert_eq!(report["market"], "spot-then-on-demand");
    assert!(
        report["spot_source"].as_str().unwrap().contains("catalog"),
        "labelled as the catalog's figure"
    );
    assert_eq!(t["spot_price_per_hour"], 0.67);
    let hours = 130.0 / 60.0;
    let expected = t["expected_at_timeout"].as_f64().unwrap();
    assert!((expected - 0.67 * hours).abs() < 1e-9, "{t}");
    let saving = t["expected_saving"].as_f64().unwrap();
    assert!((saving - (1.0 - 0.67 / 1.861)).abs() < 1e-9, "{t}");
    // A spot instance's price can rise to the on-demand one: the worst case.
    let worst = t["worst_case"].as_f64().unwrap();
    assert!((worst - 1.861 * hours).abs() < 1e-9, "{t}");
    // On demand: no spot figure, the expected cost is the on-demand one.
    let report = spot("traffic-sign-gpu", "on-demand");
    assert!(report["types"][0]["spot_price_per_hour"].is_null());
    assert_eq!(
        report["types"][0]["expected_at_timeout"],
        report["types"][0]["cost_at_timeout"]
    );
    // A type the catalog has no spot price for says so, never a guess.
    let report = spot("g6-quick", "spot");
    assert!(report["types"][0]["spot_price_per_hour"].is_null());
    assert_eq!(
        report["types"][0]["expected_at_timeout"],
        report["types"][0]["cost_at_timeout"]
    );
    let text = Test::new()
        .args(["cost", "g6-quick", "--set", "instance.market=spot"])
        .run()
        .success()
        .stdout();
    contains(&text, "spot: no catalog price");
}

#[test]
fn cost_takes_the_spot_price_from_ec2_when_it_answers() {
    let Some(w) = World::new() else { return };
    let proxy = crate::proxy::Proxy::start(&w.moto.address, crate::proxy::Faults::default());
    let report = |endpoint: &str, sets: &[&str]| -> Json {
        let run = w
            .bootforge(endpoint)
            .args(["cost", "traffic-sign-gpu-spot", "--json"])
            .args(sets)
            .run()
            .success();
        serde_json::from_str(&run.stdout()).unwrap()
    };
    // The profile's zone (us-east-2b): EC2's price there, the double's 0.7124.
    let r = report(&proxy.url, &[]);
    let t = &r["types"][0];
    assert_eq!(t["spot_price_per_hour"], 0.7124, "{r:#}");
    assert_eq!(t["spot_from"], "ec2");
    assert!(
        r["spot_source"].as_str().unwrap().contains("us-east-2b"),
        "{r:#}"
    );
    let expected = t["expected_at_timeout"].as_f64().unwrap();
    assert!((expected - 0.7124 * 130.0 / 60.0).abs() < 1e-9, "{t}");
    // The worst case does not move with today's price: it is at the cap.
    assert!((t["worst_case"].as_f64().unwrap() - 3.0 * 1.861 * 130.0 / 60.0).abs() < 1e-9);
    assert_eq!(proxy.count("DescribeSpotPriceHistory"), 1);
    // No zone stated: the highest of the region's zones, as a job may land
    // in any.
    let r = report(&proxy.url, &["--set", "instance.availability_zone=null"]);
    assert_eq!(r["types"][0]["spot_price_per_hour"], 0.7124, "{r:#}");
    let r = report(
        &proxy.url,
        &[
            "--set",
            "instance.types=[g6.xlarge]",
            "--set",
            "instance.availability_zone=null",
        ],
    );
    assert_eq!(r["types"][0]["spot_price_per_hour"], 0.3610, "{r:#}");
    // EC2 does not answer: the catalog's figure, labelled, with why.
    let r = report("http://127.0.0.1:9", &[]);
    assert_eq!(r["types"][0]["spot_price_per_hour"], 0.67);
    assert_eq!(r["types"][0]["spot_from"], "catalog");
    let source = r["spot_source"].as_str().unwrap();
    assert!(
        source.contains("catalog") && source.contains("EC2 did not answer"),
        "{source}"
    );
}

#[test]
fn a_maximum_spot_price_caps_the_worst_case_and_the_cost_guard() {
    // On demand, $4.03 does not fit under $2.50; spot only, capped at
    // $0.90 an hour, the worst case is $1.95 and it does.
    let validate = |sets: &[&str]| {
        let mut t = Test::new();
        t.args([
            "validate",
            "traffic-sign-gpu",
            "--set",
            "instance.max_cost_usd=2.5",
        ]);
        for s in sets {
            t.args(["--set", s]);
        }
        t.run()
    };
    contains(&validate(&[]).failure(1).stderr(), "over-budget");
    validate(&["instance.market=spot", "instance.max_spot_price_usd=0.9"]).success();
    // Spot then on demand may end on demand: the cap does not lower it.
    contains(
        &validate(&[
            "instance.market=spot-then-on-demand",
            "instance.max_spot_price_usd=0.9",
        ])
        .failure(1)
        .stderr(),
        "over-budget",
    );
    let run = Test::new()
        .args(["cost", "traffic-sign-gpu", "--json"])
        .args([
            "--set",
            "instance.market=spot",
            "--set",
            "instance.max_spot_price_usd=0.9",
        ])
        .run()
        .success();
    let report: Json = serde_json::from_str(&run.stdout()).unwrap();
    let worst = report["types"][0]["worst_case"].as_f64().unwrap();
    assert!((worst - 0.9 * 130.0 / 60.0).abs() < 1e-9, "{report}");
    let run = Test::new()
        .args(["compile", "--set", "instance.max_spot_price_usd=0"])
        .run()
        .failure(2);
    contains(&run.stderr(), "more than 0");
}

#[test]
fn missing_credentials_are_one_line_with_what_to_do() {
    let mut t = Test::new();
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ] {
        t.env_remove(var);
    }
    let run = t
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/bootforge-test")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/bootforge-test")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .args(["ps", "--region", "us-east-2"])
        .run()
        .failure(2);
    insta::assert_snapshot!("missing_credentials", run.stderr());
}

#[test]
fn follow_streams_the_log_while_waiting() {
    let Some(w) = World::new() else { return };
    let child = w
        .bootforge(&w.moto.url)
        .args([
            "launch",
            "traffic-sign-gpu",
            "--json",
            "--poll",
            "0.1",
            "--ec2-poll",
            "0.2",
            "--status-grace",
            "1",
            "--wait",
            "--follow",
        ])
        .args(w.sets())
        .args(["--set", "job_id=followed"])
        .spawn();
    let id = w.wait_for_job("followed");
    let dir = w.logs.path().join("followed");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("job.log"), "phase mount: start\n").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("job.log"))
        .unwrap();
    std::io::Write::write_all(&mut log, b"phase run: done in 3605s\n").unwrap();
    std::fs::write(
        dir.join("status.json"),
        format!(r#"{{"instance_id": "{id}", "outcome": "succeeded", "exit_code": 0}}"#),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    w.terminate(&id);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Progress lines may come between the log's lines, not inside them.
    let first = stderr
        .find("phase mount: start\n")
        .expect("the first log line is streamed");
    let second = stderr
        .find("phase run: done in 3605s\n")
        .expect("the line appended later is streamed");
    assert!(first < second, "{stderr}");
    let doc: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["wait"]["outcome"], "succeeded");
}

#[test]
fn spot_falls_back_to_on_demand() {
    let Some(w) = World::new() else { return };
    let proxy = Proxy::start(
        &w.moto.address,
        Faults {
            no_spot: true,
            ..Faults::default()
        },
    );
    let out = json(
        &w.launch(
            &proxy.url,
            &[
                "--set",
                "instance.market=spot-then-on-demand",
                "--set",
                "instance.max_spot_price_usd=0.9",
                "--set",
                "job_id=spotty",
            ],
        )
        .success(),
    );
    assert_eq!(out["launched"], true);
    let tried = proxy.run_instances();
    // The spot requests carry the profile's maximum price.
    assert_eq!(
        tried,
        [
            format!("RunInstances g6e.xlarge {} spot max 0.9000", w.subnets[0]),
            format!("RunInstances g6e.xlarge {} spot max 0.9000", w.subnets[1]),
            format!("RunInstances g6e.xlarge {}", w.subnets[0]),
        ],
        "spot in every subnet first, then on-demand"
    );
    assert_eq!(w.live_with_job("spotty").len(), 1);
}

#[test]
fn pass_role_is_on_the_role_inside_the_instance_profile() {
    let policy = |extra: &[&str]| -> Json {
        let run = Test::new()
            .args(["iam-policy", "traffic-sign-gpu"])
            .args(extra)
            .run()
            .success();
        serde_json::from_str(&run.stdout()).unwrap()
    };
    let pass = |p: &Json| {
        p["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["Action"] == "iam:PassRole")
            .cloned()
    };
    assert!(
        pass(&policy(&[])).is_none(),
        "no instance profile, no PassRole"
    );
    let p = policy(&[
        "--set",
        "instance.instance_profile=gpu-worker-profile",
        "--set",
        "instance.instance_role=gpu-worker-role-20241206",
    ]);
    let s = pass(&p).unwrap();
    assert_eq!(
        s["Resource"], "arn:aws:iam::222634388391:role/gpu-worker-role-20241206",
        "the role's name, not the profile's"
    );
    assert_eq!(
        s["Condition"]["StringEquals"]["iam:PassedToService"],
        "ec2.amazonaws.com"
    );
    let p = policy(&[
        "--set",
        "instance.instance_profile=gpu-worker-profile",
        "--set",
        "instance.instance_role=arn:aws:iam::222634388391:role/service/gpu-worker",
    ]);
    assert_eq!(
        pass(&p).unwrap()["Resource"],
        "arn:aws:iam::222634388391:role/service/gpu-worker"
    );
    // The console is read only from the profile's own instances.
    let console = p["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Action"] == "ec2:GetConsoleOutput")
        .unwrap();
    assert_eq!(
        console["Condition"]["StringEquals"]["aws:ResourceTag/bootforge:profile"],
        "traffic-sign-gpu"
    );
}
