"""Where a result came from: the git commit and the CPU, for the records in docs/results."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

__all__ = ["git_commit", "cpu_name"]


def git_commit(repo: str | Path | None = None) -> str:
    """Short hash of HEAD, with " (with uncommitted changes)" when tracked files differ; "unknown" outside git."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        # --no-optional-locks: do not let `git status` refresh (write) the index.
        dirty = git("--no-optional-locks", "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head} (with uncommitted changes)" if dirty else head or "unknown"


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"
