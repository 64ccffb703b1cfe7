"""A backend that answers from recordings, for deterministic tests of agent logic.

An answer is looked up by the prompt hash (sha256 of the messages' canonical JSON) and, when
the recording names one, the seed: an entry recorded for the call's seed wins over one
recorded for any seed. Recordings are JSON Lines, one object per answer:

    {"messages": [{"role": "user", "content": "..."}], "completion": "...", "seed": 3}

("prompt_hash" may stand in for "messages"), or the `llm_calls` rows of a database, so a
real run can be replayed call for call.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from .chat import Completion, Generation, LLMError, Message, Request, messages_json
from .models import Sampling


class ReplayMiss(LLMError):
    """No recorded answer for this prompt."""


def prompt_hash(messages: Sequence[Message]) -> str:
    """The key a recorded answer is found by."""
    return hashlib.sha256(messages_json(messages).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ReplayEntry:
    prompt_hash: str
    completion: str
    seed: int | None = None  # None: the answer for any seed
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    @staticmethod
    def from_json(value: dict) -> "ReplayEntry":
        if "messages" in value:
            key = prompt_hash([Message.from_dict(m) for m in value["messages"]])
        else:
            key = value["prompt_hash"]
        return ReplayEntry(
            prompt_hash=key,
            completion=value["completion"],
            seed=value.get("seed"),
            finish_reason=value.get("finish_reason", "stop"),
            prompt_tokens=value.get("prompt_tokens"),
            completion_tokens=value.get("completion_tokens"),
        )


class ReplayBackend:
    """Answers recorded beforehand; a prompt without one raises ReplayMiss naming its hash."""

    name = "replay"

    def __init__(self, entries: Iterable[ReplayEntry], model: str = "replay", model_sha256: str | None = None,
                 context_length: int | None = None):  # fmt: skip
        self.model = model
        self.model_sha256 = model_sha256
        self.context_length = context_length
        self.sampling = Sampling(temperature=0.0)
        self._answers: dict[tuple[str, int | None], ReplayEntry] = {}
        for entry in entries:
            self._answers[(entry.prompt_hash, entry.seed)] = entry

    @classmethod
    def from_file(cls, path: Path, **options) -> "ReplayBackend":
        """Read a JSON Lines recording (blank lines and lines starting with # are skipped)."""
        entries = []
        for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                entries.append(ReplayEntry.from_json(json.loads(line)))
            except (ValueError, KeyError, TypeError) as error:
                raise LLMError(f"{path}:{number}: not a replay entry ({error!r})") from None
        return cls(entries, **options)

    @classmethod
    def from_db(cls, db, attempt_id: int | None = None, **options) -> "ReplayBackend":
        """The calls recorded in a database's llm_calls table (of one attempt, if given)."""
        query = "SELECT prompt, completion, seed, prompt_tokens, completion_tokens, model, model_sha256 FROM llm_calls"
        rows = db.conn.execute(query + (" WHERE attempt_id = ?" if attempt_id is not None else "") + " ORDER BY id",
                               [attempt_id] if attempt_id is not None else []).fetchall()  # fmt: skip
        entries = [
            ReplayEntry(prompt_hash([Message.from_dict(m) for m in json.loads(prompt)]), completion, seed, "stop", pt, ct)
            for prompt, completion, seed, pt, ct, _, _ in rows
        ]
        if rows:
            options.setdefault("model", rows[-1][5])
            options.setdefault("model_sha256", rows[-1][6])
        return cls(entries, **options)

    def count_prompt_tokens(self, messages: Sequence[Message]) -> None:
        return None

    def generate(self, request: Request) -> Generation:
        key = prompt_hash(request.messages)
        entry = self._answers.get((key, request.seed)) or self._answers.get((key, None))
        if entry is None:
            opening = request.messages[-1].content.strip().splitlines()[:1]
            raise ReplayMiss(
                f"no recorded answer for prompt {key} (seed {request.seed}; last message: "
                f"{opening[0][:80] if opening else ''!r}): record one with write_replay"
            )
        return Generation(entry.completion, entry.finish_reason, entry.prompt_tokens, entry.completion_tokens)

    def close(self) -> None:
        """Nothing is held."""


def write_replay(path: Path, completions: Iterable[Completion], any_seed: bool = False) -> int:
    """Append completions to a JSON Lines recording (keyed by their seed unless any_seed); returns the count."""
    count = 0
    with open(path, "a", encoding="utf-8") as f:
        for c in completions:
            entry = {
                "messages": [m.to_dict() for m in c.messages],
                "completion": c.text,
                "seed": None if any_seed else c.seed,
                "finish_reason": c.finish_reason,
                "prompt_tokens": c.prompt_tokens,
                "completion_tokens": c.completion_tokens,
            }
            f.write(json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n")
            count += 1
    return count
