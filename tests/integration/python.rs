//! The Python API (`python/bootforge`), tested with pytest against the real
//! binary: this test starts what those tests need (moto with the project's
//! EC2 double in front, a second double that answers every launch with a
//! quota error, the emulated account's ids) and names it in their
//! environment; the local rehearsals use the smoke image.

use std::process::Command;

use crate::launch::World;
use crate::proxy::{Faults, Proxy};
use crate::root;

#[test]
fn python_api() {
    if !crate::celery::have_python_module("pytest") {
        return;
    }
    let Some(world) = World::new() else { return };
    let double = Proxy::start(&world.moto.address, Faults::default());
    let quota = Proxy::start(
        &world.moto.address,
        Faults {
            quota: Some("VcpuLimitExceeded"),
            ..Faults::default()
        },
    );
    let sets: serde_json::Map<String, serde_json::Value> = world
        .sets()
        .chunks(2)
        .filter_map(|pair| pair[1].split_once('='))
        .map(|(k, v)| (k.to_string(), v.into()))
        .collect();
    let state = tempfile::tempdir().unwrap();
    let mut pytest = Command::new("python3");
    pytest
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "python/tests",
        ])
        // The wheel's own tests run where the wheel is built (scripts/test).
        .args(["--ignore", "python/tests/test_wheel.py"])
        .current_dir(root())
        .env("BOOTFORGE", env!("CARGO_BIN_EXE_bootforge"))
        .env("BOOTFORGE_TEST_EC2", &double.url)
        .env("BOOTFORGE_TEST_EC2_QUOTA", &quota.url)
        .env(
            "BOOTFORGE_TEST_SETS",
            serde_json::Value::Object(sets).to_string(),
        )
        .env("PYTHONPATH", root().join("python"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("XDG_STATE_HOME", state.path())
        // Network tests only ever target loopback: the EC2 tests point at
        // the double, everything else at a closed port.
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/bootforge-test")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/bootforge-test")
        .env("AWS_REGION", "us-east-2")
        // A waiter looks often, and an instance gone without a status is
        // reported after a second, not after the NFS allowance of 30 s.
        .env("BOOTFORGE_POLL", "0.2")
        .env("BOOTFORGE_EC2_POLL", "0.2")
        .env("BOOTFORGE_STATUS_GRACE", "1")
        // The browser and its driver are the machine's (Debian's chromium
        // and chromium-driver, named by the tests): Selenium fetches nothing.
        .env("SE_OFFLINE", "true")
        .env_remove("BOOTFORGE_PROFILES")
        .env_remove("BOOTFORGE_SNIPPETS");
    if crate::smoke::ready() {
        pytest.env("BOOTFORGE_TEST_LOCAL", "1");
    }
    let out = pytest.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pytest python/tests failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", text.lines().last().unwrap_or_default());
}
