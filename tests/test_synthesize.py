"""LLM-based data synthesis: parsing, every filter's reason, ROUGE-L novelty, output round trip,
determinism, resume, CLI, bad seed files, a real SmolLM2 run and a loopback OpenAI-compatible endpoint."""

from __future__ import annotations

import hashlib
import json

import pytest

from tuneforge.cli import main
from tuneforge.config.synthesize import SynthesizeConfig
from tuneforge.data import collect_records, read_source
from tuneforge.data.records import Conversation
from tuneforge.data.synthesize import Completion, load_seeds, parse_task, synthesize
from tuneforge.data.synthesize.filters import REASONS
from tuneforge.errors import ConfigError, DataError

SEEDS = [
    {"id": "s1", "instruction": "Give three tips for staying healthy.", "input": "", "output": "Eat well, sleep, move."},
    {"id": "s2", "instruction": "Translate the sentence into French.", "input": "Good morning.", "output": "Bonjour."},
    {"id": "s3", "instruction": "Classify the sentiment of the review as positive or negative.",
     "input": "I loved it.", "output": "positive"},
]
GOOD_TASK = " Suggest a name for a bakery that sells only bread.\nInput: <noinput>\n###"
GOOD_OUTPUT = "How about \"The Daily Loaf\"? It is short, warm and says what the shop sells."


class Scripted:
    """complete() answers task prompts from `tasks`, chat() answers output prompts from `outputs`, in order."""

    name = "scripted"

    def __init__(self, tasks, outputs=()):
        self.tasks, self.outputs = list(tasks), list(outputs)
        self.task_prompts, self.chat_prompts = [], []

    def complete(self, prompts, **_):
        self.task_prompts += prompts
        return [self.tasks.pop(0) for _ in prompts]

    def chat(self, prompts, **_):
        self.chat_prompts += prompts
        return [self.outputs.pop(0) for _ in prompts]


def config(**filters) -> SynthesizeConfig:
    cfg = SynthesizeConfig()
    cfg.generator.batch_size = 4
    cfg.prompt.num_examples, cfg.prompt.header = 3, "Tasks:"  # short prompts: the tiny model has 512 positions
    for key, value in filters.items():
        setattr(cfg.filter, key, value)
    return cfg


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- parsing -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, instruction, task_input, closed", [
    (" Write a haiku about rain.\nInput: <noinput>\n###", "Write a haiku about rain.", "", True),
    (" Summarize the text.\nInput: The cat sat on the mat.\n###\nInstruction: next", "Summarize the text.",
     "The cat sat on the mat.", True),
    (" Summarize the text.\ninput : Some text\nOutput: a summary", "Summarize the text.", "Some text", True),
    ("1. Name a color.\nInput: None", "Name a color.", "", False),
    ("Instruction: Reverse the word.\nInput: stressed\n", "Reverse the word.", "stressed", False),  # a chat reply
    (" Add the numbers.\nInput: 2, 3\nInstruction: Another task\nInput: x", "Add the numbers.", "2, 3", True),
])
def test_parse_well_formed_tasks(text, instruction, task_input, closed):
    task = parse_task(text, inline=False, finished=True)
    assert not isinstance(task, str), task
    assert (task.instruction, task.input, task.output, task.complete) == (instruction, task_input, None, True)
    # Cut at the token limit: complete only when a marker (###, Output:, the next task) closed the task.
    assert parse_task(text, inline=False, finished=False).complete is closed


def test_parse_inline_output_and_malformed_generations():
    task = parse_task(" Add the numbers.\nInput: 2, 3\nOutput: 5\n###", inline=True)
    assert (task.instruction, task.input, task.output) == ("Add the numbers.", "2, 3", "5")
    assert isinstance(parse_task("", inline=False), str)
    assert "no instruction" in parse_task("Input: only an input\n###", inline=False)
    assert "no Output" in parse_task(" Add the numbers.\nInput: 2, 3\n###", inline=True)
    cut = parse_task(" Write an essay about the history of", inline=False, finished=False)
    assert not cut.complete  # hit the token limit inside the task: rejected as truncated


# -- filters ---------------------------------------------------------------------------------------------

LONG = " ".join(["word"] * 160)
FILTER_CASES = [
    ("unparseable", "", None, {}),
    ("truncated", Completion(" Write an essay about the history of", finished=False), None, {}),
    ("instruction_too_short", " Hi there.\n###", None, {}),
    ("instruction_too_long", f" {LONG}.\n###", None, {}),
    ("blocklist", " Draw a picture of your house in the morning light.\n###", None, {}),
    ("blocklist", " Explain how a steam engine works to a child.\n###", None, {"blocklist": ["steam engine"]}),
    ("garbage", " 12 34 56 78 90 11 22 33 ??\n###", None, {}),
    ("language", " Schreibe eine kurze Geschichte über einen Hund, der im Park spielt.\n###", None,
     {"languages": ["en"]}),
    ("duplicate", " Translate the sentence into French.\nInput: Good morning.\n###", None, {}),
    ("similar_to_existing", " Give three tips for staying very healthy.\n###", None, {}),
    ("empty_output", GOOD_TASK, "", {}),
    ("truncated", GOOD_TASK, Completion("The Daily Loaf is a name that", finished=False), {}),
    ("output_too_short", GOOD_TASK, "Loaf.", {"min_output_words": 3}),
    ("output_too_long", GOOD_TASK, LONG, {"max_output_words": 50}),
    ("output_repeats_instruction", GOOD_TASK, "Suggest a name for a bakery that sells only bread.", {}),
    ("repetitive_output", GOOD_TASK, "The bread is good. " * 12, {}),
]


@pytest.mark.parametrize("reason, task, output, filters", FILTER_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(FILTER_CASES)])
def test_each_filter_rejects_with_its_reason(tmp_path, reason, task, output, filters):
    gen = Scripted([task], [output] if output is not None else [])
    cfg = config(**filters)
    cfg.max_candidates = 1
    result = synthesize(SEEDS, gen, n=1, config=cfg, out=tmp_path)
    assert result.accepted == [] and (tmp_path / "synthetic.jsonl").read_text() == ""
    [row] = rows(tmp_path / "rejected.jsonl")
    assert row["reason"] == reason and row["reason"] in REASONS
    assert row["stage"] == ("output" if output is not None else "task")
    assert row["raw"] == (task.text if isinstance(task, Completion) else task)  # nothing lost
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["rejected_by_reason"] == {reason: 1} and report["candidates"] == 1
    assert gen.chat_prompts == ([] if output is None else ["Suggest a name for a bakery that sells only bread."])


def test_a_good_candidate_is_accepted_with_meta(tmp_path):
    result = synthesize(SEEDS, Scripted([GOOD_TASK], [GOOD_OUTPUT]), n=1, config=config(), out=tmp_path)
    [row] = result.accepted
    assert (row["instruction"], row["input"], row["output"]) == (
        "Suggest a name for a bakery that sells only bread.", "", GOOD_OUTPUT)
    assert row["meta"]["generator"] == "scripted" and set(row["meta"]["seed_ids"]) == {"s1", "s2", "s3"}
    assert 0 <= row["meta"]["rouge_l_to_seeds"] < 0.7
    assert result.report["acceptance_rate"] == 1.0 and result.report["accepted"] == 1


def test_rouge_l_rejects_near_copies_of_seeds_and_of_accepted_tasks(tmp_path, shared_data):
    seeds = shared_data.parent / "self_instruct" / "seed_tasks.jsonl"
    first = load_seeds(seeds, max_seeds=5)[1]  # "What is the relation between the given pairs?"
    tasks = [f" {first.instruction.rstrip('?')} of words?\nInput: Up : Down\n###",  # near copy of a seed
             GOOD_TASK,
             " Suggest a name for a bakery that sells bread only.\n###",  # near copy of the task accepted above
             " List four board games that two people can play.\n###"]
    gen = Scripted(tasks, [GOOD_OUTPUT, "Chess, checkers, Go and backgammon."])
    cfg = config()
    cfg.generator.batch_size = 1  # one candidate per round: the near copy meets an already accepted task
    result = synthesize(seeds, gen, n=2, config=cfg, out=tmp_path, seed=3)
    reasons = [(r["reason"], r["detail"]) for r in result.rejected]
    assert [r for r, _ in reasons] == ["similar_to_existing", "similar_to_existing"]
    assert first.id in reasons[0][1] and "synth-00000" in reasons[1][1]
    assert [r["instruction"] for r in result.accepted] == [
        "Suggest a name for a bakery that sells only bread.", "List four board games that two people can play."]
    off = config(rouge_threshold=None)
    off.max_candidates = 1
    kept = synthesize(seeds, Scripted(tasks[:1], [GOOD_OUTPUT]), n=1, config=off)
    assert len(kept.accepted) == 1  # the same near copy passes with the filter off


def test_same_round_candidates_are_checked_against_each_other(tmp_path):
    twin = " Suggest a good name for a bakery that sells only bread.\n###"
    gen = Scripted([GOOD_TASK, twin], [GOOD_OUTPUT, GOOD_OUTPUT])
    cfg = config()
    cfg.max_candidates = 2
    result = synthesize(SEEDS, gen, n=2, config=cfg)
    assert len(result.accepted) == 1
    assert [r["reason"] for r in result.rejected] == ["similar_to_existing"]


# -- output files ------------------------------------------------------------------------------------------

def test_output_round_trips_through_the_alpaca_reader_and_a_recipe(tmp_path):
    task = " Rewrite the sentence in the passive voice.\nInput: The dog chased the ball.\n###"
    synthesize(SEEDS, Scripted([GOOD_TASK, task], [GOOD_OUTPUT, "The ball was chased by the dog."]), n=2,
               config=config(), out=tmp_path)
    read = read_source(tmp_path / "synthetic.jsonl")
    assert read.format == "alpaca" and read.rejected == [] and len(read.records) == 2
    conv = read.records[1]
    assert isinstance(conv, Conversation)
    assert [t.content for t in conv.turns] == [
        "Rewrite the sentence in the passive voice.\nThe dog chased the ball.", "The ball was chased by the dog."]
    assert conv.meta["generator"] == "scripted" and conv.meta["id"] == "synth-00001"
    from tuneforge.config import DataConfig

    records = collect_records(DataConfig(sources=[{"path": str(tmp_path / "synthetic.jsonl")}]), min_examples=2)
    assert len(records) == 2


VOCAB = ("river apple engine violin winter garden rocket pepper castle silver ocean candle forest ladder "
         "marble tiger pillow thunder basket comet lemon harbor feather cactus wizard meadow kettle "
         "glacier parrot lantern saddle volcano pebble trumpet orchard blanket falcon mirror tunnel").split()


def prompt_hash_generator(prompts):
    """A deterministic fake whose tasks depend on the prompt (i.e. on which examples were sampled)."""
    out = []
    for p in prompts:
        if p.rstrip().endswith("Instruction:"):
            digest = hashlib.sha1(p.encode()).digest()
            words = " ".join(VOCAB[b % len(VOCAB)] for b in digest[:8])
            out.append(f" Write about {words}.\n###")
        else:
            out.append(f"Here is a short text about the {p.split()[2]} and everything else asked for.")
    return out


def test_determinism_with_a_seed():
    a = synthesize(SEEDS, prompt_hash_generator, n=6, config=config(), seed=7)
    b = synthesize(SEEDS, prompt_hash_generator, n=6, config=config(), seed=7)
    c = synthesize(SEEDS, prompt_hash_generator, n=6, config=config(), seed=8)
    assert len(a.accepted) == 6 and a.accepted == b.accepted and a.rejected == b.rejected
    assert [r["meta"]["seed_ids"] for r in a.accepted] != [r["meta"]["seed_ids"] for r in c.accepted]


def test_local_generator_is_deterministic(tiny_model_dir, one_torch_thread):
    from tuneforge.data.synthesize import LocalGenerator

    gen = LocalGenerator.load(str(tiny_model_dir), top_p=0.95, batch_size=2, threads=1)
    cfg = config()
    cfg.max_candidates, cfg.prompt.max_task_tokens, cfg.prompt.max_output_tokens = 2, 12, 8
    runs = [synthesize(SEEDS, gen, n=2, config=cfg, seed=5) for _ in range(2)]
    assert runs[0].accepted + runs[0].rejected == runs[1].accepted + runs[1].rejected
    assert runs[0].report["candidates"] == 2 and runs[0].report["generated_tokens"] > 0


def test_resume_keeps_going_to_n(tmp_path):
    synthesize(SEEDS, prompt_hash_generator, n=3, config=config(), out=tmp_path, seed=1)
    first = rows(tmp_path / "synthetic.jsonl")
    with pytest.raises(ConfigError, match="already holds"):
        synthesize(SEEDS, prompt_hash_generator, n=5, config=config(), out=tmp_path, seed=1)
    cfg = config()
    cfg.if_exists = "resume"
    result = synthesize(SEEDS, prompt_hash_generator, n=5, config=cfg, out=tmp_path, seed=1)
    after = rows(tmp_path / "synthetic.jsonl")
    assert len(after) == 5 and after[:3] == first and result.report["accepted"] == 5
    assert len({r["meta"]["id"] for r in after}) == 5
    assert result.report["candidates"] == 5 + len(result.rejected)


def test_resume_after_a_kill_before_the_report_does_not_replay_a_round(tmp_path):
    synthesize(SEEDS, prompt_hash_generator, n=3, config=config(), out=tmp_path, seed=1)
    first = rows(tmp_path / "synthetic.jsonl")
    report = json.loads((tmp_path / "report.json").read_text())
    (tmp_path / "report.json").write_text(json.dumps({**report, "rounds": 0}))  # the report lagged behind
    cfg = config()
    cfg.if_exists = "resume"
    synthesize(SEEDS, prompt_hash_generator, n=5, config=cfg, out=tmp_path, seed=1)
    new = rows(tmp_path / "synthetic.jsonl")[3:]
    assert new and min(r["meta"]["round"] for r in new) > max(r["meta"]["round"] for r in first)


def test_out_that_is_a_file_is_refused_without_touching_it(tmp_path, capsys):
    out = tmp_path / "synthetic.jsonl"
    out.write_text("keep me\n")
    with pytest.raises(ConfigError, match="is a file; expected a folder"):
        synthesize(SEEDS, prompt_hash_generator, n=1, config=config(), out=out, seed=1)
    seeds = tmp_path / "seeds.json"
    seeds.write_text(json.dumps(SEEDS))
    rc = main(["data", "synthesize", "--seeds", str(seeds), "--out", str(out), "--base-url", "http://127.0.0.1:9/v1",
               "--model", "m"])
    err = capsys.readouterr().err
    assert rc == 2 and f"--out {out}" in err and "Traceback" not in err
    assert out.read_text() == "keep me\n"


@pytest.mark.parametrize("url, message", [
    ("127.0.0.1:8000/v1", "--base-url: Value error, expected an http:// or https:// URL"),
    ("http://127.0.0.1:9/v1", "endpoint http://127.0.0.1:9/v1: cannot connect; expected an OpenAI-compatible server"),
])
def test_a_bad_or_unreachable_base_url_is_one_clear_line(tmp_path, capsys, url, message):
    pytest.importorskip("openai")
    seeds = tmp_path / "seeds.json"
    seeds.write_text(json.dumps(SEEDS))
    rc = main(["data", "synthesize", "--seeds", str(seeds), "--out", str(tmp_path / "out"), "--base-url", url,
               "--model", "m", "--n", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err


# -- seeds -----------------------------------------------------------------------------------------------

def test_self_instruct_and_reader_formats_load_as_seeds(tmp_path, shared_data):
    seeds = load_seeds(shared_data.parent / "self_instruct" / "seed_tasks.jsonl")
    assert len(seeds) == 175 and seeds[0].id == "seed_task_0" and seeds[1].input == "Night : Day :: Right : Left"
    alpaca = load_seeds(shared_data / "alpaca_en_demo.json", max_seeds=10)
    assert len(alpaca) == 10 and all(s.instruction and s.output for s in alpaca)
    sharegpt = tmp_path / "chat.jsonl"
    sharegpt.write_text(json.dumps({"conversations": [{"from": "human", "value": "Say hi."},
                                                      {"from": "gpt", "value": "Hi!"}]}) + "\n")
    [seed] = load_seeds(sharegpt)
    assert (seed.instruction, seed.output) == ("Say hi.", "Hi!")


@pytest.mark.parametrize("lines, needle", [
    (['{"id": "a", "instruction": "Do X.", "instances": [{"input": "", "output": "ok"}]}',
      '{"id": "b", "instruction": "Do Y.", "instances": []}'], ":2: instances: expected at least one"),
    (['{"id": "a", "instruction": "Do X.", "instances": [{"input": "", "output": "ok"}]}',
      '{"id": "b", "instruction": "Do Y.", "instances": [{"input": ""}]}'], ":2: instances[0].output: expected a string"),
    (['{"id": "a", "instruction": "Do X.", "instances": [{"input": "", "output": "ok"}]}',
      '{"id": "b", "instruction": "Do Y.", "instances": [{"input": "", "output": "ok"}]'],
     ":2: (row): expected more JSON"),
    (['{"instruction": "Do X.", "output": ""}'], ":1: output: expected non-empty text"),
    (['{"text": "just text"}'], "seeds must be instruction/answer examples"),
])
def test_bad_seed_files_fail_with_file_and_line(tmp_path, capsys, lines, needle):
    path = tmp_path / "seeds.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as info:
        load_seeds(path)
    assert needle in str(info.value) and str(path) in str(info.value)
    rc = main(["data", "synthesize", "--seeds", str(path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and "Traceback" not in err


# -- CLI, real model, endpoint ---------------------------------------------------------------------------

def test_cli_with_a_local_model_and_a_recipe(tmp_path, tiny_model_dir, capsys, one_torch_thread):
    seeds = tmp_path / "seeds.json"
    seeds.write_text(json.dumps(SEEDS))
    recipe = tmp_path / "synth.yaml"
    recipe.write_text("name: synth\nsynthesize:\n  seeds: seeds.json\n  prompt: {max_task_tokens: 10, "
                      "max_output_tokens: 8, num_examples: 2, header: 'Tasks:'}\n")
    out = tmp_path / "out"
    args = ["data", "synthesize", str(recipe), "--model", str(tiny_model_dir), "--out", str(out), "--n", "2",
            "--max-candidates", "3", "--threads", "1", "--block", "banana", "filter.rouge_threshold=0.8"]
    assert main(args) == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["candidates"] == 3 and report["config"]["filter"]["rouge_threshold"] == 0.8
    assert "banana" in report["config"]["filter"]["blocklist"] and report["generator"] == tiny_model_dir.name
    assert len(rows(out / "rejected.jsonl")) + len(rows(out / "synthetic.jsonl")) == 3
    assert "accepted of 3 candidates" in capsys.readouterr().out
    assert main(args) == 2 and "--resume" in capsys.readouterr().err  # the folder is not silently replaced
    assert main([*args, "--resume", "--max-candidates", "4"]) == 0
    assert json.loads((out / "report.json").read_text())["candidates"] == 4


@pytest.mark.real
def test_real_smollm2_produces_well_formed_rows(tmp_path, shared_data, one_torch_thread):
    from tuneforge.data.synthesize import LocalGenerator

    gen = LocalGenerator.load("smollm2-135m-instruct", top_p=0.95, batch_size=4, threads=1)
    cfg = SynthesizeConfig(max_seeds=20, max_candidates=4)
    cfg.prompt.num_examples, cfg.prompt.max_task_tokens, cfg.prompt.max_output_tokens = 3, 40, 32
    cfg.filter.drop_truncated = False  # 48 tokens cut most answers; this test is about well-formed rows
    result = synthesize(shared_data.parent / "self_instruct" / "seed_tasks.jsonl", gen, n=4, config=cfg,
                        out=tmp_path)
    assert result.report["candidates"] == 4 and result.report["generated_tokens"] > 0
    assert len(rows(tmp_path / "synthetic.jsonl")) + len(rows(tmp_path / "rejected.jsonl")) == 4
    for row in result.accepted:
        assert row["instruction"].strip() and row["output"].strip() and "###" not in row["instruction"]
        assert row["meta"]["rouge_l_to_seeds"] < 0.7
    for row in result.rejected:
        assert row["reason"] in REASONS and row["raw"] is not None
    assert len(read_source(tmp_path / "synthetic.jsonl").records) == len(result.accepted)


def test_endpoint_generator_against_the_serve_app(tmp_path, tiny_model_dir):
    from tuneforge.data.synthesize import EndpointGenerator
    from tuneforge.errors import ModelError
    from tuneforge.serve.launch import BackgroundServer, build_app

    app = build_app(str(tiny_model_dir), db=None, max_batch=4, max_tokens_cap=32, threads=1)
    with BackgroundServer(app) as url:
        gen = EndpointGenerator(url + "/v1", tiny_model_dir.name, concurrency=4)
        cfg = config()
        cfg.max_candidates, cfg.prompt.max_task_tokens, cfg.prompt.max_output_tokens = 4, 12, 8
        result = synthesize(SEEDS, gen, n=4, config=cfg, out=tmp_path)
        assert result.report["candidates"] == 4 and result.report["generated_tokens"] > 0
        assert result.report["generator"] == f"{tiny_model_dir.name} @ {url}/v1"
        with pytest.raises(ModelError, match="endpoint"):
            EndpointGenerator(url + "/v1", "no-such-model").complete(["x"], max_new_tokens=2, temperature=0)


def test_example_recipe_parses_with_its_synthesize_section():
    from pathlib import Path

    from tuneforge.config.recipe import load_recipe

    recipe = load_recipe(Path(__file__).parents[1] / "examples" / "synthesize.yaml", ["synthesize.n=7"])
    assert recipe.synthesize.n == 7 and recipe.synthesize.max_seeds == 20
    assert recipe.synthesize.prompt.output_mode == "chat" and recipe.synthesize.filter.rouge_threshold == 0.7
    assert recipe.data.sources[0].path.endswith("selfinstruct-synth/synthetic.jsonl")


def test_recipe_seed_paths_are_relative_to_the_recipe_file(tmp_path):
    from tuneforge.config.recipe import load_recipe

    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "seeds.jsonl").write_text("{}\n")
    (tmp_path / "recipes" / "r.yaml").write_text("synthesize: {seeds: seeds.jsonl}\n")
    recipe = load_recipe(tmp_path / "recipes" / "r.yaml")
    assert recipe.synthesize.seeds == str(tmp_path / "recipes" / "seeds.jsonl")


def test_local_generator_loads_a_run_by_its_folder_or_final(tmp_path, tiny_model_dir, one_torch_thread):
    from test_train_common import make_recipe

    from tuneforge.data.synthesize import LocalGenerator
    from tuneforge.train import train

    result = train(make_recipe(tmp_path, tiny_model_dir, "hparams.epochs=1"), quiet=True)
    for spec in (result.run_dir, result.run_dir / "final"):
        assert LocalGenerator.load(str(spec), threads=1).name == f"run:{result.run_dir.name}"
