"""The messages between CareBot and its model process: one JSON object a line each way.

CareBot writes `Start` once, then `Generate` and `Cancel`; the child answers `Ready` (or
`Broken`) once, then a stream of `Token` and one `Done` or `Failed` per request. Lines, not
pickles: nothing the child sends can run code in CareBot, and a line cut off by a crash is
just an unreadable line.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter


class ChatTurn(BaseModel):
    """One message of the prompt, in the chat template's roles."""

    role: Literal["system", "user", "assistant"]
    content: str


class Start(BaseModel):
    """How the child loads its model; sent once, first."""

    type: Literal["start"] = "start"
    gguf: str
    cache_dir: str
    threads: int = Field(ge=1)
    context: int = Field(ge=64)
    precision: Literal["fp32", "int8"] = "fp32"


class Generate(BaseModel):
    """Write an answer to `messages`, token by token."""

    type: Literal["generate"] = "generate"
    id: int
    messages: list[ChatTurn]
    max_tokens: int = Field(ge=1)
    temperature: float = Field(ge=0.0)
    json_schema: dict[str, Any] | None = None


class Cancel(BaseModel):
    """Stop writing answer `id` (its reader went away)."""

    type: Literal["cancel"] = "cancel"
    id: int


class Ready(BaseModel):
    """The model is loaded and its self-test wrote tokens."""

    type: Literal["ready"] = "ready"
    precision: str
    cpu_capability: str
    load_s: float
    tokens_per_s: float


class Broken(BaseModel):
    """The model cannot be loaded (a configuration fault, not a crash); the child exits."""

    type: Literal["broken"] = "broken"
    reason: str


class Token(BaseModel):
    """The next piece of answer `id`'s text."""

    type: Literal["token"] = "token"
    id: int
    text: str


class Done(BaseModel):
    """Answer `id` is complete (or was cancelled)."""

    type: Literal["done"] = "done"
    id: int
    tokens: int


class Failed(BaseModel):
    """Answer `id` could not be written; `reason` names the kind of fault, never the prompt."""

    type: Literal["failed"] = "failed"
    id: int
    reason: str


ToChild = Annotated[Start | Generate | Cancel, Field(discriminator="type")]
FromChild = Annotated[Ready | Broken | Token | Done | Failed, Field(discriminator="type")]
TO_CHILD: TypeAdapter[Start | Generate | Cancel] = TypeAdapter(ToChild)
FROM_CHILD: TypeAdapter[Ready | Broken | Token | Done | Failed] = TypeAdapter(FromChild)
MAX_LINE = 8 * 1024 * 1024  # a prompt is bounded by the context window; this bounds a line


def encode(message: BaseModel) -> bytes:
    """Return `message` as one line."""
    return message.model_dump_json().encode("utf-8") + b"\n"
