"""Where the bootforge binary is: the one this package was installed with.

As uv and ruff do, the wheel puts the binary in the scripts folder of the
install scheme (a virtual environment's ``bin/``, the user's ``~/.local/bin``),
and ``BOOTFORGE`` names another one.
"""

import os
import shutil
import sys
import sysconfig
from pathlib import Path
from typing import Optional

from .errors import BootforgeError


def _user_scheme() -> Optional[str]:
    if sys.version_info >= (3, 10):
        return sysconfig.get_preferred_scheme("user")  # novermin (3.10+ only, guarded)
    if os.name == "nt":
        return "nt_user"
    return "posix_user"


def _candidates() -> list[Path]:
    name = "bootforge" + (sysconfig.get_config_var("EXE") or "")
    folders = [Path(sysconfig.get_path("scripts"))]
    scheme = _user_scheme()
    if scheme:
        folders.append(Path(sysconfig.get_path("scripts", scheme=scheme)))
    # `pip install --target DIR` puts the package in DIR and the binary in DIR/bin.
    folders.append(Path(__file__).resolve().parent.parent / "bin")
    return [folder / name for folder in folders]


def find_bootforge() -> str:
    """The path of the bootforge binary to run.

    ``BOOTFORGE`` wins when set; then the binary installed with this package;
    then the first ``bootforge`` on ``PATH``.
    """
    override = os.environ.get("BOOTFORGE")
    if override:
        if not (os.path.isfile(override) and os.access(override, os.X_OK)):
            raise BootforgeError(
                code="environment",
                message=f"BOOTFORGE names {override!r}, which is not an executable file",
                help="point BOOTFORGE at a bootforge binary, or unset it",
            )
        return override
    for candidate in _candidates():
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("bootforge")
    if found:
        return found
    raise BootforgeError(
        code="environment",
        message="the bootforge binary is not installed beside this package",
        help="install the bootforge wheel (pip install bootforge-*.whl), or set BOOTFORGE to a binary",
    )
