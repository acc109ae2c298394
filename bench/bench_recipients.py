"""How fast a large journalist list loads, and how much memory loading it takes.

    python bench/bench_recipients.py [--rows 100000]

Writes a list of ``--rows`` fictional journalists to a temporary folder, then measures in the
same run, side by side:

* ``csv.reader`` alone over the file: the floor for reading;
* ``email_validator`` alone over the addresses, and ``address_problem``, which runs it in
  full only on addresses that are not plain ASCII at a domain it already accepted;
* ``load_audience``: time, and with tracemalloc its peak memory against the memory the
  loaded recipients keep once it returns. Streaming means the peak is the recipients
  plus small change, not the file;
* the naive way, ``list(csv.DictReader(file))``, for the memory of holding every row as text.
"""

from __future__ import annotations

import argparse
import csv
import gc
import random
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from email_validator import validate_email

from distribute.recipients import address_problem, load_audience

OUTLETS = ["The Science Courier", "Le Courrier Alsacien", "Lab Notes Weekly", "Provence Matin"]
BEATS = ["physics", "santé", "climate", "énergie", "computing", "space"]
ZONES = ["Europe/Paris", "Europe/London", "America/New_York", "Asia/Tokyo"]
TAGS = ["science;physics", "régional;santé", "tech|ai", "science;climate;radio"]


def write_list(path: Path, rows: int) -> None:
    pick = random.Random(4).choice
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(
            ["email", "first_name", "last_name", "outlet", "beat", "language", "timezone", "tags"]
        )
        for n in range(rows):
            writer.writerow(
                [
                    f"journalist{n}@example.{pick(['org', 'com', 'net'])}",
                    f"First{n}",
                    f"Last{n}",
                    pick(OUTLETS),
                    pick(BEATS),
                    pick(["en", "fr"]),
                    pick(ZONES),
                    pick(TAGS),
                ]
            )


def timed(work: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def memory(work: Callable[[], Any]) -> tuple[int, int, Any]:
    """(peak, kept, result): the peak during ``work`` and what its result still holds."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    result = work()
    kept, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak - base, kept - base, result


def read_csv(path: Path) -> int:
    with path.open(encoding="utf-8", newline="") as stream:
        return sum(1 for _ in csv.reader(stream))


def validate_all(path: Path) -> int:
    with path.open(encoding="utf-8", newline="") as stream:
        rows = csv.reader(stream)
        next(rows)
        for row in rows:
            validate_email(row[0], check_deliverability=False)
    return 0


def check_all(path: Path) -> int:
    with path.open(encoding="utf-8", newline="") as stream:
        rows = csv.reader(stream)
        next(rows)
        return sum(address_problem(row[0]) is not None for row in rows)


def read_naively(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as stream:
        return list(csv.DictReader(stream))


def mb(size: float) -> str:
    return f"{size / 1e6:8.1f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=100_000)
    rows = parser.parse_args().rows

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / "big.csv"
        write_list(path, rows)
        size = path.stat().st_size

        csv_time, _ = timed(lambda: read_csv(path))
        validate_time, _ = timed(lambda: validate_all(path))
        check_time, invalid = timed(lambda: check_all(path))
        assert invalid == 0, invalid
        load_time, audience = timed(lambda: load_audience(folder, ["big"]))
        assert len(audience.recipients) == rows, audience.problems[:3]
        del audience
        peak, kept, audience = memory(lambda: load_audience(folder, ["big"]))
        naive_peak, naive_kept, naive = memory(lambda: read_naively(path))
        del audience, naive

    print(f"{rows:,} rows, file {mb(size).strip()}")
    print()
    print(f"{'time':<38}{'seconds':>10}{'rows/s':>12}")
    for label, seconds in (
        ("csv.reader only (floor)", csv_time),
        ("csv.reader + email_validator", validate_time),
        ("csv.reader + address_problem", check_time),
        ("load_audience", load_time),
    ):
        print(f"{label:<38}{seconds:>10.2f}{rows / seconds:>12,.0f}")
    print(f"address_problem / email_validator: {check_time / validate_time:.2f}x")
    print(f"load_audience / csv.reader + email_validator: {load_time / validate_time:.2f}x")
    print()
    print(f"{'memory (tracemalloc)':<38}{'peak':>11}{'kept':>12}")
    print(f"{'load_audience':<38}{mb(peak):>11}{mb(kept):>12}")
    print(f"{'list(csv.DictReader) (naive)':<38}{mb(naive_peak):>11}{mb(naive_kept):>12}")
    print(f"load_audience peak / recipients kept: {peak / kept:.2f}x")
    print(f"load_audience peak / naive peak:      {peak / naive_peak:.2f}x")
    print(f"kept per recipient: {kept / rows:.0f} bytes")


if __name__ == "__main__":
    main()
