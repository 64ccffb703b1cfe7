"""The in-process backend: a GGUF model run by llama-cpp-python.

Load the model once per process and pass the backend around; close() (or a `with` block)
frees it. Prompts are rendered with the model's own chat template (or the manifest's chat
format for a model without one), exactly as llama-cpp-python's create_chat_completion would,
so the context guard counts the very tokens that are evaluated.

A prompt that starts like the previous one reuses the KV cache for the shared prefix, but only
in whole batches aligned to position 0 that were themselves computed as whole batches. A prompt
is always evaluated in the same batches from 0, and the logits of a token depend (in the last
bits) on the batch it was computed in; reusing any other prefix would let the same (prompt,
seed) give a different answer depending on what ran before. This way they never do.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from typing import Sequence

import numpy as np

from .. import settings as settings_module
from .chat import Generation, LLMError, Message, Request
from .models import InstalledModel, resolve

INSTALL_HINT = 'CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install --no-cache-dir llama-cpp-python'


def import_llama_cpp():
    """The llama_cpp module, or an LLMError saying how to install it."""
    try:
        import llama_cpp
    except ImportError as error:
        raise LLMError(f"llama-cpp-python is not installed ({error}): {INSTALL_HINT}") from None
    return llama_cpp


class LlamaCppBackend:
    """One loaded GGUF model. Not thread-safe: one call at a time."""

    name = "llama.cpp"

    def __init__(
        self,
        model: InstalledModel,
        n_ctx: int | None = None,
        n_threads: int | None = None,
        n_batch: int = 256,
        verbose: bool = False,
    ):
        llama_cpp = import_llama_cpp()
        self.installed = model
        self.model = model.name
        self.model_sha256 = model.sha256
        self.sampling = model.spec.sampling
        threads = n_threads or os.cpu_count() or 1  # the library's default is half the cores
        chat_format = model.spec.chat_format or "chat_template.default"
        try:
            self._llm = llama_cpp.Llama(
                model_path=str(model.path),
                n_ctx=n_ctx or model.spec.context_length,
                n_threads=threads,
                n_threads_batch=threads,
                n_batch=n_batch,
                chat_format=chat_format,
                verbose=verbose,
            )
        except ValueError as error:
            raise LLMError(f"llama.cpp could not load {model.path}: {error}") from None
        self.context_length = self._llm.n_ctx()
        self._handler = self._llm.chat_handler or self._llm._chat_handlers.get(chat_format)
        if self._handler is None:
            self._handler = llama_cpp.llama_chat_format.get_chat_completion_handler(chat_format)
        self._llama_cpp = llama_cpp
        self._rendered: tuple[tuple[Message, ...], _Rendered] | None = None
        self._batch = n_batch
        self._aligned = 0  # leading KV-cache tokens computed as whole batches aligned to 0
        self._grammars: dict[str, object] = {}  # JSON schema text -> LlamaGrammar
        self._tokens = None  # identifiers.TokenTable of the vocabulary, made on first use
        self._decoder = None  # batched.BatchDecoder, made on the first generate_many of several samples

    @classmethod
    def load(cls, name: str | None, settings: settings_module.Settings, **options) -> "LlamaCppBackend":
        """Load an installed, verified model by name (the default model if None) or GGUF path."""
        return cls(resolve(name, settings), **options)

    @property
    def llama(self):
        """The underlying llama_cpp.Llama (for benchmarks and diagnostics)."""
        if self._llm is None:
            raise LLMError(f"{self.model} was closed")
        return self._llm

    @property
    def n_batch(self) -> int:
        return self._batch

    # ------------------------------------------------------------ Backend

    def count_prompt_tokens(self, messages: Sequence[Message]) -> int:
        return len(self._render(tuple(messages)).tokens)

    def prompt_tokens(self, messages: Sequence[Message]) -> list[int]:
        """The prompt's tokens as the model's chat template renders the messages."""
        return list(self._render(tuple(messages)).tokens)

    def generate(self, request: Request) -> Generation:
        if self._llm is None:
            raise LLMError(f"{self.model} was closed")
        rendered = self._render(request.messages)
        llama_cpp, ctx = self._llama_cpp, self._llm.ctx
        self._keep_reusable_prefix(rendered.tokens)
        llama_cpp.llama_perf_context_reset(ctx)
        s = self.sampling
        result = self._llm.create_completion(
            prompt=rendered.tokens,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=s.top_p,
            top_k=s.top_k,
            min_p=s.min_p,
            repeat_penalty=s.repeat_penalty,
            seed=request.seed,
            stop=list(request.stop) + rendered.stop,
            stopping_criteria=rendered.stopping_criteria,
            grammar=self._grammar(request.json_schema),
            logits_processor=self._name_guard(request.identifiers, len(rendered.tokens)),
        )
        perf = llama_cpp.llama_perf_context(ctx)
        self._aligned = len(rendered.tokens) // self._batch * self._batch
        choice, usage = result["choices"][0], result["usage"]
        return Generation(
            text=choice["text"],
            finish_reason=choice["finish_reason"] or "stop",
            prompt_tokens=usage["prompt_tokens"],
            completion_tokens=usage["completion_tokens"],
            evaluated_prompt_tokens=perf.n_p_eval,
            prompt_seconds=perf.t_p_eval_ms / 1000,
            generation_seconds=perf.t_eval_ms / 1000,
        )

    def _grammar(self, schema: dict | None):
        """The llama.cpp grammar for a JSON schema (built once per schema), or None."""
        if schema is None:
            return None
        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            self._grammars[key] = self._llama_cpp.LlamaGrammar.from_json_schema(key, verbose=False)
        return self._grammars[key]

    def generate_many(self, request: Request, seeds: Sequence[int], temperatures: Sequence[float]) -> list[Generation]:
        """One generation per (seed, temperature) of the request's prompt, decoded together in one
        llama.cpp batch per step (llm/batched.py) when they fit its context; one by one otherwise
        (and for a JSON schema, which the batch decoder does not constrain)."""
        rendered = self._render(request.messages)
        n = len(seeds)
        decoder = self._batch_decoder(n) if n > 1 and request.json_schema is None else None
        if decoder is None or not decoder.fits(len(rendered.tokens), n, request.max_tokens):
            return [self.generate(replace(request, seed=seed, temperature=t)) for seed, t in zip(seeds, temperatures)]
        tokens = self._token_table() if request.identifiers else None
        samples = decoder.generate(rendered.tokens, seeds, temperatures, self.sampling, request.max_tokens,
                                   list(request.stop) + rendered.stop, request.identifiers, tokens)
        return [Generation(text=s.text, finish_reason=s.finish_reason, prompt_tokens=len(rendered.tokens),
                           completion_tokens=s.completion_tokens,
                           evaluated_prompt_tokens=len(rendered.tokens) if k == 0 else 0)  # evaluated once, shared
                for k, s in enumerate(samples)]

    def _batch_decoder(self, samples: int):
        """The batch decoder (its own context on this model), made for at least 4 sequences on first use."""
        from .batched import BatchDecoder

        if self._decoder is None or self._decoder.sequences < samples:
            if self._decoder is not None:
                self._decoder.close()
            self._decoder = BatchDecoder(self._llm, sequences=max(4, samples), n_ctx=self.context_length, n_batch=self._batch)
        return self._decoder

    def _token_table(self):
        from .identifiers import TokenTable

        if self._tokens is None:  # the vocabulary as text, once per model
            detokenize = self._llm.detokenize
            self._tokens = TokenTable.of(detokenize([i]).decode("utf-8", errors="ignore")
                                         for i in range(self._llm.n_vocab()))
        return self._tokens

    def _name_guard(self, identifiers, prompt_length: int):
        """A logits processor that keeps names after the request's prefixes to the known ones, or None."""
        if not identifiers:
            return None
        guard = identifiers.processor(self._token_table(), prompt_length,
                                      lambda ids: self._llm.detokenize(ids).decode("utf-8", errors="ignore"))
        return self._llama_cpp.LogitsProcessorList([guard])

    def _keep_reusable_prefix(self, tokens: list[int]) -> None:
        """Cut the KV cache back to the prefix a fresh evaluation of `tokens` would compute identically."""
        llm = self._llm
        shared = min(llm.n_tokens, len(tokens), self._aligned)
        differ = np.flatnonzero(llm.input_ids[:shared] != np.asarray(tokens[:shared], dtype=llm.input_ids.dtype))
        common = int(differ[0]) if differ.size else shared
        keep = min(common, len(tokens) - 1) // self._batch * self._batch  # the last token is always computed
        if keep == 0:
            llm.reset()
        else:
            llm.n_tokens = keep  # generate() then drops the KV cache after `keep` and evaluates the rest
        self._aligned = keep

    def close(self) -> None:
        """Free the model and its context now rather than at garbage collection."""
        if self._decoder is not None:
            self._decoder.close()
            self._decoder = None
        if self._llm is not None:
            self._llm.close()
            self._llm = None

    def __enter__(self) -> "LlamaCppBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ the chat template

    def _render(self, messages: tuple[Message, ...]) -> "_Rendered":
        """Prompt tokens, stop strings and stopping criteria, as the chat handler would make them."""
        if self._rendered and self._rendered[0] == messages:
            return self._rendered[1]
        capture = _PromptCapture(self._llm)
        try:
            self._handler(llama=capture, messages=[m.to_dict() for m in messages])
        except _Rendered as rendered:
            self._rendered = (messages, rendered)
            return rendered
        raise LLMError(f"the chat handler of {self.model} did not produce a prompt")


class _Rendered(Exception):
    """Carries the prompt out of a chat handler at the point it would start generating."""

    def __init__(self, tokens: list[int], stop, stopping_criteria):
        super().__init__("rendered")
        self.tokens = list(tokens)
        self.stop = [] if stop is None else [stop] if isinstance(stop, str) else list(stop)
        self.stopping_criteria = stopping_criteria


class _PromptCapture:
    """Stands in for Llama while a chat handler renders messages: tokenizes for real, then
    stops the handler where it would call create_completion."""

    verbose = False

    def __init__(self, llm):
        self._llm = llm

    def tokenize(self, *args, **kwargs):
        return self._llm.tokenize(*args, **kwargs)

    def create_completion(self, *, prompt, stop=None, stopping_criteria=None, **_):
        raise _Rendered(prompt, stop, stopping_criteria)
