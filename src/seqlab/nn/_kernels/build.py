"""Build and load the fused CPU kernels (``recurrence.cpp``) on first use.

The extension is compiled with ``torch.utils.cpp_extension.load`` into a
cache folder, once per torch version, Python version and CPU instruction
set; later processes only load the built library.  torch's builder locks
the folder, so concurrent processes (pytest-xdist workers) build it once.

Environment:

* ``SEQLAB_NO_KERNELS=1``: never build or load the kernels; lstm, gru and
  rnn_* run torch's own kernels, the other cells the PyTorch reference loop
  (``Recurrent(..., impl="reference")``).
* ``SEQLAB_KERNEL_CACHE=DIR``: where to build (default
  ``$XDG_CACHE_HOME/seqlab/kernels``, i.e. ``~/.cache/seqlab/kernels``).

Where torch ships fbgemm's headers and exports its int8 GEMM (x86 wheels),
the build also compiles the int8 products of ``seqlab.compress``'s int8
compute: the LSTM recurrence of ``Int8LSTM`` (``forward_projected_int8``)
and ``Int8Linear``; elsewhere those are absent, int8 models keep float32
recurrences and their Linear layers run on ``torch.ao``.

The build needs a C++ compiler (``$CXX``, else ``c++``) and ninja, which
seqlab installs from PyPI (the ``ninja`` package; its binary is put on
``PATH`` for the build when the system has none).  When the kernels cannot
be built (no compiler, no ninja, a build error) ``load()`` logs one line on
the ``seqlab.kernels`` logger and returns ``None``; callers then use
torch's kernels or the reference path.  torch's own build warnings are kept out of the way, so that
one line is all a user sees.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import shutil
import sys
import sysconfig
from pathlib import Path
from types import ModuleType

import torch

__all__ = ["load", "inference_kernels", "cache_dir", "compile_extension", "vector_isa", "DISABLE_ENV", "CACHE_ENV"]

DISABLE_ENV = "SEQLAB_NO_KERNELS"
CACHE_ENV = "SEQLAB_KERNEL_CACHE"
SOURCE = Path(__file__).with_name("recurrence.cpp")

_log = logging.getLogger("seqlab.kernels")
# What runs instead when the kernels cannot load (see Recurrent's impl="auto").
_FALLBACK = "using torch's own kernels (lstm, gru, rnn_*) or the PyTorch reference path"


def cache_dir() -> Path:
    """The folder the extension is built in (one per torch, Python and CPU instruction set)."""
    root = os.environ.get(CACHE_ENV)
    if root:
        base = Path(root)
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "seqlab" / "kernels"
    tag = f"torch{torch.__version__}-py{sys.version_info[0]}{sys.version_info[1]}-{vector_isa().lower()}"
    return base / tag.replace("+", "_")


def vector_isa() -> str:
    """The vector instruction set torch uses here: AVX512, AVX2, DEFAULT, ..."""
    try:
        return torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        return "DEFAULT"


def _flags() -> tuple[list[str], list[str]]:
    # The pointwise loops are written to vectorize (see Act<float> in recurrence.cpp):
    # that needs comparisons that may not trap, and the widest vectors torch
    # itself found usable on this CPU.
    cflags = ["-O3", "-fopenmp", "-fno-math-errno", "-fno-trapping-math"]
    if vector_isa() == "AVX512":
        cflags += ["-mavx2", "-mfma", "-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx512bw", "-mprefer-vector-width=512"]
    elif vector_isa() == "AVX2":
        cflags += ["-mavx2", "-mfma"]
    # GEMMs call the BLAS inside libtorch_cpu directly when it exports one (MKL on
    # x86 wheels), with MKL's packed GEMM for the weights reused at every step.
    if _torch_exports("sgemm_", "dgemm_"):
        cflags.append("-DSEQLAB_USE_BLAS")
    if _torch_exports("sgemm_pack_get_size_", "sgemm_pack_", "sgemm_compute_"):
        cflags.append("-DSEQLAB_USE_MKL_PACK")
    # The int8 recurrence (Int8LSTM) calls fbgemm inside libtorch_cpu, where torch ships its headers
    # and exports the three pieces it uses (x86 wheels).
    if (Path(torch.__file__).parent / "include" / "fbgemm" / "Fbgemm.h").is_file() and _torch_exports(*_FBGEMM):
        cflags.append(FBGEMM_FLAG)
    return cflags, ["-fopenmp"]


FBGEMM_FLAG = "-DSEQLAB_USE_FBGEMM"
# fbgemm's packed int8 weights, float rows quantised as they are packed, the product back to float, and
# the range of the rows to quantise.
_FBGEMM = (
    "_ZN6fbgemm11PackBMatrixIaiEC1ENS_11matrix_op_tEiiPKaiPaiPKNS_15BlockingFactorsE",
    "_ZN6fbgemm23PackAWithQuantRowOffsetIhiEC1ENS_11matrix_op_tEiiPKfiPhfiiPiPKNS_15BlockingFactorsE",
    "_ZN6fbgemm12fbgemmPackedINS_23PackAWithQuantRowOffsetIhiEENS_11PackBMatrixIaiEEfNS_18ReQuantizeForFloatILb0E"
    "LNS_23QuantizationGranularityE2EfiNS_9DoNothingIffEEEEEEvRNS_10PackMatrixIT_NSB_7inpTypeENSB_7accTypeEEERNSA_IT0"
    "_NSG_7inpTypeENSG_7accTypeEEEPT1_PijRKT2_iiPKNS_15BlockingFactorsE",
    "_ZN6fbgemm10FindMinMaxEPKfPfS2_l",
)


def _torch_exports(*symbols: str) -> bool:
    """True when libtorch_cpu exports every one of ``symbols``."""
    lib = Path(torch.__file__).parent / "lib" / f"libtorch_cpu{sysconfig.get_config_var('SHLIB_SUFFIX') or '.so'}"
    try:
        handle = ctypes.CDLL(str(lib))
    except OSError:
        return False
    return all(hasattr(handle, name) for name in symbols)


class _NoToolchain(RuntimeError):
    """What the build needs is missing (said in one line)."""


def _one_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    first = lines[0] if lines else ""
    return (first if isinstance(err, _NoToolchain) else f"{type(err).__name__}: {first}")[:200]


def _ninja_on_path() -> bool:
    """True when ``ninja`` runs from PATH, after putting PyPI's ninja (a seqlab dependency) there if needed."""
    if shutil.which("ninja") is not None:
        return True
    try:
        import ninja  # the PyPI package: a ninja binary in its BIN_DIR
    except ImportError:
        return False
    os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
    return shutil.which("ninja") is not None


def _check_toolchain() -> None:
    """Raise :class:`_NoToolchain` when the C++ compiler or ninja that a build needs cannot be found."""
    compiler = os.environ.get("CXX", "").strip() or "c++"
    if shutil.which(compiler.split()[0]) is None:
        raise _NoToolchain(f"no C++ compiler: {compiler} is not on PATH; install g++ (Debian: apt-get install g++)")
    if not _ninja_on_path():
        raise _NoToolchain("ninja is not on PATH; pip install ninja")


@functools.cache
def load() -> ModuleType | None:
    """The compiled kernel module, building it on first use; ``None`` when unavailable.

    Tried once per process; the outcome is cached (``load.cache_clear()``
    forgets it).
    """
    if os.environ.get(DISABLE_ENV, "").strip() not in ("", "0"):
        _log.warning(f"seqlab: fused kernels unavailable ({DISABLE_ENV} is set); {_FALLBACK}")
        return None
    try:
        folder = cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        name = f"seqlab_recurrence_{vector_isa().lower()}"
        # A built library loads without a compiler; only a build needs the toolchain (ninja runs either way).
        if not any(folder.glob(f"{name}*.so")):
            _check_toolchain()
            print(f"seqlab: building the fused CPU kernels in {folder} (first use, about a minute)...",
                  file=sys.stderr, flush=True)
        return compile_extension(name, SOURCE, folder)
    except Exception as err:  # any build or load failure means: use the reference path
        _log.warning(f"seqlab: fused kernels unavailable ({_one_line(err)}); {_FALLBACK}")
        return None


def compile_extension(name: str, source: Path, folder: Path) -> ModuleType:
    """``source`` built (or, when built already, loaded) as the extension ``name`` in ``folder``, with the
    flags of seqlab's kernels; raises on failure.  :func:`load` builds the kernels with it, and
    ``benchmarks/kernel_ab.py`` other versions of their source."""
    from torch.utils import cpp_extension

    _ninja_on_path()
    cflags, ldflags = _flags()
    torch_log = logging.getLogger(cpp_extension.__name__)
    level = torch_log.level
    torch_log.setLevel(logging.ERROR)  # its compiler warnings span a dozen lines; ours is one

    def build(flags: list[str]) -> ModuleType:
        return cpp_extension.load(name=name, sources=[str(source)], extra_cflags=flags, extra_ldflags=ldflags,
                                  build_directory=str(folder), verbose=False)

    try:
        try:
            return build(cflags)
        except Exception as err:
            if FBGEMM_FLAG not in cflags:
                raise
            # The int8 products are optional: a torch whose fbgemm headers do not compile here keeps the rest
            # (where the rest fails too, that error is the one line load() shows).
            module = build([flag for flag in cflags if flag != FBGEMM_FLAG])
            _log.warning(f"seqlab: built the kernels without the int8 products ({_one_line(err)})")
            return module
    finally:
        torch_log.setLevel(level)


def inference_kernels(*tensors: torch.Tensor) -> ModuleType | None:
    """The compiled module for an inference-only kernel on ``tensors``, or ``None`` to use PyTorch ops.

    Inference only: ``None`` while autograd records any of them (the kernels
    have no backward), and for anything but float32/float64 CPU tensors.
    """
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return None
    if any(t.device.type != "cpu" or t.dtype not in (torch.float32, torch.float64) for t in tensors):
        return None
    return load()
