"""The one chat interface every agent uses: messages in, text out, every call recorded.

    chat = Chat(backend, Recorder(db))         # backend: llama.cpp, OpenAI-compatible or replay
    answer = chat([Message("user", "Write ...")], seed=1, temperature=0.2, max_tokens=800)
    source = answer.code                       # the C++ of the answer's fenced block, or None

A backend turns a Request into a Generation; Chat adds what every backend shares: the
sampling defaults, the context-length guard (trim old turns or fail, never cut the task),
timing, and one `llm_calls` row per call through a Recorder.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Protocol, Sequence

from .models import Sampling

ROLES = ("system", "user", "assistant")


class LLMError(RuntimeError):
    """A backend failed to answer; the message says what was wrong and what to do."""


class ContextOverflow(LLMError):
    """The prompt plus the answer's token budget does not fit the model's context."""

    def __init__(self, message: str, prompt_tokens: int | None = None, max_tokens: int | None = None, context_length: int | None = None):
        super().__init__(message)
        self.prompt_tokens, self.max_tokens, self.context_length = prompt_tokens, max_tokens, context_length


@dataclass(frozen=True)
class Message:
    """One chat turn."""

    role: str  # system | user | assistant
    content: str

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"message role {self.role!r} is not one of {ROLES}")

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}

    @staticmethod
    def from_dict(value: dict[str, Any]) -> "Message":
        return Message(value["role"], value["content"])


@dataclass(frozen=True)
class Request:
    """What a backend is asked: the messages (already fitted to the context) and the sampling."""

    messages: tuple[Message, ...]
    seed: int
    temperature: float
    max_tokens: int
    stop: tuple[str, ...] = ()
    # A JSON schema the answer must follow (llama.cpp turns it into a grammar); backends that
    # cannot constrain decoding ignore it, so callers still parse defensively.
    json_schema: dict | None = field(default=None, compare=False)
    # Names the answer may write after given prefixes (identifiers.Identifiers); backends that
    # cannot steer decoding token by token ignore it.
    identifiers: Any = field(default=None, compare=False)


@dataclass(frozen=True)
class Generation:
    """What a backend answers. Engine timings are None where the backend cannot see them."""

    text: str
    finish_reason: str  # stop | length
    prompt_tokens: int | None
    completion_tokens: int | None
    evaluated_prompt_tokens: int | None = None  # prompt tokens actually computed (KV-cache reuse skips the rest)
    prompt_seconds: float | None = None
    generation_seconds: float | None = None


class Backend(Protocol):
    """A model that can answer a chat Request. Backends own their resources: close() frees them."""

    name: str  # llama.cpp | openai | replay
    model: str
    model_sha256: str | None
    context_length: int | None  # None: unknown here, the server enforces it
    sampling: Sampling

    def count_prompt_tokens(self, messages: Sequence[Message]) -> int | None:
        """Tokens of the prompt as the model's chat template renders it; None if not countable here."""

    def generate(self, request: Request) -> Generation: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Completion:
    """One recorded call: what was sent, what came back, and what it cost."""

    text: str
    messages: tuple[Message, ...]  # as sent, after any trimming
    backend: str
    model: str
    model_sha256: str | None
    seed: int
    temperature: float
    max_tokens: int
    finish_reason: str
    prompt_tokens: int | None
    completion_tokens: int | None
    wall_seconds: float
    trimmed_messages: int = 0  # old turns the context guard dropped
    evaluated_prompt_tokens: int | None = None
    prompt_seconds: float | None = None
    generation_seconds: float | None = None
    call_id: int | None = None  # the llm_calls row

    @property
    def tokens_per_second(self) -> float | None:
        """Completion tokens over the whole call's wall time (prompt processing included)."""
        if not self.completion_tokens or self.wall_seconds <= 0:
            return None
        return self.completion_tokens / self.wall_seconds

    @property
    def code(self) -> str | None:
        """The C++ source in the answer (see extract_code)."""
        return extract_code(self.text)


# ---------------------------------------------------------------- recording


@dataclass(frozen=True)
class Recorder:
    """Writes each call as an `llm_calls` row; agents bind an attempt and a role to it."""

    db: Any  # sqlite_utils.Database
    attempt_id: int | None = None
    role: str | None = None

    def bound(self, attempt_id: int | None = None, role: str | None = None) -> "Recorder":
        """The same database, with calls attached to this attempt and role."""
        return Recorder(self.db, attempt_id, role)

    def record(self, completion: Completion) -> int:
        """Insert the call's row and return its id."""
        from ..store import rows

        return rows.record_llm_call(self.db, call_row(completion, self.attempt_id, self.role))


def call_row(completion: Completion, attempt_id: int | None = None, role: str | None = None) -> dict[str, Any]:
    """The `llm_calls` row for a completion."""
    return {
        "attempt_id": attempt_id,
        "role": role,
        "backend": completion.backend,
        "model": completion.model,
        "model_sha256": completion.model_sha256,
        "seed": completion.seed,
        "temperature": completion.temperature,
        "max_tokens": completion.max_tokens,
        "prompt": [m.to_dict() for m in completion.messages],
        "completion": completion.text,
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "wall_seconds": completion.wall_seconds,
        "tokens_per_second": completion.tokens_per_second,
    }


# ---------------------------------------------------------------- the interface


class Chat:
    """Messages in, text out, through one backend; every call recorded.

    on_overflow: "fail" raises ContextOverflow when prompt + max_tokens exceeds the context;
    "trim" first drops the oldest turns between the task (first user message) and the last
    message, two at a time to keep the turns alternating, and fails if that is not enough.
    System messages, the task and the last message are never dropped or cut.
    """

    def __init__(self, backend: Backend, recorder: Recorder, on_overflow: str = "fail"):
        if on_overflow not in ("fail", "trim"):
            raise ValueError(f"on_overflow must be 'fail' or 'trim', not {on_overflow!r}")
        self.backend = backend
        self.recorder = recorder
        self.on_overflow = on_overflow

    def bound(self, attempt_id: int | None = None, role: str | None = None) -> "Chat":
        """The same backend and database, recording calls under this attempt and role."""
        return Chat(self.backend, self.recorder.bound(attempt_id, role), self.on_overflow)

    def close(self) -> None:
        """Close the backend (frees a loaded model); chats bound from this one share it."""
        self.backend.close()

    def __enter__(self) -> "Chat":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __call__(
        self,
        messages: Sequence[Message],
        *,
        seed: int = 0,
        temperature: float | None = None,
        max_tokens: int = 1024,
        stop: Iterable[str] = (),
        json_schema: dict | None = None,
        identifiers=None,
    ) -> Completion:
        """Answer the messages; temperature None means the model's recommended one.

        json_schema: constrain the answer to JSON of this schema where the backend can (llama.cpp).
        identifiers: an identifiers.Identifiers: after its prefixes, only its names (llama.cpp)."""
        if not messages:
            raise ValueError("a chat call needs at least one message")
        if max_tokens <= 0:
            raise ValueError("max_tokens must be positive")
        messages = tuple(messages)
        temperature = self.backend.sampling.temperature if temperature is None else float(temperature)
        trimmed = 0
        while True:
            fitted, dropped = self._fit(messages, max_tokens)
            trimmed += dropped
            request = Request(fitted, int(seed), temperature, int(max_tokens), tuple(stop), json_schema, identifiers)
            started = time.perf_counter()
            try:
                generation = self.backend.generate(request)
            except ContextOverflow:
                # A server that cannot count for us refused the prompt: trim one step and retry.
                if self.on_overflow != "trim" or (shorter := _drop_oldest_turns(fitted)) is None:
                    raise
                messages, trimmed = shorter, trimmed + 2
                continue
            wall = time.perf_counter() - started
            break
        return self._recorded(generation, request, wall, trimmed)

    def samples(self, messages: Sequence[Message], seeds: Sequence[int], temperatures: Sequence[float | None], *,
                max_tokens: int = 1024, stop: Iterable[str] = (), identifiers=None) -> list[Completion]:
        """Several samples of one prompt, one per (seed, temperature), each recorded as its own call.
        A backend that can (llama.cpp: `generate_many`) decodes them together, the prompt evaluated
        once; each call's wall_seconds is then its share of the batch's. Others answer one by one."""
        seeds = [int(seed) for seed in seeds]
        if len(seeds) != len(temperatures):
            raise ValueError("one temperature per seed")
        if len(seeds) == 1 or not hasattr(self.backend, "generate_many"):
            return [self(messages, seed=seed, temperature=t, max_tokens=max_tokens, stop=stop, identifiers=identifiers)
                    for seed, t in zip(seeds, temperatures)]
        fitted, trimmed = self._fit(tuple(messages), max_tokens)
        temperatures = [self.backend.sampling.temperature if t is None else float(t) for t in temperatures]
        request = Request(fitted, seeds[0], temperatures[0], int(max_tokens), tuple(stop), None, identifiers)
        started = time.perf_counter()
        generations = self.backend.generate_many(request, seeds, temperatures)
        share = (time.perf_counter() - started) / len(seeds)
        return [self._recorded(g, replace(request, seed=seed, temperature=t), share, trimmed)
                for g, seed, t in zip(generations, seeds, temperatures)]

    def _recorded(self, generation: Generation, request: Request, wall: float, trimmed: int) -> Completion:
        completion = Completion(
            text=generation.text,
            messages=request.messages,
            backend=self.backend.name,
            model=self.backend.model,
            model_sha256=self.backend.model_sha256,
            seed=request.seed,
            temperature=request.temperature,
            max_tokens=request.max_tokens,
            finish_reason=generation.finish_reason,
            prompt_tokens=generation.prompt_tokens,
            completion_tokens=generation.completion_tokens,
            wall_seconds=wall,
            trimmed_messages=trimmed,
            evaluated_prompt_tokens=generation.evaluated_prompt_tokens,
            prompt_seconds=generation.prompt_seconds,
            generation_seconds=generation.generation_seconds,
        )
        return replace(completion, call_id=self.recorder.record(completion))

    def _fit(self, messages: tuple[Message, ...], max_tokens: int) -> tuple[tuple[Message, ...], int]:
        """The messages that fit prompt + max_tokens into the context, and how many were dropped."""
        limit = self.backend.context_length
        dropped = 0
        while True:
            prompt_tokens = self.backend.count_prompt_tokens(messages)
            if prompt_tokens is None or limit is None or prompt_tokens + max_tokens <= limit:
                return messages, dropped
            shorter = _drop_oldest_turns(messages) if self.on_overflow == "trim" else None
            if shorter is None:
                raise ContextOverflow(
                    f"the prompt is {prompt_tokens} tokens and the answer may take {max_tokens}, "
                    f"more than the {limit}-token context of {self.backend.model}"
                    + (" even with every old turn dropped" if dropped else "")
                    + ": shorten the task, lower max_tokens or load the model with a larger n_ctx",
                    prompt_tokens, max_tokens, limit,
                )  # fmt: skip
            messages, dropped = shorter, dropped + len(messages) - len(shorter)


def _drop_oldest_turns(messages: tuple[Message, ...]) -> tuple[Message, ...] | None:
    """Drop the two oldest turns after the task, keeping system messages, the task and the last message."""
    task = next((i for i, m in enumerate(messages) if m.role == "user"), None)
    if task is None:
        return None
    droppable = [i for i in range(task + 1, len(messages) - 1) if messages[i].role != "system"]
    if len(droppable) < 2:
        return None
    gone = set(droppable[:2])
    return tuple(m for i, m in enumerate(messages) if i not in gone)


# ---------------------------------------------------------------- code blocks

CPP_LANGUAGES = frozenset({"cpp", "c++", "cc", "cxx", "c", "h", "hpp", "hxx"})
_OPENING = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})[ \t]*([^`\s]*)")


@dataclass(frozen=True)
class CodeBlock:
    """One fenced block of an answer."""

    language: str  # the fence's info word, lower case ("" when untagged)
    code: str
    closed: bool  # False when the answer ended inside the block (cut by max_tokens)


def code_blocks(text: str) -> list[CodeBlock]:
    """Every fenced (``` or ~~~) block of a Markdown answer, in order."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        opening = _OPENING.match(lines[i])
        i += 1
        if not opening:
            continue
        fence, language = opening.group(1), opening.group(2).lower()
        body, closed = [], False
        while i < len(lines):
            line = lines[i].strip()
            i += 1
            if line.startswith(fence) and set(line) == {fence[0]}:
                closed = True
                break
            body.append(lines[i - 1])
        blocks.append(CodeBlock(language, "\n".join(body) + "\n" if body else "", closed))
    return blocks


def extract_code(text: str, languages: frozenset[str] = CPP_LANGUAGES) -> str | None:
    """The code an answer gives: the longest block tagged with one of `languages`, else the
    longest untagged one; closed blocks win over one the answer was cut off inside. None if no block."""

    def rank(block: CodeBlock) -> tuple[bool, bool, int]:
        return (block.closed, block.language in languages, len(block.code))

    candidates = [b for b in code_blocks(text) if (b.language in languages or not b.language) and b.code.strip()]
    return max(candidates, key=rank).code if candidates else None


def messages_json(messages: Sequence[Message]) -> str:
    """The canonical JSON of a prompt (what the replay backend hashes)."""
    return json.dumps([m.to_dict() for m in messages], ensure_ascii=False, sort_keys=True, separators=(",", ":"))
