"""Shared by the benchmark scripts: run set-up, code version, machine and the docs writer."""

import os
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"


def code_version():
    """`git <short head>`, plus the files of sklfm/ changed since, if any."""
    try:
        head, dirty = (
            subprocess.run(
                ["git", "-C", str(ROOT), *cmd], capture_output=True, text=True, check=True
            ).stdout.rstrip()
            for cmd in (["rev-parse", "--short", "HEAD"], ["status", "--porcelain", "--", "sklfm"])
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    files = [line[3:] for line in dirty.splitlines()]
    if not files:
        return f"git {head.strip()}"
    shown = ", ".join(files[:6]) + (", ..." if len(files) > 6 else "")
    return f"git {head.strip()} + uncommitted changes in {shown}"


def write_docs(section):
    """Replace (or append) `section` in docs/benchmarks.md; other sections stay.

    A section runs from its ``## `` heading (its first line) to the next
    ``## `` heading or the end of the file.
    """
    heading = section.splitlines()[0]
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    lines = text.splitlines()
    try:
        start = lines.index(heading)
    except ValueError:
        new = text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    else:
        end = next((k for k in range(start + 1, len(lines)) if lines[k].startswith("## ")), len(lines))
        new = "\n".join(lines[:start] + section.rstrip("\n").splitlines() + [""] + lines[end:])
        new = new.rstrip("\n") + "\n"
    DOCS.write_text(new)



def start_run(script, argv, threads):
    """Limit torch and BLAS to `threads`; return the command that reproduces the run, and the date."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(threads)
    args = sys.argv[1:] if argv is None else argv
    command = " ".join(["python", f"benchmarks/{script}", *(shlex.quote(a) for a in args)])
    return command, datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def header(section, command, date, elapsed, machine, code):
    """The first lines of a docs section: heading, command, date and run time, machine, code."""
    return [
        section,
        "",
        f"Command: `{command}`  ",
        f"Date: {date}; total run time {elapsed / 60:.1f} min  ",
        f"Machine: {machine}  ",
        f"Code: {code}  ",
    ]


def report(section, write):
    """Print `section`; with `write`, also put it in docs/benchmarks.md."""
    print(section)
    if write:
        write_docs(section)
        print(f"wrote {DOCS}")


def machine_info(threads=None, extra=""):
    """CPU, cores, load average, GPU, torch/BLAS threads (if given) and library versions."""
    import platform

    import numpy as np
    import sklearn
    import torch

    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in open("/proc/cpuinfo")
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        cpu = platform.processor() or "unknown CPU"
    device = "CUDA " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    try:
        load = " (load average at start: %.1f, %.1f, %.1f)" % os.getloadavg()
    except OSError:
        load = ""
    threads = "" if threads is None else f"; torch/BLAS threads: {threads}"
    return (
        f"{cpu}, {os.cpu_count()} cores{load}, {device}{threads}; "
        f"Python {platform.python_version()}, torch {torch.__version__}, "
        f"scikit-learn {sklearn.__version__}, numpy {np.__version__}{extra}"
    )
