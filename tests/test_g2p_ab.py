"""benchmarks/g2p_ab.py: G2P decoding of two revisions in alternating processes (here the checkout twice)."""

import subprocess
from pathlib import Path

import pytest

from conftest import load_benchmark
from seqlab.errors import SeqlabError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ab():
    return load_benchmark("g2p_ab")


def test_a_revision_is_its_committed_src(ab, tmp_path):
    sha = ab.rev_sha("HEAD")
    src = ab.export_src(sha, tmp_path)
    shown = subprocess.run(["git", "show", f"{sha}:src/seqlab/__init__.py"], cwd=REPO, capture_output=True,
                           text=True, check=True)
    assert (src / "seqlab" / "__init__.py").read_text() == shown.stdout
    with pytest.raises(SeqlabError, match="not a git revision"):
        ab.rev_sha("no-such-revision-here")


def test_the_checkout_against_itself_pronounces_every_word_alike(ab, capsys):
    assert ab.main(["--a", "worktree", "--b", "worktree", "--pairs", "1", "--passes", "1", "--test-words", "40",
                    "--compute", "float32"]) == 0
    out = capsys.readouterr()
    assert "pair 1: A " in out.err
    assert "over 1 pairs" in out.out and out.out.rstrip().endswith("words pronounced differently: 0")
