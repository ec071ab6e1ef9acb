"""The wheel, as the Celery host installs it (``scripts/dist`` builds it;
``BOOTFORGE_WHEEL`` names it): in a fresh virtual environment ``pip install``
gives a working ``bootforge`` command and ``import bootforge``, with no other
package; its platform tag and its binary admit Amazon Linux 2023's glibc."""

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

# Amazon Linux 2023, the Celery host's and the instance's distribution.
GLIBC_MAX = (2, 34)


def wheel() -> Path:
    path = os.environ.get("BOOTFORGE_WHEEL")
    if not path:
        message = "BOOTFORGE_WHEEL is not set: scripts/dist builds the wheel, scripts/test runs these tests"
        if os.environ.get("BOOTFORGE_REQUIRE_ALL"):
            pytest.fail(message)
        pytest.skip(message)
    return Path(path)


def glibc_of_tag(tag: str) -> "tuple[int, int]":
    """The glibc a platform tag asks for (``manylinux_2_34_x86_64``: 2.34)."""
    legacy = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
    match = re.match(r"manylinux_(\d+)_(\d+)_", tag)
    if match:
        return int(match.group(1)), int(match.group(2))
    for name, version in legacy.items():
        if tag.startswith(name + "_"):
            return version
    raise AssertionError(f"{tag} is not a manylinux tag")


def glibc_needed(objdump_p: str) -> "tuple[int, int]":
    """The highest GLIBC_X.Y among an ELF file's version references."""
    versions = [(int(a), int(b)) for a, b in re.findall(r"\bGLIBC_(\d+)\.(\d+)\b", objdump_p)]
    assert versions, "the binary references no glibc version"
    return max(versions)


def test_the_checks_see_a_newer_glibc() -> None:
    assert glibc_of_tag("manylinux_2_35_x86_64") > GLIBC_MAX
    assert glibc_of_tag("manylinux2014_x86_64") <= GLIBC_MAX
    sample = (
        "required from libc.so.6:\n    0x069691b4 0x00 04 GLIBC_2.34\n    0x06969197 0x00 05 GLIBC_2.38\n"
    )
    assert glibc_needed(sample) == (2, 38)


def test_the_tag_admits_amazon_linux_2023() -> None:
    name = wheel().name
    platforms = name[: -len(".whl")].split("-")[-1].split(".")
    assert platforms, name
    for platform in platforms:
        assert glibc_of_tag(platform) <= GLIBC_MAX, f"{name}: {platform} needs a newer glibc than 2.34"


def test_the_binary_needs_no_newer_glibc(tmp_path: Path) -> None:
    with zipfile.ZipFile(wheel()) as archive:
        inside = [n for n in archive.namelist() if n.endswith(".data/scripts/bootforge")]
        assert len(inside) == 1, archive.namelist()
        binary = Path(archive.extract(inside[0], tmp_path))
    described = subprocess.run(["objdump", "-p", str(binary)], capture_output=True, text=True, check=True)
    needed = glibc_needed(described.stdout)
    assert needed <= GLIBC_MAX, f"the binary needs GLIBC_{needed[0]}.{needed[1]}"


def test_celery_and_flask_are_extras_and_nothing_is_required() -> None:
    with zipfile.ZipFile(wheel()) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        text = archive.read(metadata).decode()
    requires = sorted(line for line in text.splitlines() if line.startswith("Requires-Dist:"))
    assert requires == [
        "Requires-Dist: celery[redis] ; extra == 'celery'",
        "Requires-Dist: flask>=2.2 ; extra == 'flask'",
    ], requires
    assert "Requires-Python: >=3.9" in text


def test_the_pages_travel_inside_the_package() -> None:
    with zipfile.ZipFile(wheel()) as archive:
        names = set(archive.namelist())
    for page in (
        "bootforge/flask.py",
        "bootforge/templates/bootforge/base.html",
        "bootforge/templates/bootforge/jobs.html",
        "bootforge/templates/bootforge/job.html",
        "bootforge/static/bootforge/bootforge.js",
        "bootforge/static/bootforge/bootforge.css",
    ):
        assert page in names, f"{page} is not in the wheel"
    assert not any(n.startswith("bootforge/tests") or "/tests/" in n for n in names), "tests stay out"


def test_it_installs_and_runs_in_a_fresh_virtual_environment(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin/python"
    env = {k: v for k, v in os.environ.items() if k not in ("BOOTFORGE", "PYTHONPATH")}
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-index", str(wheel())],
        check=True,
        env=env,
    )
    version = subprocess.run(
        [str(venv / "bin/bootforge"), "--version"], capture_output=True, text=True, check=True, env=env
    )
    assert re.fullmatch(r"bootforge \d+\.\d+\.\d+\n", version.stdout), version.stdout
    check = (
        "import bootforge; "
        "assert bootforge.compile('traffic-sign-gpu', format='cloud-config').startswith(b'#cloud-config'); "
        "print(bootforge.find_bootforge())"
    )
    found = subprocess.run(
        [str(python), "-c", check], capture_output=True, text=True, check=True, env=env, cwd=tmp_path
    )
    assert Path(found.stdout.strip()) == venv / "bin/bootforge", "the API runs the wheel's own binary"
    installed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    names = {line.split("==")[0].lower() for line in installed.stdout.split()}
    assert names - {"pip", "setuptools", "wheel"} == {"bootforge"}, names
