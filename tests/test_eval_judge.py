"""LLM-as-judge: prompt/parse logic, and the openai client against a fake OpenAI-compatible server on loopback."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tuneforge.evaluate.judge import (
    Judge,
    JudgeConfig,
    pairwise_prompt,
    parse_score,
    parse_winner,
    rubric_prompt,
    summarize,
)


def test_parse_score_and_winner():
    assert parse_score("Score: 10 - perfect") == 1.0
    assert parse_score("score = 1") == 0.0
    assert parse_score("Score: 5.5 because") == pytest.approx(0.5)
    assert parse_score("Score: 42") == 1.0  # clamped to the scale
    assert parse_score("I like it") is None
    assert parse_winner("Winner: B. It is more complete") == "B"
    assert parse_winner("winner: **a**") == "A"
    assert parse_winner("Winner: tie") == "tie"
    assert parse_winner("both are fine") is None


def test_prompts_carry_question_reference_and_answers():
    text = rubric_prompt("Q?", "REF", "PRED")
    assert "Q?" in text and "REF" in text and "PRED" in text and "Score:" in text
    text = pairwise_prompt("Q?", "REF", "AAA", "BBB")
    assert text.index("AAA") < text.index("BBB") and "Winner:" in text


def _answer(content: str) -> str:
    """A fake judge: right answers (equal to the reference) win / score 10."""
    ref = re.search(r"Reference answer:\n(.*?)\n\n", content, re.S).group(1)
    if "Answer A:" in content:
        a = re.search(r"Answer A:\n(.*?)\n\n", content, re.S).group(1)
        b = re.search(r"Answer B:\n(.*?)\n\n", content, re.S).group(1)
        if a == b:
            return "Winner: tie"
        return "Winner: A" if a == ref else "Winner: B"
    pred = re.search(r"Assistant's answer:\n(.*?)\n\n", content, re.S).group(1)
    return "Score: 10" if pred == ref else "Score: 1"


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        content = _answer(body["messages"][0]["content"])
        reply = {
            "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture()
def judge_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_rubric_and_pairwise_through_openai_client(judge_url):
    prompts, refs = ["q1", "q2", "q3", "q4"], ["a", "b", "c", "d"]
    preds = ["a", "wrong", "c", "wrong"]
    rubric = Judge(JudgeConfig(base_url=judge_url, model="fake"))
    assert rubric.rubric(prompts, refs, preds) == [1.0, 0.0, 1.0, 0.0]
    pairwise = Judge(JudgeConfig(base_url=judge_url, model="fake", mode="pairwise"))
    # Order is swapped on odd examples; the verdict must still be credited to the right side.
    assert pairwise.pairwise(prompts, refs, preds, ["x", "b", "x", "d"]) == [1.0, 0.0, 1.0, 0.0]
    assert pairwise.pairwise(prompts, refs, refs, refs) == [0.5] * 4
    assert summarize([1.0, None, 0.0]) == {"judge_score": 0.5, "judge_parsed": pytest.approx(2 / 3)}


def test_evaluate_model_with_judge(tiny_model, tiny_tokenizer, judge_url):
    from tuneforge.data.records import Conversation, Turn
    from tuneforge.evaluate.api import evaluate_model

    convs = [Conversation(turns=[Turn("user", "hi"), Turn("assistant", "hello there")])] * 2
    result = evaluate_model(
        tiny_model, tiny_tokenizer, convs, ["exact_match"], max_new_tokens=3,
        judge=JudgeConfig(base_url=judge_url, model="fake"),
    )
    assert result.metrics["judge_parsed"] == 1.0
    assert result.metrics["judge_score"] == 0.0  # an untrained model does not answer "hello there"
    assert all("judge" in row["scores"] for row in result.examples)


def test_unreachable_judge_is_a_user_error():
    import socket

    from tuneforge.errors import ModelError

    with socket.socket() as s:  # a loopback port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    judge = Judge(JudgeConfig(base_url=f"http://127.0.0.1:{port}/v1", model="fake", timeout=2))
    with pytest.raises(ModelError, match="judge endpoint"):
        judge.rubric(["q"], ["a"], ["a"])
