"""Request bodies of the OpenAI-compatible API and the OpenAI-style error body.

Models are strict about types but accept (and ignore) the many optional OpenAI fields we do not
implement, so the official client's defaults never cause a 400.
"""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ChatMessage(_Body):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: Union[str, list[dict[str, Any]], None] = None

    def text(self) -> str:
        # OpenAI content parts: keep only text parts.
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p["text"] for p in self.content if p.get("type") == "text" and isinstance(p.get("text"), str))


class StreamOptions(_Body):
    include_usage: bool = False


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
TOKENS_MAX = 2**31 - 1  # any real limit is lower (max_tokens_cap); this keeps the number a machine int


class _Sampling(_Body):
    # Every number is bounded here, so nothing out of range (2**80, nan) reaches torch in the worker.
    model: str
    temperature: float = Field(1.0, ge=0, le=2, allow_inf_nan=False)
    top_p: float = Field(1.0, gt=0, le=1, allow_inf_nan=False)
    max_tokens: int | None = Field(None, ge=1, le=TOKENS_MAX)
    max_completion_tokens: int | None = Field(None, ge=1, le=TOKENS_MAX)
    stop: Union[str, list[str], None] = None
    seed: int | None = Field(None, ge=INT64_MIN, le=INT64_MAX, description="any 64-bit signed integer")
    n: int = Field(1, ge=1, le=8)
    stream: bool = False
    stream_options: StreamOptions | None = None

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: Any) -> list[str]:
        if value is None:
            return []
        stops = [value] if isinstance(value, str) else list(value)
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("stop takes up to 4 non-empty strings")
        return stops

    def stop_list(self) -> list[str]:
        return list(self.stop or [])

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)

    def plain_messages(self) -> list[dict[str, str]]:
        return [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in self.messages]


class CompletionRequest(_Sampling):
    prompt: Union[str, list[str]]

    @field_validator("prompt")
    @classmethod
    def _single_prompt(cls, value: Any) -> str:
        if isinstance(value, list):
            if len(value) != 1:
                raise ValueError("one prompt per request (send several requests; they are batched)")
            value = value[0]
        return value


class FeedbackRequest(_Body):
    """A user's judgement of one logged completion."""

    model_config = ConfigDict(extra="forbid")
    response_id: str = Field(min_length=1, max_length=128)
    rating: Literal[1, -1] | None = None
    correction: str | None = Field(None, max_length=100_000, description="the answer it should have given")
    choice: int | None = Field(None, ge=0, le=TOKENS_MAX, description="index of the preferred choice when n > 1")
    comment: str | None = Field(None, max_length=10_000)


class AdapterLoadRequest(_Body):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    path: str = Field(min_length=1)


def error_body(message: str, type_: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
