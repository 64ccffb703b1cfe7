"""A backend for a model served on the lab's network: any OpenAI-compatible chat endpoint
(llama.cpp's llama-server, vLLM, ...), spoken with urllib.

The server renders the chat template and enforces its context, so prompts are not counted
here: a prompt the server refuses as too long comes back as ContextOverflow, which Chat can
answer by trimming old turns.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Sequence

from .chat import ContextOverflow, Generation, LLMError, Message, Request
from .models import Sampling

_OVERFLOW_HINTS = (
    "context length",
    "context window",
    "maximum context",
    "exceed_context",
    "too many tokens",
    "exceeds the available context",
)


class OpenAICompatBackend:
    """POSTs each request to {base_url}/chat/completions."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        context_length: int | None = None,
        model_sha256: str | None = None,
        sampling: Sampling | None = None,
        timeout: float = 600.0,
    ):
        base = base_url.rstrip("/")
        self.base_url = base if base.endswith("/v1") else base + "/v1"
        self.api_key = api_key
        self.timeout = timeout
        self.sampling = sampling or Sampling()
        self.model_sha256 = model_sha256  # a server does not say which file it serves
        self.context_length = context_length
        self.model = model or self._served_model()

    def _served_model(self) -> str:
        """The first model the server lists, when none was configured."""
        models = self._call("GET", "/models").get("data") or []
        if not models:
            raise LLMError(f"{self.base_url}/models lists no model: configure one")
        first = models[0]
        if self.context_length is None:  # vLLM says max_model_len; llama-server says meta.n_ctx_train
            self.context_length = first.get("max_model_len") or (first.get("meta") or {}).get("n_ctx_train")
        return first["id"]

    def count_prompt_tokens(self, messages: Sequence[Message]) -> None:
        return None

    def generate(self, request: Request) -> Generation:
        body = {
            "model": self.model,
            "messages": [m.to_dict() for m in request.messages],
            "seed": request.seed,
            "temperature": request.temperature,
            "top_p": self.sampling.top_p,
            "max_tokens": request.max_tokens,
            "stream": False,
        }
        if request.stop:
            body["stop"] = list(request.stop)
        if request.json_schema is not None:  # vLLM and llama-server both constrain decoding to it
            body["response_format"] = {"type": "json_schema", "json_schema": {"name": "answer", "schema": request.json_schema}}
        answer = self._call("POST", "/chat/completions", body)
        try:
            choice = answer["choices"][0]
            usage = answer.get("usage") or {}
            return Generation(
                text=choice["message"]["content"] or "",
                finish_reason=choice.get("finish_reason") or "stop",
                prompt_tokens=usage.get("prompt_tokens"),
                completion_tokens=usage.get("completion_tokens"),
            )
        except (KeyError, IndexError, TypeError) as error:
            raise LLMError(f"{self.base_url}/chat/completions answered without a choice ({error!r}): {str(answer)[:200]}") from None

    def close(self) -> None:
        """Nothing is held between calls."""

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(body).encode() if body is not None else None
        url = self.base_url + path
        try:
            with urllib.request.urlopen(urllib.request.Request(url, data, headers, method=method), timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            detail = _error_detail(error)
            if error.code in (400, 413) and any(h in detail.lower() for h in _OVERFLOW_HINTS):
                raise ContextOverflow(f"{url} refused the prompt as too long: {detail}") from None
            raise LLMError(f"{url} answered HTTP {error.code}: {detail}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            reason = getattr(error, "reason", error)
            raise LLMError(f"cannot reach {url} ({reason}): is the server running and the URL right?") from None
        except ValueError as error:
            raise LLMError(f"{url} answered something that is not JSON ({error})") from None


def _error_detail(error: urllib.error.HTTPError) -> str:
    """The server's own one-line error message, however it wraps it."""
    raw = error.read().decode("utf-8", errors="replace")
    try:
        value = json.loads(raw)
    except ValueError:
        return raw.strip()[:300] or error.reason
    inner = value.get("error", value) if isinstance(value, dict) else value
    if isinstance(inner, dict):
        return str(inner.get("message") or inner)[:300]
    return str(inner)[:300]
