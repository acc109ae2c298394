"""Reading a user's text file (release, campaign) with one clear error for each way it fails."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from distribute.errors import DistributeError


def read_text(path: Path, error: type[DistributeError], what: str) -> str:
    """The file's text (UTF-8, with or without BOM); ``error`` names the file, and the line
    of the first byte that is not UTF-8."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{what} file not found", path=path) from None
    except IsADirectoryError:
        raise error(f"is a folder, not a {what} file", path=path) from None
    except OSError as exc:
        raise error(f"cannot read the {what}: {exc.strerror}", path=path) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise error("is not UTF-8 text; save it as UTF-8", path=path, line=line) from None


# Python refuses to turn more digits than this into an int (CVE-2020-10735); tomllib then
# raises a bare ValueError instead of its decode error.
_LONG_NUMBER = re.compile(rf"\d[\d_]{{{sys.get_int_max_str_digits()},}}")


def long_number_line(text: str) -> int | None:
    """The line of the first number too long for Python to read, if there is one."""
    found = _LONG_NUMBER.search(text)
    return None if found is None else text.count("\n", 0, found.start()) + 1
