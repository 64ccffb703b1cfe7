"""Decoding that writes only names that exist: after a trigger (`OpType_`, `main_as_`, `MNN::`),
the identifier the model writes must be one of a known set (monitor-guided decoding).

    names = Identifiers({"OpType_": {"UnaryOp", "BinaryOp", ...}, "main_as_": {...}})
    guard = names.processor(token_texts)       # a llama-cpp-python logits processor
    llm.create_completion(..., logits_processor=LogitsProcessorList([guard]))

At each step the processor looks at the text generated so far; when it ends with a trigger and
the identifier characters after it, it leaves possible only the tokens that continue that
identifier towards a known name (or, once the name is complete, end it). Elsewhere it changes
nothing. A small model's whole-file kernels failed to build on names it invented
(`DataType_FLOAT32`, `main_as_Pooling`); with this, such a name cannot be written.

Token texts are the model's vocabulary as strings (one per token id); a token is "identifier
characters, then possibly more": its identifier part must extend the name being written, and if
anything follows in the same token, the name must be complete there.
"""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

_IDENT = re.compile(r"[A-Za-z0-9_]*")


@dataclass(frozen=True)
class Identifiers:
    """Trigger text -> the names allowed right after it."""

    names: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def __post_init__(self):
        names = {t: frozenset(n for n in ns if n and _IDENT.fullmatch(n)) for t, ns in self.names.items()}
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "_sorted", {t: sorted(ns) for t, ns in names.items()})  # for prefix search

    def __bool__(self) -> bool:
        return any(self.names.values())

    def open_name(self, text: str) -> tuple[str, str] | None:
        """(trigger, the identifier written after it so far) when `text` ends inside a constrained name."""
        for trigger in self.names:
            at = text.rfind(trigger)
            if at < 0:
                continue
            if at > 0 and trigger[0].isalnum() and (text[at - 1].isalnum() or text[at - 1] == "_"):
                continue  # "MyOpType_" is not the trigger
            written = text[at + len(trigger):]
            if _IDENT.fullmatch(written):
                return trigger, written
        return None

    def _known_prefix(self, trigger: str, head: str) -> bool:
        names = self._sorted[trigger]
        at = bisect.bisect_left(names, head)
        return at < len(names) and names[at].startswith(head)

    def crossing(self, text: str, tokens: "TokenTable") -> list[int]:
        """Tokens that would finish a trigger `text` ends with the start of, and go on to a name no
        known one begins with (a tokenizer often writes "OpType" then "_MaxPool"): forbidden."""
        banned: list[int] = []
        for trigger in self.names:
            for k in range(len(trigger) - 1, 0, -1):
                if not text.endswith(trigger[:k]):
                    continue
                before = text[:-k][-1:] if len(text) > k else ""
                if trigger[0].isalnum() and (before.isalnum() or before == "_"):
                    continue
                rest = trigger[k:]
                for token_id, piece in tokens.starting_with(rest):
                    after = piece[len(rest):]
                    head = _IDENT.match(after).group()
                    complete = head in self.names[trigger]
                    if (head == after and not self._known_prefix(trigger, head)) or (head != after and not complete):
                        banned.append(token_id)
        return banned

    def allowed(self, trigger: str, written: str, tokens: "TokenTable") -> np.ndarray | None:
        """Token ids that keep the name on course to a known one (None: no known name fits, leave it)."""
        rests = [name[len(written):] for name in self.names[trigger] if name.startswith(written)]
        if not rests:
            return None
        ids: list[int] = []
        prefixes = set()
        for rest in rests:
            prefixes.update(rest[:k] for k in range(1, len(rest) + 1))
        for prefix in prefixes:
            ids.extend(tokens.pure.get(prefix, ()))
        for rest in set(rests):  # the name complete here, something else after it in the same token
            ids.extend(tokens.tailed.get(rest, ()))
        return np.unique(np.asarray(ids, dtype=np.int64)) if ids else None

    def constrain(self, text: str, scores: np.ndarray, tokens: "TokenTable") -> np.ndarray:
        """The scores of the next token after `text` (what was generated so far), with what cannot
        continue a known name masked (-inf); the same array when nothing is constrained here."""
        tail = text[-160:]
        found = self.open_name(tail)
        if found is None:
            banned = self.crossing(tail, tokens)
            if banned:
                scores = scores.copy()
                scores[banned] = -np.inf
            return scores
        ids = self.allowed(*found, tokens)
        if ids is None:
            return scores
        masked = np.full_like(scores, -np.inf)
        masked[ids] = scores[ids]
        return masked

    def processor(self, tokens: "TokenTable", prompt_length: int, detokenize):
        """A logits processor for llama-cpp-python: (input_ids, scores) -> scores, masking what
        cannot continue a known name. `detokenize(ids) -> str` reads the generated text."""
        state = {"seen": prompt_length, "text": ""}

        def guard(input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
            if len(input_ids) > state["seen"]:
                state["text"] += detokenize(list(input_ids[state["seen"]:]))
                state["seen"] = len(input_ids)
            return self.constrain(state["text"], scores, tokens)

        return guard


@dataclass(frozen=True)
class TokenTable:
    """A vocabulary split for the processor: identifier-only tokens by their text, and tokens that
    start with identifier characters (possibly none) and go on with others, by that start."""

    pure: Mapping[str, tuple[int, ...]]
    tailed: Mapping[str, tuple[int, ...]]
    ordered: tuple[tuple[str, int], ...] = ()  # (text, id) sorted by text: the tokens that start with a string

    def starting_with(self, prefix: str) -> list[tuple[int, str]]:
        """(id, text) of every token whose text starts with `prefix`."""
        at = bisect.bisect_left(self.ordered, (prefix, -1))
        found = []
        while at < len(self.ordered) and self.ordered[at][0].startswith(prefix):
            found.append((self.ordered[at][1], self.ordered[at][0]))
            at += 1
        return found

    @classmethod
    def of(cls, texts: Sequence[str] | Iterable[str]) -> "TokenTable":
        pure: dict[str, list[int]] = defaultdict(list)
        tailed: dict[str, list[int]] = defaultdict(list)
        ordered = []
        for token_id, text in enumerate(texts):
            if not text:
                continue
            head = _IDENT.match(text).group()
            (pure[head] if len(head) == len(text) else tailed[head]).append(token_id)
            ordered.append((text, token_id))
        return cls({k: tuple(v) for k, v in pure.items()}, {k: tuple(v) for k, v in tailed.items()}, tuple(sorted(ordered)))
