"""Who writes the candidates. Anything with `complete` and `chat` (prompts -> completions) will do:

- `LocalGenerator`: a local model (alias, HF folder, .gguf or run folder), batched through
  `tuneforge.evaluate.generate.generate_from_ids`;
- `EndpointGenerator`: an OpenAI-compatible server (vLLM, llama.cpp, Ollama, OpenAI, `tuneforge serve`);
- any plain callable `list[str] -> list[str]` (wrapped by `as_generator`), e.g. a scripted fake in tests.
"""

from __future__ import annotations

import concurrent.futures
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from tuneforge.config.synthesize import SynthGeneratorConfig
from tuneforge.errors import ConfigError, ModelError, UnsupportedHere


@dataclass
class Completion:
    text: str
    tokens: int | None = None  # generated tokens, when the generator knows
    finished: bool | None = None  # stopped by itself (True), cut at the token limit (False), unknown (None)


class Generator(Protocol):
    name: str

    def complete(self, prompts: Sequence[str], *, max_new_tokens: int, temperature: float,
                 stop: Sequence[str], seed: int) -> list[Any]: ...

    def chat(self, prompts: Sequence[str], *, max_new_tokens: int, temperature: float, seed: int) -> list[Any]: ...


def as_completion(item: Any) -> Completion:
    if isinstance(item, Completion):
        return item
    if isinstance(item, str):
        return Completion(item)
    if hasattr(item, "text"):  # evaluate.generate.Generated and look-alikes
        return Completion(item.text, getattr(item, "tokens", None), getattr(item, "finished", None))
    raise TypeError(f"a generator returned {type(item).__name__}; expected str or Completion")


class CallableGenerator:
    """A function `prompts -> completions` used for both calls (task prompt and output prompt)."""

    def __init__(self, fn: Callable[[list[str]], Sequence[Any]], name: str | None = None) -> None:
        self.fn = fn
        self.name = name or getattr(fn, "__name__", type(fn).__name__)

    def complete(self, prompts: Sequence[str], **_: Any) -> list[Any]:
        return self._call(prompts)

    def chat(self, prompts: Sequence[str], **_: Any) -> list[Any]:
        return self._call(prompts)

    def _call(self, prompts: Sequence[str]) -> list[Any]:
        out = list(self.fn(list(prompts)))
        if len(out) != len(prompts):
            raise ValueError(f"generator {self.name} returned {len(out)} completions for {len(prompts)} prompts")
        return out


def as_generator(generator: Any) -> Generator:
    if hasattr(generator, "complete") and hasattr(generator, "chat"):
        return generator
    if callable(generator):
        return CallableGenerator(generator)
    raise TypeError(f"expected a generator (complete/chat) or a callable, got {type(generator).__name__}")


class LocalGenerator:
    """A local causal LM; one `generate` call per `batch_size` prompts (left padded, sorted by length)."""

    def __init__(self, model: Any, tokenizer: Any, name: str, *, top_p: float = 1.0, batch_size: int = 8) -> None:
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.top_p, self.batch_size = top_p, batch_size

    @classmethod
    def load(cls, spec: str, *, top_p: float = 1.0, batch_size: int = 8, threads: int | None = None) -> "LocalGenerator":
        """`spec`: a tuneforge run (folder, final/, checkpoint or name; base + adapter, the run's tokenizer)
        or an alias, HF folder or .gguf file (load_model)."""
        from tuneforge.errors import ModelError
        from tuneforge.train.runs import load_run_model, resolve_run
        from tuneforge.train.threads import configure_threads

        configure_threads(threads)
        path = Path(spec).expanduser()
        try:
            run = resolve_run(path)
        except ModelError:
            run = None
        if run is not None:
            model, tokenizer = load_run_model(run)
            name = f"run:{run.name}"
        else:
            from tuneforge.models import load_model

            model, tokenizer = load_model(spec, head="causal_lm")
            name = path.name if path.exists() else spec
        model.eval()
        return cls(model, tokenizer, name, top_p=top_p, batch_size=batch_size)

    def complete(self, prompts: Sequence[str], *, max_new_tokens: int, temperature: float,
                 stop: Sequence[str] = (), seed: int = 0) -> list[Completion]:
        ids = [list(self.tokenizer(p, add_special_tokens=True)["input_ids"]) for p in prompts]
        return self._generate(ids, max_new_tokens, temperature, seed, stop)

    def chat(self, prompts: Sequence[str], *, max_new_tokens: int, temperature: float, seed: int = 0) -> list[Completion]:
        from tuneforge.data.records import Conversation, Turn
        from tuneforge.data.render import render_prompt

        if not getattr(self.tokenizer, "chat_template", None):
            raise ConfigError(f"{self.name}: the tokenizer has no chat template, so outputs cannot be generated "
                              "as chat turns; set synthesize.prompt.output_mode=inline")
        ids = [render_prompt(Conversation(turns=[Turn("user", p)]), self.tokenizer) for p in prompts]
        return self._generate(ids, max_new_tokens, temperature, seed, ())

    def _generate(self, ids: list[list[int]], max_new_tokens: int, temperature: float, seed: int,
                  stop: Sequence[str]) -> list[Completion]:
        from tuneforge.evaluate.generate import GenerationSettings, generate_from_ids

        settings = GenerationSettings(max_new_tokens, temperature, self.top_p, self.batch_size, seed)
        done = generate_from_ids(self.model, self.tokenizer, ids, settings, stop_strings=stop)
        return [Completion(g.text, g.tokens, g.finished) for g in done]


class EndpointGenerator:
    """An OpenAI-compatible server through the `openai` client; `concurrency` requests in flight, so a
    batching server (vLLM, `tuneforge serve`) batches them."""

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, top_p: float = 1.0,
                 concurrency: int = 8, timeout_s: float = 120.0, client: Any = None) -> None:
        self.base_url, self.model, self.top_p, self.concurrency = base_url, model, top_p, concurrency
        self.name = f"{model} @ {base_url}"
        if client is None:
            try:
                from openai import OpenAI
            except ImportError:
                raise UnsupportedHere("an endpoint generator needs the openai client: "
                                      "pip install 'tuneforge[synthesize]'") from None
            client = OpenAI(base_url=base_url, api_key=api_key or "not-needed", timeout=timeout_s, max_retries=1)
        self.client = client

    def complete(self, prompts: Sequence[str], *, max_new_tokens: int, temperature: float,
                 stop: Sequence[str] = (), seed: int = 0) -> list[Completion]:
        def one(i: int) -> Completion:
            reply = self.client.completions.create(
                model=self.model, prompt=prompts[i], max_tokens=max_new_tokens, temperature=temperature,
                top_p=self.top_p, stop=list(stop)[:4] or None, seed=seed + i)
            return _reply(reply.choices[0].text or "", reply)

        return self._map(one, len(prompts))

    def chat(self, prompts: Sequence[str], *, max_new_tokens: int, temperature: float, seed: int = 0) -> list[Completion]:
        def one(i: int) -> Completion:
            reply = self.client.chat.completions.create(
                model=self.model, messages=[{"role": "user", "content": prompts[i]}], max_tokens=max_new_tokens,
                temperature=temperature, top_p=self.top_p, seed=seed + i)
            return _reply(reply.choices[0].message.content or "", reply)

        return self._map(one, len(prompts))

    def _map(self, one: Callable[[int], Completion], count: int) -> list[Completion]:
        import openai

        try:
            with concurrent.futures.ThreadPoolExecutor(max(1, min(self.concurrency, count))) as pool:
                return list(pool.map(one, range(count)))
        except openai.APIError as exc:  # unreachable, wrong model name, auth: the user's settings
            if isinstance(exc, openai.APIConnectionError) and not isinstance(exc, openai.APITimeoutError):
                raise ModelError(f"endpoint {self.base_url}: cannot connect; expected an OpenAI-compatible server "
                                 "there (is it running, and is --base-url right, with its /v1?)") from None
            raise ModelError(f"endpoint {self.base_url}: {type(exc).__name__}: {exc}") from None


def _reply(text: str, reply: Any) -> Completion:
    usage = getattr(reply, "usage", None)
    finish = getattr(reply.choices[0], "finish_reason", None)
    return Completion(text.strip(), getattr(usage, "completion_tokens", None),
                      None if finish is None else finish != "length")


def build_generator(cfg: SynthGeneratorConfig) -> Generator:
    """The generator a `synthesize.generator` section describes."""
    if cfg.base_url:
        key = os.environ.get(cfg.api_key_env)
        return EndpointGenerator(cfg.base_url, cfg.model, api_key=key, top_p=cfg.top_p,
                                 concurrency=cfg.batch_size, timeout_s=cfg.timeout_s)
    return LocalGenerator.load(cfg.model, top_p=cfg.top_p, batch_size=cfg.batch_size, threads=cfg.threads)
