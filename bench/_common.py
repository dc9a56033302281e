"""What every benchmark shares: the machine line, CPU load before and after, and writing one section
of docs/benchmarks.md in place."""

from __future__ import annotations

import os
import platform
import re
import time
from importlib import metadata
from pathlib import Path

import torch

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADER = """# Benchmarks

Benchmarks are run by hand, not in CI. They live in `bench/`; each section below gives the exact
command that produced its figures, run from the repository root with the "bench" extra installed
(`pip install -e ".[bench]"`). Figures depend on the machine: compare ratios, not absolute times.
"""


def busy(seconds: float = 1.0) -> float | None:
    """Percent of all CPU time that was not idle over the next `seconds` (Linux /proc/stat), else None."""

    def read() -> tuple[int, int]:
        v = [int(f) for f in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return sum(v), v[3] + v[4]  # total, idle + iowait

    try:
        total0, idle0 = read()
        time.sleep(seconds)
        total1, idle1 = read()
    except (OSError, ValueError, IndexError):
        return None
    return 100.0 * (1 - (idle1 - idle0) / max(1, total1 - total0))


def load() -> str:
    """'N% CPU busy' over the next second, for the record of the conditions a benchmark ran in."""
    pct = busy()
    return "CPU use unknown" if pct is None else f"{pct:.0f}% CPU busy"


def machine(*packages: str) -> str:
    """CPU, cores, torch threads, Python and the versions of torch, fokker and the named packages."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = []
    for name in ("torch", *packages, "fokker"):
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    return (
        f"{cpu}, {os.cpu_count()} cores, torch.set_num_threads({torch.get_num_threads()}), "
        f"Python {platform.python_version()}, " + ", ".join(versions)
    )


def write_section(heading: str, text: str, docs: Path = DOCS) -> None:
    """Replace the section that starts with `heading` (up to the next '## ') by `text`, or append it."""
    doc = docs.read_text() if docs.exists() else HEADER
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(doc):
        doc = pattern.sub(lambda _: text + "\n", doc, count=1).rstrip("\n") + "\n"
    else:
        doc = doc.rstrip("\n") + "\n\n" + text
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text(doc)


def invocation(script: str) -> tuple[str, str]:
    """(the command line that ran `script` with this process's arguments, today's UTC date)."""
    import shlex
    import sys
    from datetime import datetime, timezone

    command = f"python bench/{script}" + (" " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "")
    return command, datetime.now(timezone.utc).strftime("%Y-%m-%d")


def footer(command: str, date: str, machine_line: str, conditions: str) -> list[str]:
    """The closing lines of every section: how to reproduce it, when, and on what."""
    return [f"- Command: `{command}`", f"- Date: {date}", f"- Machine: {machine_line}; {conditions}", ""]


def publish(heading: str, text: str, write: bool) -> None:
    """Print a section, and with --write put it into docs/benchmarks.md (the text starts with its '## ' heading,
    by which a rerun finds and replaces it)."""
    if not (heading.startswith("## ") and text.startswith(heading + "\n")):
        raise ValueError(f"a section's text must start with its '## ' heading line, {heading!r}")
    print(text)
    if write:
        write_section(heading, text)
        print(f"wrote the '{heading}' section of {DOCS}")
