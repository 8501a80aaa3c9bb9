import pickle

import pytest
import torch

from seqlab.checkpoint import atomic_write_bytes, load_checkpoint, save_checkpoint
from seqlab.errors import SeqlabError


def test_round_trip(tmp_path):
    tensors = {"w": torch.randn(3, 4), "b": torch.arange(5)}
    save_checkpoint(tmp_path / "ck", tensors, {"task": "x", "n": 1}, {"rng": torch.get_rng_state()})
    loaded, meta, trainer = load_checkpoint(tmp_path / "ck", with_trainer=True)
    assert meta["task"] == "x" and meta["format"] == 1
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())
    assert torch.equal(trainer["rng"], torch.get_rng_state())


def test_no_temporary_files_left(tmp_path):
    save_checkpoint(tmp_path / "ck", {"w": torch.ones(2)}, {})
    atomic_write_bytes(tmp_path / "ck" / "note.txt", b"hi")
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["meta.json", "model.safetensors", "note.txt"]


def test_pickle_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(pickle.dumps({"w": [1, 2]}))
    with pytest.raises(SeqlabError, match="is a file, not a folder"):
        load_checkpoint(path)
    folder = tmp_path / "ck"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(pickle.dumps({"w": [1, 2]}))
    (folder / "meta.json").write_text('{"format": 1}')
    with pytest.raises(SeqlabError, match="not a valid safetensors"):
        load_checkpoint(folder)


def test_missing_files_and_foreign_meta(tmp_path):
    with pytest.raises(SeqlabError, match="does not exist"):
        load_checkpoint(tmp_path / "none")
    (tmp_path / "ck").mkdir()
    with pytest.raises(SeqlabError, match="missing model.safetensors, meta.json"):
        load_checkpoint(tmp_path / "ck")
    save_checkpoint(tmp_path / "ck", {"w": torch.ones(1)}, {})
    (tmp_path / "ck" / "meta.json").write_text('{"something": "else"}')
    with pytest.raises(SeqlabError, match="not a seqlab checkpoint"):
        load_checkpoint(tmp_path / "ck")
