"""seqlab.runtime: glibc keeps freed memory, so loops that free and allocate it again do not fault pages in."""

import os
import platform
import subprocess
import sys

import pytest

# Each case runs in a fresh interpreter: the allocator's settings are process-wide and its state
# depends on what ran before.  The loop frees 18 MiB at once, in blocks that glibc's own moving
# threshold puts on its heap after the first round, and touches every page again.
LOOP = """
import ctypes, resource, sys
from seqlab.runtime import keep_freed_memory
applied = keep_freed_memory()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
N = 6 << 20
def once():
    blocks = [libc.malloc(N) for _ in range(3)]
    for b in blocks:
        ctypes.memset(b, 1, N)
    for b in blocks:
        libc.free(b)
once(); once()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    once()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")


def _run(env_value: str | None) -> tuple[bool, int]:
    env = {k: v for k, v in os.environ.items() if k != "SEQLAB_MALLOC"}
    if env_value is not None:
        env["SEQLAB_MALLOC"] = env_value
    out = subprocess.run([sys.executable, "-c", LOOP], capture_output=True, text=True, env=env, timeout=60, check=True)
    applied, faults = out.stdout.split()
    return applied == "True", int(faults)


@glibc
def test_freed_blocks_are_reused_without_page_faults():
    applied, faults = _run(None)
    pages_touched = 10 * 3 * (6 << 20) // 4096
    assert applied
    assert faults < pages_touched // 100, f"{faults} page faults for {pages_touched} pages written"


@glibc
def test_default_leaves_glibc_alone():
    applied, _ = _run("default")
    assert not applied
