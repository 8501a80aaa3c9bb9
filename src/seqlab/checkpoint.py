"""Checkpoints: tensors in safetensors, everything else in JSON.  Never pickle.

A checkpoint is a folder:

    model.safetensors   the model's parameters (and buffers)
    meta.json           task, config, vocabularies, metrics, format version
    trainer.safetensors optimizer moments and RNG state (resumable runs only)

Every file is written to a temporary name in the same folder, flushed to
disk and renamed over the old one, so a crash leaves either the old or the
new file, never half of one.  ``meta.json`` is written last.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import SeqlabError

__all__ = ["save_checkpoint", "load_checkpoint", "atomic_write_bytes", "FORMAT_VERSION"]

FORMAT_VERSION = 1
MODEL_FILE, META_FILE, TRAINER_FILE = "model.safetensors", "meta.json", "trainer.safetensors"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; checkpoints are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _atomic_save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(
    folder: str | Path,
    model_tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    trainer_tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _atomic_save_tensors(folder / MODEL_FILE, model_tensors)
    if trainer_tensors is not None:
        _atomic_save_tensors(folder / TRAINER_FILE, trainer_tensors)
    meta = {"format": FORMAT_VERSION, **meta}
    atomic_write_bytes(folder / META_FILE, json.dumps(meta, indent=2, sort_keys=True).encode("utf-8"))
    return folder


def load_checkpoint(
    folder: str | Path, *, with_trainer: bool = False
) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, torch.Tensor] | None]:
    """``(model tensors, meta, trainer tensors or None)``; clear errors for anything wrong."""
    folder = Path(folder)
    if not folder.is_dir():
        hint = "a checkpoint is a folder with model.safetensors and meta.json"
        if folder.is_file():
            raise SeqlabError(f"checkpoint {folder} is a file, not a folder", hint=hint)
        raise SeqlabError(f"checkpoint folder {folder} does not exist", hint=hint)
    missing = [name for name in (MODEL_FILE, META_FILE) if not (folder / name).is_file()]
    if missing:
        raise SeqlabError(
            f"checkpoint {folder} is missing {', '.join(missing)}",
            hint="seqlab checkpoints are safetensors + JSON; pickled .pt/.pth files are refused",
        )
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SeqlabError(f"checkpoint {folder}: meta.json is unreadable ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        raise SeqlabError(f"checkpoint {folder}: meta.json is not a seqlab checkpoint (format {FORMAT_VERSION})")
    tensors = _load_tensors(folder / MODEL_FILE)
    trainer = None
    if with_trainer and (folder / TRAINER_FILE).is_file():
        trainer = _load_tensors(folder / TRAINER_FILE)
    return tensors, meta, trainer


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as err:
        raise SeqlabError(f"{path} is not a valid safetensors file ({str(err).splitlines()[0]})") from None
