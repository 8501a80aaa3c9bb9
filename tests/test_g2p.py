"""The G2P recipe and its commands, run as a user would (real CLI in a subprocess)."""

import subprocess
import sys

import pytest
import torch

from seqlab.errors import SeqlabError
from seqlab.tasks.g2p import (
    MAX_WORD_LENGTH,
    PRETRAINED,
    PRETRAINED_FAST,
    G2PModel,
    _batches,
    load_pretrained,
    normalize_word,
)
from seqlab.train import Trainer


def test_decoding_batches_keep_long_runs_of_one_length_and_pool_short_ones():
    from seqlab.tasks.g2p import MIN_BATCH_WORDS

    words = ["abc", "a", "de", "fgh", "ij", "k", "lmn", "op"]
    assert _batches(words, 256) == [[1, 5, 2, 4, 7, 0, 3, 6]]  # few words: one batch, shortest first
    capped = _batches(words, 3)
    assert capped == [[1, 5, 2], [4, 7, 0], [3, 6]]
    # Lengths with enough words get batches of their own; a short run joins the next length's words.
    many = ["ab"] * (MIN_BATCH_WORDS + 5) + ["abc"] * 3 + ["abcd"] * MIN_BATCH_WORDS
    batches = _batches(many, 256)
    assert [sorted({len(many[i]) for i in b}) for b in batches] == [[2], [3, 4]]
    assert sorted(i for b in batches for i in b) == list(range(len(many)))
    assert [len(b) for b in _batches(many, 50)] == [50, 50, 36]
    with pytest.raises(ValueError, match="batch_size"):
        _batches(words, 0)


@pytest.mark.parametrize(
    "raw, parts",
    [("Hello", ["hello"]), ("  CAFÉ ", ["cafe"]), ("naïve", ["naive"]), ("well-known", ["well", "known"]),
     ("o'brien", ["o'brien"]), ("snake_case", ["snake", "case"])],
)
def test_normalization(raw, parts):
    assert normalize_word(raw) == parts


@pytest.mark.parametrize(
    "raw, message",
    [("", "empty"), ("r2d2", "digits"), ("a+b", "unsupported character '\\+'"), ("---", "no letters"),
     ("日本", "unsupported character '日'"), ("a" * (MAX_WORD_LENGTH + 1), "longer than")],
)
def test_unpronounceable_input(raw, message):
    with pytest.raises(SeqlabError, match=message):
        normalize_word(raw)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from conftest import TINY, synthetic_g2p

    from seqlab.tasks.g2p import G2PConfig, G2PTask

    task = G2PTask(G2PConfig(**{**TINY, "epochs": 6}), synthetic_g2p())
    torch.manual_seed(0)
    run = tmp_path_factory.mktemp("g2p")
    Trainer(task.build_model(), task, task.config, run).fit(log=lambda *_: None)
    return run / "best"


def _seqlab(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "seqlab", *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_model_round_trips_through_checkpoint(checkpoint):
    model = G2PModel.from_checkpoint(checkpoint)
    phones = model.pronounce(["abc", "hgfe"])
    assert all(isinstance(p, str) for ps in phones for p in ps)
    weights = model.attention("abc", phones[0])
    assert weights.shape == (len(phones[0]) + 1, 3)
    torch.testing.assert_close(weights.sum(-1), torch.ones(len(phones[0]) + 1))


def test_words_of_mixed_lengths_in_one_batch_decode_as_alone(checkpoint):
    model = G2PModel.from_checkpoint(checkpoint)
    words = ["hgfe", "ab", "c", "abcdefg", "ba", "dd"]
    for beam in (1, 3):
        assert model.pronounce(words, beam=beam) == [model.pronounce([w], beam=beam)[0] for w in words]
    phones = model.pronounce(words)
    for (score, weights), word, ph in zip(model.score(words, phones), words, phones):
        alone_score, alone_weights = model.score([word], [ph])[0]
        assert score == pytest.approx(alone_score, abs=1e-4)
        torch.testing.assert_close(weights, alone_weights, atol=1e-5, rtol=1e-4)


def test_g2p_command_prints_phones_and_plots(checkpoint, tmp_path):
    run = _seqlab("g2p", "abc", "Bad-Cafe", "--checkpoint", str(checkpoint), "--plot", str(tmp_path / "a.png"))
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["abc", "Bad-Cafe"]
    assert (tmp_path / "a.png").stat().st_size > 1000


@pytest.mark.parametrize("word, message", [("r2d2", "digits"), ("", "empty"), ("a@b", "unsupported character")])
def test_g2p_command_bad_input_is_one_line(checkpoint, word, message):
    run = _seqlab("g2p", word, "--checkpoint", str(checkpoint))
    assert run.returncode == 2
    assert "Traceback" not in run.stderr and message in run.stderr
    assert run.stderr.startswith("seqlab: error:")


@pytest.mark.parametrize("compute", [[], ["--int8-compute"], ["--bf16-compute"]])
def test_predict_command(checkpoint, tmp_path, compute):
    (tmp_path / "in.txt").write_text("abc\n\nHEAD\ncafé\n")
    run = _seqlab("predict", "g2p", "--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "out.tsv"),
                  "--checkpoint", str(checkpoint), "--beam", "3", *compute)
    assert run.returncode == 0, run.stderr
    rows = [line.split("\t") for line in (tmp_path / "out.tsv").read_text().splitlines()]
    assert [r[0] for r in rows] == ["abc", "HEAD", "café"] and all(len(r) == 2 for r in rows)


def test_predict_reports_file_and_line(checkpoint, tmp_path):
    (tmp_path / "in.txt").write_text("abc\nr2d2\n")
    run = _seqlab("predict", "g2p", "--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "o"),
                  "--checkpoint", str(checkpoint))
    assert run.returncode == 2 and "in.txt:2:" in run.stderr and "Traceback" not in run.stderr


def test_checkpoint_errors_are_one_line(tmp_path):
    run = _seqlab("g2p", "abc", "--checkpoint", str(tmp_path / "missing"))
    assert run.returncode == 2 and "does not exist" in run.stderr and "Traceback" not in run.stderr
    run = _seqlab("train", "g2p", "hidden=3")
    assert run.returncode == 2 and "unknown key(s) hidden" in run.stderr and "valid keys" in run.stderr


@pytest.mark.skipif(not (PRETRAINED / "meta.json").is_file(), reason="no shipped model in this checkout yet")
def test_shipped_model_pronounces_hello_world():
    from seqlab.data import read_cmudict

    lexicon = read_cmudict()
    run = _seqlab("g2p", "hello", "world")
    assert run.returncode == 0, run.stderr
    for line, word in zip(run.stdout.splitlines(), ["hello", "world"], strict=True):
        printed, phones = line.split("\t")
        assert printed == word and tuple(phones.split()) in lexicon[word]


@pytest.mark.skipif(not (PRETRAINED_FAST / "meta.json").is_file(), reason="no shipped fast model in this checkout")
def test_shipped_fast_model_pronounces_hello_world_greedily():
    from seqlab.data import read_cmudict

    lexicon = read_cmudict()
    model = load_pretrained(fast=True)
    assert model.meta["config"]["teacher_file"] and not model.meta.get("members")  # one distilled network
    run = _seqlab("g2p", "--fast", "hello", "world")
    assert run.returncode == 0, run.stderr
    printed = [line.split("\t") for line in run.stdout.splitlines()]
    assert [w for w, _ in printed] == ["hello", "world"]
    assert [p.split() for _, p in printed] == [list(x) for x in model.pronounce(["hello", "world"], beam=1)]
    assert all(tuple(p.split()) in lexicon[w] for w, p in printed)


def test_g2p_command_computes_in_bf16_on_request():
    model = load_pretrained(fast=True).bfloat16()
    assert model.meta["compute"] == "bfloat16"
    run = _seqlab("g2p", "--fast", "--bf16-compute", "hello", "world")
    assert run.returncode == 0, run.stderr
    assert [line.split("\t")[1].split() for line in run.stdout.splitlines()] == model.pronounce(["hello", "world"])
    both = _seqlab("g2p", "--fast", "--bf16-compute", "--int8-compute", "hello")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


def test_fast_and_checkpoint_exclude_each_other(checkpoint):
    run = _seqlab("g2p", "--fast", "--checkpoint", str(checkpoint), "hello")
    assert run.returncode == 2 and "not allowed with argument" in run.stderr
    with pytest.raises(SeqlabError, match="not both"):
        load_pretrained(checkpoint, fast=True)


def _bench_module():
    from conftest import load_benchmark

    return load_benchmark("g2p_vs_phonetisaurus")


def test_bench_g2p_decodes_each_model_in_float32_int8_and_bf16(checkpoint):
    import argparse

    bench = _bench_module()
    model = G2PModel.from_checkpoint(checkpoint)
    systems = bench._systems(model, argparse.Namespace(member=checkpoint, int8=True, bf16=True))
    assert [name for name, _, _ in systems] == ["seqlab", "seqlab, int8", "seqlab, bf16", "seqlab (one model)",
                                                "seqlab (one model), int8", "seqlab (one model), bf16"]
    assert [s.meta.get("compute") for _, s, _ in systems[:3]] == [None, "int8", "bfloat16"]
    words = ["abc", "hgfe", "dd"]
    for _, system, meta in systems:
        assert meta["task"] == "g2p"
        assert all(len(p) > 0 for p in system.pronounce(words, beam=2))


def test_bench_g2p_says_whether_the_single_model_is_distilled():
    bench = _bench_module()
    student = bench._member_note({"config": {"teacher_file": "runs/t.tsv", "enc_layers": 2, "enc_hidden": 192}})
    member = bench._member_note({"config": {"enc_layers": 2, "enc_hidden": 256}})
    assert "distilled" in student and "2 x 192" in student
    assert "distilled" not in member and "2 x 256" in member


@pytest.mark.parametrize("mode", ["replace", "add"])
def test_teacher_file_sets_the_training_targets(tmp_path, mode):
    from conftest import TINY, synthetic_g2p

    from seqlab.tasks.g2p import G2PConfig, G2PTask

    data = synthetic_g2p()
    word, prons = data["train"][0]
    (tmp_path / "teacher.tsv").write_text(f"{word}\tA B\n\n")
    task = G2PTask(G2PConfig(**TINY, teacher_file=str(tmp_path / "teacher.tsv"), teacher_mode=mode), data)
    targets = {tuple(task.phones.decode(t)) for s, t in zip(task.src, task.tgt) if task.letters.decode(s) == list(word)}
    assert targets == ({("A", "B")} if mode == "replace" else {("A", "B"), *prons})
    others = [(s, t) for s, t in zip(task.src, task.tgt) if task.letters.decode(s) != list(word)]
    plain = G2PTask(G2PConfig(**TINY), data)
    assert others == [(s, t) for s, t in zip(plain.src, plain.tgt) if plain.letters.decode(s) != list(word)]


@pytest.mark.parametrize("line, message", [("zzzzzz\tA\n", "not a training word"), ("abc\n", "expected word<TAB>")])
def test_teacher_file_errors_name_the_line(tmp_path, line, message):
    from conftest import TINY, synthetic_g2p

    from seqlab.tasks.g2p import G2PConfig, G2PTask

    (tmp_path / "teacher.tsv").write_text(line)
    with pytest.raises(SeqlabError, match=f"teacher.tsv:1: .*{message}"):
        G2PTask(G2PConfig(**TINY, teacher_file=str(tmp_path / "teacher.tsv")), synthetic_g2p())
