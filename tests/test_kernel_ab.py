"""benchmarks/kernel_ab.py: two builds of the kernels paired in one process (here the built one twice)."""

import subprocess
from pathlib import Path

import pytest

from conftest import load_benchmark
from seqlab.errors import SeqlabError
from seqlab.nn import _kernels

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ab():
    return load_benchmark("kernel_ab")


def test_the_source_of_a_revision_or_a_file(ab, tmp_path):
    shown = subprocess.run(["git", "show", f"HEAD:{ab.SOURCE}"], cwd=REPO, capture_output=True, text=True, check=True)
    assert ab.source_text("HEAD") == shown.stdout
    own = tmp_path / "recurrence.cpp"
    own.write_text("// a variant\n")
    assert ab.source_text(str(own)) == "// a variant\n"
    with pytest.raises(SeqlabError, match="neither a file nor a git revision"):
        ab.source_text("no-such-revision-here")


def test_shapes_are_t_b_i_h(ab):
    import argparse

    assert ab.parse_shapes("50x32x256x256, 2x3x4x5") == [(50, 32, 256, 256), (2, 3, 4, 5)]
    for bad in ("50x32x256", "50x32x0x4", "ax2x3x4"):
        with pytest.raises(argparse.ArgumentTypeError):
            ab.parse_shapes(bad)


def test_one_build_against_itself_agrees_exactly(ab):
    kernels = _kernels.load()
    rows = ab.compare(kernels, kernels, ["janet", "sru"], [(3, 2, 4, 5)], ["train", "infer"], rounds=2, check=True)
    assert [(r["cell"], r["pass"]) for r in rows] == [("janet", "train"), ("janet", "infer"), ("sru", "train"),
                                                      ("sru", "infer")]
    for row in rows:
        assert row["difference"] == 0.0
        assert row["b_over_a"] > 0 and row["a_over_lstm"] > 0 and row["a_ms"] > 0
        lo, hi = row["b_over_a_interval"]
        assert lo <= row["b_over_a"] <= hi
        assert f"B/A {row['b_over_a']:.3f} ({lo:.3f}-{hi:.3f})" in ab._format(row)


def test_a_cell_without_a_kernel_is_refused(ab):
    with pytest.raises(SystemExit) as exit_:
        ab.main(["--cells", "no_such_cell"])
    assert exit_.value.code == 2
