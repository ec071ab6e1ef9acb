"""``python -m bootforge``: the binary, with the same arguments."""

import os
import subprocess
import sys

from ._find import find_bootforge


def main() -> int:
    binary = find_bootforge()
    if sys.platform == "win32":
        return subprocess.call([binary, *sys.argv[1:]])
    os.execvp(binary, [binary, *sys.argv[1:]])
    return 1  # not reached: execvp replaces this process


if __name__ == "__main__":
    sys.exit(main())
