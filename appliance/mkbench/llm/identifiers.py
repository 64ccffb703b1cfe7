"""Decoding that writes only names that exist: after a trigger (`OpType_`, `main_as_`, `MNN::`),
or after `.`/`->` on a variable of a known MNN type, the identifier the model writes must be one
of a known set (monitor-guided decoding).

    names = Identifiers({"OpType_": {"UnaryOp", "BinaryOp", ...}, "main_as_": {...}},
                        members={"Tensor": {"host", "elementSize", ...}}, pointee={"VARP": "Variable"})
    guard = names.processor(token_texts)       # a llama-cpp-python logits processor
    llm.create_completion(..., logits_processor=LogitsProcessorList([guard]))

At each step the processor looks at the text generated so far; when it ends with a trigger and
the identifier characters after it, it leaves possible only the tokens that continue that
identifier towards a known name (or, once the name is complete, end it). Elsewhere it changes
nothing, and inside comments and string literals never. A small model's whole-file kernels failed
to build on names it invented (`DataType_FLOAT32`, `main_as_Pooling`), and its composites on
members (`x->dim` on a VARP); with this, such a name cannot be written.

A variable's type is what the generated text last declared it with (`Tensor* t`, `const
std::vector<Tensor*>& inputs` then `inputs[0]->`, `VARP x`, `auto a = op->main_as_Axis()`, `auto t
= inputs[0]`), and an accessor's call has its table's type (`op->main_as_ArgMax()->`); another
expression whose type is not declared that way (`a.b->`, `f()->`) is left free,
so the rule never forbids what the compiler would accept for lack of knowing better.

Token texts are the model's vocabulary as strings (one per token id); a token is "identifier
characters, then possibly more": its identifier part must extend the name being written, and if
anything follows in the same token, the name must be complete there.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

_IDENT = re.compile(r"[A-Za-z0-9_]*")
# The variable (and a subscript) at the end of the text, and what may follow it: `inputs[0]->elem`.
_RECEIVER = re.compile(r"\b([A-Za-z_]\w*)(\[[^\[\]\n]{0,40}\])?(?:->|-|\.)?[A-Za-z0-9_]*$")
_SCOPE = r"(?:(?:MNN|Express|CV)\s*::\s*)*"
# A flatbuffer accessor's call at the end of the text, and what may follow it: `main_as_ArgMax()->keep`.
_ACCESSOR = re.compile(r"(main_as_(\w+)\(\s*\))(?:->|-|\.)?[A-Za-z0-9_]*$")


def _in_comment_or_string(tail: str) -> bool:
    """Whether the text ends inside a // or /* comment or a string literal (judged on its last line)."""
    if tail.rfind("/*") > tail.rfind("*/"):
        return True
    line = re.sub(r'\\.', "", tail.rsplit("\n", 1)[-1])  # escaped characters say nothing
    code = re.sub(r'"[^"]*"', '""', line)
    return "//" in code or code.count('"') % 2 == 1


def _declared_type(text: str, name: str, subscripted: bool, known: Mapping[str, object]) -> str | None:
    """The known type `name` was last declared with in `text` (its element type when `subscripted`):
    `Tensor* name`, `const std::vector<Tensor*>& name`, `VARPS name`, `auto name = other[i]`,
    `auto name = op->main_as_Axis()`. None when no declaration says (nothing is constrained then)."""
    v = re.escape(name)
    latest: tuple[int, str | None] = (-1, None)
    patterns = [(rf"\bvector\s*<\s*(?:const\s+)?{_SCOPE}([A-Z]\w*)\s*\*?\s*>\s*(?:const\s*)?&?\s*\b{v}\b", True),
                (rf"\bVARPS\s*(?:const\s*)?&?\s*\b{v}\b()", True),
                (rf"(?<![\w:])(?:const\s+)?{_SCOPE}([A-Z]\w*)\s*(?:const\s*)?[*&]*\s*(?:const\s+)?\b{v}\s*(?=[=;,)\[{{(])", False),
                (rf"\bauto\s*[*&]?\s*\b{v}\s*=\s*[\w\[\]]+\s*->\s*main_as_(\w+)\s*\(", False)]
    for pattern, container in patterns:
        for match in re.finditer(pattern, text):
            if match.start() > latest[0]:
                type_ = match.group(1) or "VARP"
                latest = (match.start(), type_ if container == subscripted else None)
    for match in re.finditer(rf"\bauto\s*[*&]?\s*\b{v}\s*=\s*(\w+)\s*\[", text):
        if match.start() > latest[0] and match.group(1) != name:
            latest = (match.start(), None if subscripted else _declared_type(text[:match.start()], match.group(1), True, known))
    return latest[1] if latest[1] in known else None


@dataclass(frozen=True)
class Identifiers:
    """Trigger text -> the names allowed right after it; and for member access, a type -> the names
    `.` or `->` may reach on a variable declared with that type in the generated text."""

    names: Mapping[str, frozenset[str]] = field(default_factory=dict)
    members: Mapping[str, frozenset[str]] = field(default_factory=dict)
    pointee: Mapping[str, str] = field(default_factory=dict)  # `->` on a VARP reaches a Variable's members

    def __post_init__(self):
        def known(names):
            return frozenset(n for n in names if n and _IDENT.fullmatch(n))

        object.__setattr__(self, "names", {t: known(ns) for t, ns in self.names.items()})
        object.__setattr__(self, "members", {t: known(ns) for t, ns in self.members.items()})
        sorted_names = {t: tuple(sorted(ns)) for t, ns in self.names.items()}  # for prefix search
        object.__setattr__(self, "_sorted", sorted_names)
        object.__setattr__(self, "_sorted_members", {t: tuple(sorted(ns)) for t, ns in self.members.items()})
        # allowed()'s and crossing's answers per vocabulary (kept alive with them, so no id is reused),
        # by the sorted tuples above
        object.__setattr__(self, "_answers", {})

    def __bool__(self) -> bool:
        return any(self.names.values()) or any(self.members.values())

    def triggers(self, text: str) -> list[tuple[str, tuple[str, ...]]]:
        """(trigger, its known names, sorted) in force at the end of `text`: the fixed prefixes, and
        `v->` and `v.` when `text` ends at or after a variable v whose declared type has known members."""
        found = [(t, self._sorted[t]) for t in self.names]
        if not self.members:
            return found
        tail = text[-160:]
        accessor = _ACCESSOR.search(tail)  # op->main_as_ArgMax()-> : the accessor says the type
        receiver = _RECEIVER.search(tail)
        if accessor is not None and accessor.group(2) in self.members:
            declared, written = accessor.group(2), accessor.group(1)
        elif receiver is None or receiver.start() > 0 and tail[receiver.start() - 1] in ".>:":
            return found  # a member of a member, or a qualified name: its type is not known here
        else:
            name, subscript = receiver.group(1), receiver.group(2)
            declared = _declared_type(text, name, bool(subscript), self.members)
            if declared is None:
                return found
            written = name + (subscript or "")
        for access in ("->", "."):
            type_ = self.pointee.get(declared, declared) if access == "->" else declared
            if type_ in self._sorted_members:
                found.append((written + access, self._sorted_members[type_]))
        return found

    def open_name(self, text: str, triggers=None) -> tuple[str, str] | None:
        """(trigger, the identifier written after it so far) when `text` ends inside a constrained name."""
        for trigger, _ in triggers if triggers is not None else self.triggers(text):
            at = text.rfind(trigger)
            if at < 0:
                continue
            if at > 0 and trigger[0].isalnum() and (text[at - 1].isalnum() or text[at - 1] == "_"):
                continue  # "MyOpType_" is not the trigger
            written = text[at + len(trigger):]
            if _IDENT.fullmatch(written):
                return trigger, written
        return None

    @staticmethod
    def _known_prefix(names: Sequence[str], head: str) -> bool:
        at = bisect.bisect_left(names, head)
        return at < len(names) and names[at].startswith(head)

    def crossing(self, text: str, tokens: "TokenTable", triggers=None) -> list[int]:
        """Tokens that would finish a trigger `text` ends with the start of, and go on to a name no
        known one begins with (a tokenizer often writes "OpType" then "_MaxPool"): forbidden."""
        banned: list[int] = []
        for trigger, names in triggers if triggers is not None else self.triggers(text):
            for k in range(len(trigger) - 1, 0, -1):
                if not text.endswith(trigger[:k]):
                    continue
                before = text[:-k][-1:] if len(text) > k else ""
                if trigger[0].isalnum() and (before.isalnum() or before == "_"):
                    continue
                banned += self._crossing_banned(names, trigger[k:], tokens)
        return banned

    def _crossing_banned(self, names: Sequence[str], rest: str, tokens: "TokenTable") -> list[int]:
        """The tokens that start with `rest` (a trigger's end) and go on to no name of `names`:
        fixed for (names, rest, vocabulary), so made once."""
        answers, key = self._answers_for(tokens), ("crossing", id(names), rest)
        if key not in answers:
            banned = []
            for token_id, piece in tokens.starting_with(rest):
                after = piece[len(rest):]
                head = _IDENT.match(after).group()
                at = bisect.bisect_left(names, head)
                complete = at < len(names) and names[at] == head
                if (head == after and not self._known_prefix(names, head)) or (head != after and not complete):
                    banned.append(token_id)
            self._remember(answers, key, banned)
        return answers[key]

    def _answers_for(self, tokens: "TokenTable") -> dict:
        kept = self._answers.get(id(tokens))
        if kept is None or kept[0] is not tokens:
            kept = self._answers[id(tokens)] = (tokens, {})
        return kept[1]

    @staticmethod
    def _remember(answers: dict, key, value) -> None:
        if len(answers) >= 4096:
            answers.clear()
        answers[key] = value

    def allowed(self, names: Sequence[str], written: str, tokens: "TokenTable") -> np.ndarray | None:
        """Token ids that keep the name on course to one of `names` (None: none fits, leave it);
        an id may repeat. Kept per (names, written, vocabulary): a decode meets the same states often."""
        answers, key = self._answers_for(tokens), (id(names), written)
        if key in answers:
            return answers[key]
        rests = [name[len(written):] for name in names if name.startswith(written)]
        parts: list[tuple[int, ...]] = []
        prefixes = set()
        for rest in rests:
            prefixes.update(rest[:k] for k in range(1, len(rest) + 1))
        parts += [tokens.pure.get(prefix, ()) for prefix in prefixes]
        parts += [tokens.tailed.get(rest, ()) for rest in set(rests)]  # the name complete, something else after it
        ids = np.fromiter(itertools.chain.from_iterable(parts), dtype=np.int64)
        found = ids if ids.size else None
        self._remember(answers, key, found)
        return found

    def constrain(self, text: str, scores: np.ndarray, tokens: "TokenTable") -> np.ndarray:
        """The scores of the next token after `text` (what was generated so far), with what cannot
        continue a known name masked (-inf); the same array when nothing is constrained here."""
        tail = text[-160:]
        if _in_comment_or_string(tail):
            return scores  # prose may end a sentence with "input." or name anything
        triggers = self.triggers(text)
        found = self.open_name(tail, triggers)
        if found is None:
            banned = self.crossing(tail, tokens, triggers)
            if banned:
                scores = scores.copy()
                scores[banned] = -np.inf
            return scores
        names = dict(triggers)[found[0]]
        ids = self.allowed(names, found[1], tokens)
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
