"""What the Python API's tests run against: the real binary (``BOOTFORGE``),
the EC2 double (moto behind the project's fault-injecting proxy) that
``tests/integration/python.rs`` starts and names in the environment, and the
local engine with the smoke image for ``local=True``.

Run alone (``pytest python/tests``), a test whose world is missing is
skipped; with ``BOOTFORGE_REQUIRE_ALL`` (the full test command) it fails.
"""

import json
import os
import stat
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "tests/fixtures/pipelines/python_api.sh"


def need(variable: str) -> str:
    value = os.environ.get(variable)
    if not value:
        message = f"{variable} is not set: run these tests through `cargo nextest run -E 'test(python_api)'`"
        if os.environ.get("BOOTFORGE_REQUIRE_ALL"):
            pytest.fail(message)
        pytest.skip(message)
    return value


@pytest.fixture
def binary() -> str:
    return need("BOOTFORGE")


@dataclass
class Ec2:
    """The EC2 double: its endpoint, one that answers every launch with a
    quota error, and the ``--set`` values of the emulated account."""

    endpoint: str
    quota_endpoint: str
    sets: dict[str, str]
    host_log_dir: Path

    def end(self, instance: str, reason: str, message: str = "") -> None:
        """EC2 ends ``instance`` with the StateReason ``reason``."""
        body = urllib.parse.urlencode({"instance": instance, "code": reason, "message": message})
        request = urllib.request.Request(f"{self.endpoint}/_double/end", data=body.encode(), method="POST")
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 200

    def instances_of(self, job: str) -> list[str]:
        """The instances EC2 ever had for ``job`` (from its claim's requests)."""
        claim = json.loads((self.host_log_dir / job / "claim.json").read_text())
        launched = [
            r["result"] for r in claim["requests"] if str(r.get("result", "")).startswith("launched ")
        ]
        earlier = [a["instance_id"] for a in claim.get("earlier", [])]
        return earlier + [r.split()[1] for r in launched]


@pytest.fixture
def ec2(monkeypatch: pytest.MonkeyPatch) -> Ec2:
    endpoint = need("BOOTFORGE_TEST_EC2")
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    sets = json.loads(need("BOOTFORGE_TEST_SETS"))
    return Ec2(
        endpoint=endpoint,
        quota_endpoint=need("BOOTFORGE_TEST_EC2_QUOTA"),
        sets=sets,
        host_log_dir=Path(sets["job.host_log_dir"]),
    )


@dataclass
class Local:
    """A rehearsal world: an EFS folder with the pipeline, and a state folder."""

    efs: Path
    state: Path

    def job_dir(self, job: str) -> Path:
        return self.efs / "bootforge/jobs" / job

    def instances_of(self, job: str) -> int:
        """How many local instances ran for ``job`` (each leaves its host folder)."""
        folder = self.state / "bootforge/local"
        return sum(1 for e in folder.iterdir() if e.name.startswith(f"{job}-run")) if folder.exists() else 0


@pytest.fixture
def local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Local]:
    need("BOOTFORGE_TEST_LOCAL")
    efs, state = tmp_path / "efs", tmp_path / "state"
    script = efs / "app/simulate_pipeline.sh"
    script.parent.mkdir(parents=True)
    script.write_bytes(PIPELINE.read_bytes())
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    state.mkdir()
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    yield Local(efs=efs, state=state)
