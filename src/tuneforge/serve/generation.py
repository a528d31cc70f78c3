"""`POST /v1/chat/completions` and `POST /v1/completions`, plain and streaming (SSE)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from jinja2 import TemplateError

from tuneforge.data.records import Conversation, Turn
from tuneforge.serve.engine import Engine, Job, RowResult
from tuneforge.serve.schemas import ChatCompletionRequest, CompletionRequest, error_body


def encode_chat(messages: list[dict[str, str]], tokenizer: Any) -> list[int]:
    """Prompt ids through the same renderer training uses, so served prompts match trained ones."""
    from tuneforge.data.render import render_prompt

    system = "\n".join(m["content"] for m in messages if m["role"] == "system") or None
    turns = [Turn(role=m["role"], content=m["content"]) for m in messages if m["role"] != "system"]
    if getattr(tokenizer, "chat_template", None):
        return render_prompt(Conversation(turns=turns, system=system), tokenizer)
    # A base model without a template: a plain transcript, ending where the answer starts.
    text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def register_generation_routes(app: FastAPI, APIError: type) -> None:
    engine: Engine = app.state.engine

    def build_job(body: Any, prompt_ids: list[int]) -> Job:
        adapter = engine.adapter_for(body.model)
        if adapter is False:
            raise APIError(404, f"model {body.model!r} is not served here; see GET /v1/models",
                           "not_found_error", "model", "model_not_found")
        if len(prompt_ids) > engine.max_prompt_tokens:
            raise APIError(400, f"prompt is {len(prompt_ids)} tokens; the limit is {engine.max_prompt_tokens}",
                           param="messages", code="context_length_exceeded")
        room = engine.context_len - len(prompt_ids)
        max_tokens = body.requested_max_tokens()
        if max_tokens is None:
            max_tokens = min(app.state.settings.default_max_tokens, engine.max_tokens_cap, room)
        elif max_tokens > engine.max_tokens_cap:
            raise APIError(400, f"max_tokens {max_tokens} is over this server's limit {engine.max_tokens_cap}",
                           param="max_tokens", code="invalid_value")
        if max_tokens > room or room <= 0:
            raise APIError(400, f"prompt ({len(prompt_ids)} tokens) + max_tokens ({max_tokens}) exceeds the "
                                f"context length {engine.context_len}", param="max_tokens",
                           code="context_length_exceeded")
        return Job(prompt_ids=prompt_ids, max_tokens=max_tokens, adapter=adapter, n=body.n,
                   temperature=body.temperature, top_p=body.top_p, seed=body.seed, stop=body.stop_list())

    async def log(cid: str, body: Any, kind: str, messages: list, job: Job, results: list[RowResult]) -> None:
        store = app.state.store
        if store is None:
            return
        params = {"temperature": body.temperature, "top_p": body.top_p, "max_tokens": job.max_tokens,
                  "n": body.n, "seed": body.seed, "stop": body.stop_list()}
        await asyncio.wrap_future(store.log_completion(
            id=cid, model=body.model, adapter=job.adapter, kind=kind, messages=messages,
            outputs=[r.text for r in results], params=params, prompt_tokens=len(job.prompt_ids),
            completion_tokens=sum(r.tokens for r in results)))

    def usage(job: Job, results: list[RowResult]) -> dict[str, int]:
        done = sum(r.tokens for r in results)
        return {"prompt_tokens": len(job.prompt_ids), "completion_tokens": done,
                "total_tokens": len(job.prompt_ids) + done}

    async def serve(request: Request, body: Any, kind: str, messages: list, prompt_ids: list[int]):
        job = build_job(body, prompt_ids)
        cid = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"
        created = int(time.time())
        if body.stream:
            return _stream(request, engine, job, body, kind, cid, created, log, messages, usage)
        results = await engine.submit(job)
        await log(cid, body, kind, messages, job, results)
        if kind == "chat":
            choices = [{"index": i, "message": {"role": "assistant", "content": r.text},
                        "finish_reason": r.finish_reason, "logprobs": None} for i, r in enumerate(results)]
            obj = "chat.completion"
        else:
            choices = [{"index": i, "text": r.text, "finish_reason": r.finish_reason, "logprobs": None}
                       for i, r in enumerate(results)]
            obj = "text_completion"
        return {"id": cid, "object": obj, "created": created, "model": body.model, "choices": choices,
                "usage": usage(job, results)}

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        messages = body.plain_messages()
        if messages[-1]["role"] == "assistant":
            raise APIError(400, "the last message must not be an assistant message", param="messages")
        try:
            prompt_ids = await asyncio.to_thread(encode_chat, messages, engine.tokenizer)
        except (ValueError, TypeError, TemplateError) as exc:  # e.g. a template that insists on alternating roles
            raise APIError(400, f"the model's chat template rejected these messages: {exc}", param="messages")
        return await serve(request, body, "chat", messages, prompt_ids)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        prompt_ids = list(engine.tokenizer(body.prompt, add_special_tokens=True)["input_ids"])
        if not prompt_ids:
            raise APIError(400, "prompt is empty", param="prompt")
        messages = [{"role": "user", "content": body.prompt}]
        return await serve(request, body, "text", messages, prompt_ids)


def _sse(payload: Any) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def _stream(request: Request, engine: Engine, job: Job, body: Any, kind: str, cid: str, created: int,
            log: Any, messages: list, usage: Any) -> StreamingResponse:
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()
    job.on_event = lambda ev: loop.call_soon_threadsafe(events.put_nowait, ev)
    future = engine.enqueue(job)  # raises QueueFull now, so a 429 is a real status, not a stream error
    future.add_done_callback(lambda _: events.put_nowait(("end",)))
    obj = "chat.completion.chunk" if kind == "chat" else "text_completion"

    def chunk(index: int, text: str | None, finish: str | None, first: bool = False) -> dict:
        if kind == "chat":
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if first else {}
            if text is not None:
                delta["content"] = text
            choice = {"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}
        else:
            choice = {"index": index, "text": text or "", "finish_reason": finish, "logprobs": None}
        return {"id": cid, "object": obj, "created": created, "model": body.model, "choices": [choice]}

    async def produce() -> AsyncIterator[str]:
        try:
            if kind == "chat":
                for i in range(job.n):
                    yield _sse(chunk(i, None, None, first=True))
            while (event := await events.get())[0] != "end":
                _, index, text = event
                yield _sse(chunk(index, text, None))
            if future.cancelled():
                return
            if future.exception() is not None:
                yield _sse(error_body(f"generation failed: {type(future.exception()).__name__}", "server_error"))
                yield "data: [DONE]\n\n"
                return
            results = future.result()
            for i, r in enumerate(results):
                yield _sse(chunk(i, None if kind == "chat" else "", r.finish_reason))
            await log(cid, body, kind, messages, job, results)
            if body.stream_options and body.stream_options.include_usage:
                yield _sse({"id": cid, "object": obj, "created": created, "model": body.model, "choices": [],
                            "usage": usage(job, results)})
            yield "data: [DONE]\n\n"
        finally:
            job.cancelled = not future.done()  # client disconnected mid-stream: stop its rows

    return StreamingResponse(produce(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
