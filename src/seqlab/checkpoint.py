"""Checkpoints: tensors in safetensors, everything else in JSON.  Never pickle.

A checkpoint is a folder:

    model.safetensors   the model's parameters (and buffers)
    meta.json           task, config, vocabularies, metrics, format version
    trainer.safetensors optimizer moments and RNG state (resumable runs only)

A checkpoint folder is replaced as a whole, never file by file: a crash
(even SIGKILL, or power loss after the data reached the disk) leaves either
the complete old checkpoint or the complete new one, never a new model with
an old optimizer state.  See :func:`save_checkpoint` for how.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import SeqlabError

__all__ = ["save_checkpoint", "load_checkpoint", "checkpoint_exists", "atomic_write_bytes", "FORMAT_VERSION"]

FORMAT_VERSION = 1
MODEL_FILE, META_FILE, TRAINER_FILE = "model.safetensors", "meta.json", "trainer.safetensors"
_OWN_FILES = (MODEL_FILE, META_FILE, TRAINER_FILE)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


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


# ----------------------------------------------------------------------
# Whole-folder replacement
# ----------------------------------------------------------------------


def _staging(folder: Path) -> Path:
    """Where a new checkpoint is written before it replaces ``folder``."""
    return folder.with_name(f".{folder.name}.new")


def _retired(folder: Path) -> Path:
    """Where the old checkpoint waits, between the two renames, to be deleted."""
    return folder.with_name(f".{folder.name}.old")


def _complete(folder: Path) -> bool:
    return folder.is_dir() and all((folder / name).is_file() for name in (MODEL_FILE, META_FILE))


def _readable(folder: Path) -> Path:
    """The folder holding the checkpoint last saved to ``folder``, without changing anything on disk.

    Only a save interrupted between its two renames leaves ``folder``
    missing; the complete new checkpoint is then in the staging folder.
    """
    if folder.exists():
        return folder
    for candidate in (_staging(folder), _retired(folder)):
        if _complete(candidate):
            return candidate
    return folder


def checkpoint_exists(folder: str | Path) -> bool:
    """True when ``folder`` holds a checkpoint (also right after a save that was killed half-way)."""
    return _complete(_readable(Path(folder)))


def _recover(folder: Path) -> None:
    """Finish or undo a save that was interrupted, so that ``folder`` is the last complete checkpoint."""
    staging, retired = _staging(folder), _retired(folder)
    if not folder.exists():
        for candidate in (staging, retired):  # killed between the renames: staging is complete
            if _complete(candidate):
                os.rename(candidate, folder)
                _fsync_dir(folder.parent)
                break
    for leftover in (staging, retired):  # a save killed before its renames, or before its clean-up
        if leftover.is_dir():
            shutil.rmtree(leftover)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _carry_over(old: Path, new: Path) -> None:
    """Put the files a user keeps in a checkpoint folder (notes, exports) into the new one too.

    Hard links where the file system allows them, so nothing is copied; the
    old checkpoint's own files and temporary files are left behind.
    """
    for entry in old.iterdir():
        if entry.name in _OWN_FILES or (entry.name.startswith(".") and entry.name.endswith(".tmp")):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, new / entry.name, symlinks=True, copy_function=_link_or_copy)
        elif entry.is_symlink():
            os.symlink(os.readlink(entry), new / entry.name)
        else:
            _link_or_copy(str(entry), str(new / entry.name))


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path))
    _fsync_file(path)


def save_checkpoint(
    folder: str | Path,
    model_tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    trainer_tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a checkpoint folder so that a crash at any point leaves a complete checkpoint.

    The files go into a staging folder ``.NAME.new`` beside ``folder`` and
    are flushed to disk; other files a user keeps in ``folder`` are linked
    into it.  Then two renames swap it in: ``folder`` -> ``.NAME.old``,
    ``.NAME.new`` -> ``folder``, and the old folder is deleted.  A save
    killed before the renames leaves the old checkpoint in place; one killed
    between them leaves only the complete staging folder, which
    :func:`load_checkpoint` reads and the next save renames into place.
    One process writes a given folder at a time.
    """
    folder = Path(os.path.abspath(folder))
    if folder == Path(os.path.abspath(os.curdir)) or folder in Path(os.path.abspath(os.curdir)).parents:
        raise SeqlabError(f"cannot write a checkpoint into {folder}: it is the working folder",
                          hint="give the checkpoint a folder of its own")
    if folder.exists() and not folder.is_dir():
        raise SeqlabError(f"cannot write checkpoint {folder}: a file of that name exists")
    folder.parent.mkdir(parents=True, exist_ok=True)
    _recover(folder)
    staging, retired = _staging(folder), _retired(folder)
    staging.mkdir()
    try:
        _save_tensors(staging / MODEL_FILE, model_tensors)
        if trainer_tensors is not None:
            _save_tensors(staging / TRAINER_FILE, trainer_tensors)
        meta = {"format": FORMAT_VERSION, **meta}
        (staging / META_FILE).write_bytes(json.dumps(meta, indent=2, sort_keys=True).encode("utf-8"))
        _fsync_file(staging / META_FILE)
        if folder.exists():
            _carry_over(folder, staging)
        _fsync_dir(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if folder.exists():
        os.rename(folder, retired)
    os.rename(staging, folder)
    _fsync_dir(folder.parent)
    shutil.rmtree(retired, ignore_errors=True)
    return folder


def load_checkpoint(
    folder: str | Path, *, with_trainer: bool = False
) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, torch.Tensor] | None]:
    """``(model tensors, meta, trainer tensors or None)``; clear errors for anything wrong."""
    folder = Path(folder)
    source = _readable(folder)
    if not source.is_dir():
        hint = "a checkpoint is a folder with model.safetensors and meta.json"
        if folder.is_file():
            raise SeqlabError(
                f"checkpoint {folder} is a file, not a folder",
                hint=f"{hint}; pickled .pt/.pth files are refused (they can run code when loaded)",
            )
        raise SeqlabError(f"checkpoint folder {folder} does not exist", hint=hint)
    missing = [name for name in (MODEL_FILE, META_FILE) if not (source / name).is_file()]
    if missing:
        raise SeqlabError(
            f"checkpoint {folder} is missing {', '.join(missing)}",
            hint="seqlab checkpoints are safetensors + JSON; pickled .pt/.pth files are refused",
        )
    try:
        meta = json.loads((source / META_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SeqlabError(f"checkpoint {folder}: meta.json is unreadable ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        raise SeqlabError(f"checkpoint {folder}: meta.json is not a seqlab checkpoint (format {FORMAT_VERSION})")
    tensors = _load_tensors(source / MODEL_FILE)
    trainer = None
    if with_trainer and (source / TRAINER_FILE).is_file():
        trainer = _load_tensors(source / TRAINER_FILE)
    return tensors, meta, trainer


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as err:
        raise SeqlabError(f"{path} is not a valid safetensors file ({str(err).splitlines()[0]})") from None
