"""Which backend a run talks to, chosen by configuration.

A backend is named by one string (a run's config, or MKBENCH_LLM in the environment):

    llama.cpp                                   the default model, in process
    llama.cpp:qwen2.5-coder-0.5b-instruct-q4_k_m?n_ctx=8192
    llama.cpp:/data/models/my-coder.gguf
    openai:http://gpu-box:8000/v1?model=Qwen2.5-Coder-32B-Instruct&context_length=32768
    replay:tests/data/answers.jsonl

An OpenAI-compatible server that wants a key gets it from MKBENCH_LLM_API_KEY.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass, field

from .. import settings as settings_module
from .chat import Backend, Chat, LLMError, Recorder

KINDS = ("llama.cpp", "openai", "replay")
_INT_OPTIONS = {"n_ctx", "n_threads", "n_batch", "context_length"}


@dataclass(frozen=True)
class BackendConfig:
    kind: str  # llama.cpp | openai | replay
    target: str | None = None  # model name or GGUF path; server URL; recording path
    options: dict[str, str | int] = field(default_factory=dict)

    @staticmethod
    def parse(text: str) -> "BackendConfig":
        """Read `KIND[:TARGET][?key=value&...]`; an unknown kind or option names itself."""
        kind, _, rest = text.strip().partition(":")
        if kind not in KINDS:
            raise LLMError(f"unknown LLM backend {kind!r} in {text!r}: use one of {', '.join(KINDS)}")
        target, _, query = rest.partition("?")
        options: dict[str, str | int] = {}
        for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
            options[key] = int(value) if key in _INT_OPTIONS else value
        allowed = {"llama.cpp": {"n_ctx", "n_threads", "n_batch"}, "openai": {"model", "context_length", "sha256"}, "replay": {"model"}}[
            kind
        ]
        if unknown := set(options) - allowed:
            raise LLMError(f"{kind} backend has no option {', '.join(sorted(unknown))} (it takes {', '.join(sorted(allowed))})")
        if kind != "llama.cpp" and not target:
            raise LLMError(f"the {kind} backend needs a target: {kind}:{'URL' if kind == 'openai' else 'PATH'}")
        return BackendConfig(kind, target or None, options)

    @staticmethod
    def from_env() -> "BackendConfig":
        """MKBENCH_LLM, or the default model in process."""
        return BackendConfig.parse(os.environ.get("MKBENCH_LLM") or "llama.cpp")


def open_backend(config: BackendConfig | str | None, settings: settings_module.Settings) -> Backend:
    """Make the configured backend; the caller owns it and closes it (a loaded model is freed)."""
    if not isinstance(config, BackendConfig):
        config = BackendConfig.parse(config) if config else BackendConfig.from_env()
    o = config.options
    if config.kind == "llama.cpp":
        from .llamacpp import LlamaCppBackend

        return LlamaCppBackend.load(config.target, settings, **o)
    if config.kind == "openai":
        from .openai_compat import OpenAICompatBackend

        return OpenAICompatBackend(config.target, model=o.get("model"), api_key=os.environ.get("MKBENCH_LLM_API_KEY"),
                                   context_length=o.get("context_length"), model_sha256=o.get("sha256"))  # fmt: skip
    from .replay import ReplayBackend

    return ReplayBackend.from_file(config.target, model=o.get("model", "replay"))


def open_chat(config: BackendConfig | str | None, recorder: Recorder, settings: settings_module.Settings,
              on_overflow: str = "fail") -> Chat:
    """A Chat over the configured backend, recording into `recorder`."""
    return Chat(open_backend(config, settings), recorder, on_overflow)
