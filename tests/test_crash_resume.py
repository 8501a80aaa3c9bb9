"""Crash safety: a killed save leaves a whole checkpoint; a killed training run resumes to identical weights."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from seqlab import checkpoint
from seqlab.checkpoint import checkpoint_exists, load_checkpoint, save_checkpoint

# --------------------------------------------------------------------------
# save_checkpoint killed at every step
# --------------------------------------------------------------------------


def _version(v):
    """A checkpoint whose every file says which save wrote it."""
    return {"w": torch.full((3, 4), float(v))}, {"task": "x", "version": v}, {"t": torch.full((2,), float(v))}


def _check_whole(folder):
    """The checkpoint in ``folder`` is one save's model, meta and trainer state, not a mix; returns its version."""
    tensors, meta, trainer = load_checkpoint(folder, with_trainer=True)
    v = meta["version"]
    assert torch.equal(tensors["w"], torch.full((3, 4), float(v)))
    assert torch.equal(trainer["t"], torch.full((2,), float(v)))
    return v


def _save_killed_at(folder, version, step):
    """Run save_checkpoint in a forked child that dies (os._exit, like SIGKILL) just before its ``step``-th
    file-system operation; returns True if the save finished before reaching that step."""
    pid = os.fork()
    if pid == 0:  # child: no exception handler or finally clause runs when it dies
        count = [0]

        def dying(fn):
            def wrapped(*args, **kwargs):
                count[0] += 1
                if count[0] == step:
                    os._exit(9)
                return fn(*args, **kwargs)

            return wrapped

        for module, name in [(os, "rename"), (os, "link"), (os, "fsync"), (os, "mkdir"),
                             (checkpoint.shutil, "rmtree"), (checkpoint, "save_file")]:
            setattr(module, name, dying(getattr(module, name)))
        try:
            save_checkpoint(folder, *_version(version))
        except BaseException:
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) in (0, 9), status
    return os.WEXITSTATUS(status) == 0


def test_a_save_killed_at_any_step_leaves_a_whole_checkpoint(tmp_path):
    folder = tmp_path / "last"
    save_checkpoint(folder, *_version(1))
    (folder / "notes.txt").write_text("kept")  # a user's file in the folder must survive every save
    seen = set()
    for step in range(1, 100):
        finished = _save_killed_at(folder, 2, step)
        assert checkpoint_exists(folder)
        seen.add(_check_whole(folder))
        save_checkpoint(folder, *_version(3))  # the next save repairs and replaces
        assert _check_whole(folder) == 3 and (folder / "notes.txt").read_text() == "kept"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]  # no staging or old folder left
        assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "model.safetensors", "notes.txt",
                                                            "trainer.safetensors"]
        save_checkpoint(folder, *_version(1))
        if finished:
            break
    assert finished and step > 5  # every step of a save was tried
    assert seen == {1, 2}  # killed early: the old one; killed late: the new one


def test_killed_between_the_two_renames_the_new_checkpoint_is_read(tmp_path):
    folder = tmp_path / "ck"
    save_checkpoint(folder, *_version(1))
    renames = [0]
    real_rename = os.rename

    def rename(src, dst):
        renames[0] += 1
        if renames[0] == 2:  # folder -> .ck.old has happened; .ck.new -> folder is next
            raise KeyboardInterrupt
        real_rename(src, dst)

    os.rename = rename
    try:
        with pytest.raises(KeyboardInterrupt):
            save_checkpoint(folder, *_version(2))
    finally:
        os.rename = real_rename
    assert not folder.exists() and checkpoint_exists(folder)
    assert _check_whole(folder) == 2


def test_refuses_to_write_over_a_file_or_the_working_folder(tmp_path, monkeypatch):
    (tmp_path / "model.pt").write_bytes(b"\x80\x04")
    with pytest.raises(checkpoint.SeqlabError, match="a file of that name exists"):
        save_checkpoint(tmp_path / "model.pt", *_version(1)[:2])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(checkpoint.SeqlabError, match="working folder"):
        save_checkpoint(".", *_version(1)[:2])


# --------------------------------------------------------------------------
# seqlab train killed with SIGKILL and resumed
# --------------------------------------------------------------------------

SETTINGS = ["emb_size=8", "enc_hidden=16", "enc_layers=1", "dec_hidden=32", "dropout=0.1", "batch_tokens=200",
            "epochs=3", "patience=10", "threads=1", "max_minutes=null", "lr=0.01", "seed=3"]


@pytest.fixture
def lexicon(tmp_path):
    """A tiny cmudict-format file: 600 words over a-h, each read backwards letter by letter."""
    rng = random.Random(0)
    words = set()
    while len(words) < 600:
        words.add("".join(rng.choice("abcdefgh") for _ in range(rng.randint(2, 7))))
    path = tmp_path / "tiny.dict"
    path.write_text("".join(f"{w} {' '.join(ch.upper() + '1' for ch in reversed(w))}\n" for w in sorted(words)))
    return path


class _Training:
    """A ``seqlab train g2p`` process; its output goes to files (a full pipe would stall it)."""

    def __init__(self, run_dir, flags, lexicon, n):
        self.out, self.err = (run_dir.parent / f"{run_dir.name}.{n}.{s}" for s in ("out", "err"))
        cmd = [sys.executable, "-m", "seqlab", "train", "g2p", "--run-dir", str(run_dir), *flags,
               f"dict_path={lexicon}", *SETTINGS]
        with self.out.open("w") as out, self.err.open("w") as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, env={**os.environ, "OMP_NUM_THREADS": "1"})

    def wait(self):
        """``(exit code, stdout, last lines of stderr)`` once it has ended."""
        code = self.proc.wait(timeout=1800)  # a guard against a hung process, not a speed requirement
        return code, self.out.read_text(), self.err.read_text()[-2000:]


@pytest.fixture
def train(lexicon):
    """Start ``seqlab train g2p`` on the tiny lexicon; every process still running at the end is killed."""
    runs = []

    def start(run_dir, *flags):
        runs.append(_Training(run_dir, flags, lexicon, len(runs)))
        return runs[-1]

    yield start
    for run in runs:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()


def _last_epoch(run_dir):
    try:
        return json.loads((run_dir / "last" / "meta.json").read_text())["epoch"]
    except (OSError, ValueError, KeyError):  # not written yet, or being swapped in
        return 0


def _kill_when(training, run_dir, epoch, delay):
    """SIGKILL a training ``delay`` seconds after ``run_dir/last`` holds ``epoch``."""
    deadline = time.monotonic() + 1800  # a guard against a hung process, not a speed requirement
    while _last_epoch(run_dir) < epoch:
        assert training.proc.poll() is None, training.wait()
        assert time.monotonic() < deadline, f"no checkpoint of epoch {epoch} after 30 minutes"
        time.sleep(0.005)
    time.sleep(delay)
    training.proc.send_signal(signal.SIGKILL)
    assert training.wait()[0] == -signal.SIGKILL


def test_training_killed_at_several_points_resumes_to_identical_weights(tmp_path, train):
    straight = train(tmp_path / "straight")  # runs alongside the interrupted one
    run = tmp_path / "killed"
    _kill_when(train(run), run, epoch=1, delay=0.0)  # right after the first checkpoint
    _kill_when(train(run, "--resume"), run, epoch=2, delay=0.05)  # early in epoch 3
    code, out, err = train(run, "--resume").wait()
    assert code == 0 and "resumed" in out, err
    code, _, err = straight.wait()
    assert code == 0, err

    for folder in ("last", "best"):
        a_model, a_meta, a_trainer = load_checkpoint(tmp_path / "straight" / folder, with_trainer=True)
        b_model, b_meta, b_trainer = load_checkpoint(run / folder, with_trainer=True)
        assert a_meta["epoch"] == b_meta["epoch"] and a_meta["metrics"] == b_meta["metrics"]
        assert a_model.keys() == b_model.keys()
        for name in a_model:
            assert torch.equal(a_model[name], b_model[name]), f"{folder}/{name}"
        if folder == "last":  # optimizer moments and RNG state too
            assert a_meta["epoch"] == 3 and a_trainer.keys() == b_trainer.keys()
            for name in a_trainer:
                assert torch.equal(a_trainer[name], b_trainer[name]), f"{folder}/{name}"
