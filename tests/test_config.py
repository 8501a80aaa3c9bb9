import pytest

from seqlab.config import load_config, parse_overrides
from seqlab.errors import ConfigError
from seqlab.tasks.g2p import G2PConfig


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("cell: gru\nepochs: 3\nlr: 1\n")
    config = load_config(G2PConfig, path, ["epochs=5", "clip_value=0.5", "max_minutes=null"])
    assert (config.cell, config.epochs, config.lr, config.clip_value, config.max_minutes) == ("gru", 5, 1.0, 0.5, None)


def test_unknown_key_lists_valid_keys(tmp_path):
    with pytest.raises(ConfigError, match="unknown key.*hidden") as err:
        load_config(G2PConfig, None, ["hidden=3"])
    assert "enc_hidden" in err.value.hint and "batch_tokens" in err.value.hint


@pytest.mark.parametrize(
    "override, message",
    [("epochs=2.5", "epochs must be int"), ("bidirectional=maybe", "bidirectional must be bool"),
     ("cell=lsmt", "unknown cell"), ("dropout=1.5", "dropout"), ("epochs", "not key=value")],
)
def test_bad_values(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(G2PConfig, None, [override])


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(G2PConfig, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(G2PConfig, bad)


def test_parse_overrides_types():
    assert parse_overrides(["a=1", "b=0.5", "c=true", "d=gru", "e=null"]) == dict(a=1, b=0.5, c=True, d="gru", e=None)
