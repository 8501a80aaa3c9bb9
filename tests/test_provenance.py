from pathlib import Path

from seqlab import provenance
from seqlab.nn._kernels.build import vector_isa


def _cache(root: Path, index: int, level: int, kind: str, size: str) -> None:
    folder = root / f"index{index}"
    folder.mkdir(parents=True)
    (folder / "level").write_text(f"{level}\n")
    (folder / "type").write_text(f"{kind}\n")
    (folder / "size").write_text(f"{size}\n")


def test_l2_per_core_reads_the_level_2_data_cache(tmp_path):
    _cache(tmp_path, 0, 1, "Data", "32K")
    _cache(tmp_path, 1, 1, "Instruction", "32K")
    _cache(tmp_path, 2, 2, "Unified", "512K")
    _cache(tmp_path, 3, 3, "Unified", "32768K")
    assert provenance._l2_per_core(tmp_path) == "512 KiB L2 per core"


def test_l2_per_core_in_mib_and_when_unknown(tmp_path):
    _cache(tmp_path / "a", 2, 2, "Unified", "2048K")
    assert provenance._l2_per_core(tmp_path / "a") == "2 MiB L2 per core"
    assert provenance._l2_per_core(tmp_path / "missing") == ""


def test_cpu_name_names_the_vector_instruction_set():
    name = provenance.cpu_name()
    assert name.split(" (")[0] and f"({vector_isa()}" in name
