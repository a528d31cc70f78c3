"""Recipe config: strict sections, overrides, did-you-mean errors, round trip of the resolved recipe."""

from __future__ import annotations

import pytest
import yaml

from tuneforge.cli import main
from tuneforge.config import dump_recipe, load_recipe
from tuneforge.config.recipe import apply_override
from tuneforge.errors import ConfigError


def write(tmp_path, text: str):
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_and_list_shorthand_for_data(tmp_path):
    (tmp_path / "d.json").write_text("[]", encoding="utf-8")
    recipe = load_recipe(write(tmp_path, "data:\n  - path: d.json\n    weight: 2\n"))
    assert recipe.data.sources[0].weight == 2
    # data paths are resolved relative to the recipe file, so recipes work from any directory
    assert recipe.data.sources[0].path == str(tmp_path / "d.json")
    assert recipe.method.type == "lora" and recipe.hparams.learning_rate == "auto"


def test_unknown_key_names_path_and_closest_match(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_recipe(write(tmp_path, "hparams:\n  lerning_rate: 1e-4\n"))
    message = str(err.value)
    assert "unknown key `hparams.lerning_rate`; did you mean `learning_rate`?" in message
    assert "allowed:" in message and "batch_size" in message


def test_bad_literal_lists_allowed_values_and_suggestion():
    with pytest.raises(ConfigError) as err:
        load_recipe(None, ["method.type=lorra"])
    message = str(err.value)
    assert "`method.type`" in message and "'prefix_tuning'" in message and "did you mean 'lora'" in message


def test_wrong_type_names_field():
    with pytest.raises(ConfigError, match=r"`hparams.batch_size`.*got 'many'"):
        load_recipe(None, ["hparams.batch_size=many"])


def test_source_needs_path_or_name():
    with pytest.raises(ConfigError, match="needs `path` or `name`"):
        load_recipe(None, ["data.sources.0.weight=1"])


def test_overrides_parse_yaml_values_and_list_indices():
    raw: dict = {"data": [{"path": "a.json"}]}
    apply_override(raw, "data.0.path=b.json")
    apply_override(raw, "hparams.learning_rate=1e-4")
    apply_override(raw, "hparams.report_to=[tensorboard]")
    apply_override(raw, "method.lora.use_dora=true")
    assert raw["data"] == {"sources": [{"path": "b.json"}]}
    assert raw["hparams"] == {"learning_rate": 1e-4, "report_to": ["tensorboard"]}
    assert raw["method"]["lora"]["use_dora"] is True
    with pytest.raises(ConfigError, match="key.sub=value"):
        apply_override(raw, "hparams.learning_rate")


def test_invalid_yaml_reports_line(tmp_path):
    with pytest.raises(ConfigError, match=r"recipe.yaml:\d+: invalid YAML"):
        load_recipe(write(tmp_path, "model:\n  name_or_path: x\n  bad: [unclosed\n"))


def test_recipe_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="mapping"):
        load_recipe(write(tmp_path, "- just\n- a list\n"))


def test_resolved_recipe_round_trips(tmp_path):
    recipe = load_recipe(None, [f"data.0.path={tmp_path / 'x.json'}", "hparams.epochs=2", "seed=3"])
    path = dump_recipe(recipe, tmp_path / "out" / "recipe.yaml")
    assert yaml.safe_load(path.read_text())["hparams"]["epochs"] == 2
    assert load_recipe(path) == recipe


def test_cli_positional_overrides_fail_with_one_line_per_problem(tmp_path, capsys):
    recipe = write(tmp_path, "name: x\n")
    assert main(["train", str(recipe), "hparams.lerning_rate=1", "method.type=lorra"]) == 2
    err = capsys.readouterr().err
    assert "did you mean `learning_rate`" in err and "did you mean 'lora'" in err
    assert "Traceback" not in err


def test_cli_overrides_know_every_recipe_section():
    from tuneforge.cli.prepare_cmd import split_recipe_args

    recipe, overrides = split_recipe_args(["r.yaml", "synthesize.n=3", "search.trials=2", "dedup.enabled=false"])
    assert recipe == "r.yaml"
    assert overrides == ["synthesize.n=3", "search.trials=2", "data.prepare.dedup.enabled=false"]
