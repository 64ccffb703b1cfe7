"""The LLM that writes kernels: one chat interface over three backends.

    chat.py           Message, Completion, Chat (context guard, recording), code extraction
    llamacpp.py       a GGUF model in process (llama-cpp-python)
    openai_compat.py  an OpenAI-compatible server on the lab's network
    replay.py         recorded answers, looked up by prompt hash, for tests
    config.py         choosing a backend from one configuration string
    models.py         the manifest, installing models from PyPI chunks, the registry
    gguf.py           reading a GGUF header to refuse corrupt or truncated files

Importing this package does not import llama_cpp; only loading a model does.
"""

from .chat import (
    Chat,
    CodeBlock,
    Completion,
    ContextOverflow,
    LLMError,
    Message,
    Recorder,
    code_blocks,
    extract_code,
)
from .config import BackendConfig, open_backend, open_chat

__all__ = [
    "BackendConfig",
    "Chat",
    "CodeBlock",
    "Completion",
    "ContextOverflow",
    "LLMError",
    "Message",
    "Recorder",
    "code_blocks",
    "extract_code",
    "open_backend",
    "open_chat",
]
