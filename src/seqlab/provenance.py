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
    """The CPU model from /proc/cpuinfo (else what ``platform`` knows), with the vector instruction set
    torch uses and one core's L2 where known: ``"AMD EPYC (AVX2, 512 KiB L2 per core)"``.  A virtual
    machine's model name can be as short as that, while its speed depends on both."""
    name = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    name = name or platform.processor() or platform.machine() or "unknown CPU"
    from .nn._kernels.build import vector_isa  # torch's, as the kernels are built for it

    details = [d for d in (vector_isa(), _l2_per_core()) if d]
    return f"{name} ({', '.join(details)})" if details else name


def _l2_per_core(caches: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> str:
    """``"512 KiB L2 per core"`` from Linux's description of CPU 0's caches, else ``""``."""
    for index in sorted(caches.glob("index*")):
        try:
            level, kind = (index / "level").read_text().strip(), (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()  # e.g. "512K", "2048K"
        except OSError:
            continue
        if level != "2" or kind == "Instruction":
            continue
        if size.endswith("K") and size[:-1].isdigit():
            kib = int(size[:-1])
            return f"{kib // 1024} MiB L2 per core" if kib % 1024 == 0 else f"{kib} KiB L2 per core"
        return f"{size} L2 per core"
    return ""
