"""The real ``seqlab`` command, run in a subprocess."""

import subprocess
import sys

from seqlab import __version__
from seqlab.nn import CELLS


def _seqlab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "seqlab", *args], capture_output=True, text=True, timeout=120)


def test_version():
    run = _seqlab("--version")
    assert run.returncode == 0 and run.stdout.strip() == f"seqlab {__version__}"


def test_help_lists_cells_command():
    run = _seqlab("--help")
    assert run.returncode == 0 and "cells" in run.stdout


def test_cells_lists_all_ten_with_parameter_counts():
    run = _seqlab("cells", "--input-size", "8", "--hidden-size", "16")
    assert run.returncode == 0, run.stderr
    rows = {line.split()[0]: line.split()[1] for line in run.stdout.splitlines()[2:]}
    assert set(rows) == set(CELLS)
    assert rows["lstm"] == f"{4 * 16 * (8 + 16) + 2 * 4 * 16:,}"
    assert rows["gru"] == f"{3 * 16 * (8 + 16) + 2 * 3 * 16:,}"
    lines = {line.split()[0]: line for line in run.stdout.splitlines()[2:]}
    assert " seqlab / cuDNN " in lines["lstm"] and " seqlab / Triton " in lines["sru"]


def test_bad_size_is_a_one_line_error():
    run = _seqlab("cells", "--hidden-size", "0")
    assert run.returncode == 2
    assert "Traceback" not in run.stderr and "positive integer" in run.stderr


def test_closed_output_pipe_ends_quietly():
    """``seqlab cells | head -1``: the reader leaves early; no traceback, the exit status of a broken pipe."""
    proc = subprocess.Popen([sys.executable, "-m", "seqlab", "cells"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # before seqlab writes anything
    _, err = proc.communicate(timeout=120)
    assert "Traceback" not in err and proc.returncode == 141
