"""Bad input to the real ``seqlab`` command: one line on stderr (plus a hint), exit code 2, never a traceback.

Every case runs the CLI in its own subprocess; they are started together
because each one spends most of its time importing torch.
"""

import json
import pickle
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from safetensors.torch import save_file

from seqlab.tasks.g2p import PRETRAINED


def _files(root):
    """The bad inputs, written under ``root``."""
    (root / "malformed.dict").write_text("abc A B C\nabd A B D\nhello\n")
    (root / "latin1.dict").write_bytes("caf\xe9 K AE F EY1\n".encode("latin-1"))
    (root / "symbols.txt").write_text("café\nx€y\n")
    (root / "empty.txt").write_text("\n  \n")
    (root / "long.txt").write_text("hello\n" + "a" * 41 + "\n")
    (root / "no_files").mkdir()
    (root / "model.pt").write_bytes(pickle.dumps({"w": [1.0, 2.0]}))
    meta = json.loads((PRETRAINED / "meta.json").read_text())
    for name, model_bytes, meta_text in [
        ("pickled", pickle.dumps({"w": [1.0]}), json.dumps(meta)),
        ("other_task", None, json.dumps({**meta, "task": "lm"})),
        ("wrong_weights", None, json.dumps(meta)),
    ]:
        folder = root / name
        folder.mkdir()
        if model_bytes is None:
            save_file({"w": torch.zeros(2)}, str(folder / "model.safetensors"))
        else:
            (folder / "model.safetensors").write_bytes(model_bytes)
        (folder / "meta.json").write_text(meta_text)


def _busy_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock


# name -> (arguments, text(s) the error line must contain, text the hint must contain or None)
CASES = {
    "bad config value": (["train", "g2p", "cell=nope"], "unknown cell 'nope'; valid cells: rnn_tanh", None),
    "missing data file": (["train", "g2p", "dict_path={root}/none.dict"], "none.dict: cannot read", None),
    "malformed dictionary line": (["train", "g2p", "dict_path={root}/malformed.dict"],
                                  "malformed.dict:3: word 'hello' has no phones", None),
    "unreadable data file": (["train", "g2p", "dict_path={root}/latin1.dict"], "latin1.dict: not valid utf-8", None),
    "unknown symbol": (["predict", "g2p", "--input", "{root}/symbols.txt", "--output", "{root}/o.tsv"],
                       "symbols.txt:2: cannot pronounce 'x€y': unsupported character '€'", "letters a-z"),
    "empty input": (["predict", "g2p", "--input", "{root}/empty.txt", "--output", "{root}/o.tsv"],
                    "empty.txt has no words", "one word per line"),
    "over-long input": (["predict", "g2p", "--input", "{root}/long.txt", "--output", "{root}/o.tsv"],
                        ("long.txt:2: cannot pronounce 'aaaa", "...: longer than 40 letters"), None),
    "checkpoint missing files": (["g2p", "hello", "--checkpoint", "{root}/no_files"],
                                 "is missing model.safetensors, meta.json", "pickled"),
    "pickle file as checkpoint": (["g2p", "hello", "--checkpoint", "{root}/model.pt"],
                                  "model.pt is a file, not a folder", "pickled .pt/.pth files are refused"),
    "pickle inside a checkpoint": (["g2p", "hello", "--checkpoint", "{root}/pickled"],
                                   "model.safetensors is not a valid safetensors file", None),
    "checkpoint of another model type": (["g2p", "hello", "--checkpoint", "{root}/other_task"],
                                         "is a 'lm' model, not a G2P model", None),
    "checkpoint weights of another model": (["g2p", "hello", "--checkpoint", "{root}/wrong_weights"],
                                            "does not match its config", None),
    "serve on a busy port": (["serve", "--port", "{port}"], "cannot listen on 127.0.0.1:{port}", "--port"),
    "resume and restart together": (["train", "g2p", "--resume", "--restart"],
                                     "argument --restart: not allowed with argument --resume", None),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    _files(root)
    busy = _busy_port()
    port = busy.getsockname()[1]

    def run(args):
        args = [a.format(root=root, port=port) for a in args]
        return subprocess.run([sys.executable, "-m", "seqlab", *args], capture_output=True, text=True, timeout=1800,
                              cwd=root)

    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            results = dict(zip(CASES, pool.map(run, [args for args, _, _ in CASES.values()])))
    finally:
        busy.close()
    return results, port


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_exit_2(runs, case):
    results, port = runs
    run = results[case]
    _, message, hint = CASES[case]
    assert run.returncode == 2, (run.returncode, run.stderr[-3000:])
    assert "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    if case == "resume and restart together":  # argparse's own usage error
        assert lines[-1].startswith("seqlab train: error:") and message in lines[-1]
        return
    assert lines[0].startswith("seqlab: error: "), lines
    for text in [message] if isinstance(message, str) else message:
        assert text.format(port=port) in lines[0], lines
    assert len(lines) <= 2 and all(line.startswith("hint: ") for line in lines[1:]), lines
    if hint:
        assert len(lines) == 2 and hint in lines[1], lines
