"""Writes one benchmark's section into docs/benchmarks.md, leaving the other sections alone."""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / "docs" / "benchmarks"
HEADER = (
    "# Benchmarks\n\n"
    "Every number here was written by the command named in its section; rerun it to refresh.\n"
    "Sections are replaced whole by their benchmark script (`benchmarks/`).\n"
)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} cores ({cpu}){mem}, Python {platform.python_version()}"


def markdown_table(columns: list[str], rows: list[list[object]], align: str = "") -> str:
    """A Markdown table; `align` has one letter per column, `l` or `r` (default: first left,
    the rest right)."""
    align = align or "l" + "r" * (len(columns) - 1)
    lines = ["| " + " | ".join(columns) + " |",
             "| " + " | ".join("---:" if a == "r" else "---" for a in align) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(name: str, title: str, command: str, method: str, body: str,
                  results: dict | None = None) -> None:
    """Replace (or append) the section `name` in docs/benchmarks.md; save raw JSON beside it."""
    today = datetime.date.today().isoformat()
    section = (
        f"<!-- bench:{name} -->\n## {title}\n\n"
        f"- Date: {today}\n- Machine: {machine()}\n- Command: `{command}`\n"
        f"- Method: {method}\n\n{body.strip()}\n<!-- /bench:{name} -->\n"
    )
    DOC.parent.mkdir(parents=True, exist_ok=True)
    text = DOC.read_text() if DOC.exists() else HEADER
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->\n",
                         re.S)
    text = pattern.sub(lambda _m: section, text) if pattern.search(text) else (
        text.rstrip("\n") + "\n\n" + section)
    DOC.write_text(text)
    if results is not None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{name}.json").write_text(json.dumps(
            {"date": today, "machine": machine(), "command": command, "results": results},
            indent=2, default=str) + "\n")
