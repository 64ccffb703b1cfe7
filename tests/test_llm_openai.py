"""The OpenAI-compatible backend against a small real HTTP server on 127.0.0.1.

The server speaks the subset of the API that llama-server and vLLM share: GET /v1/models and
POST /v1/chat/completions, with their error shapes (a 400 for a prompt over the context).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mkbench import store
from mkbench.llm import Chat, ContextOverflow, LLMError, Message, Recorder, open_backend
from mkbench.llm.openai_compat import OpenAICompatBackend

CONTEXT_CHARS = 400  # the fake server's "context": total characters of the messages


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def _reply(self, status: int, value) -> None:
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/v1/models":
            self._reply(200, {"object": "list", "data": [{"id": "served-coder", "object": "model", "max_model_len": 4096}]})
        else:
            self._reply(404, {"error": {"message": "not found"}})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append((dict(self.headers), body))
        messages = body["messages"]
        if messages[-1]["content"] == "boom":
            return self._reply(500, {"error": {"message": "the GPU caught fire", "type": "server_error"}})
        chars = sum(len(m["content"]) for m in messages)
        if chars > CONTEXT_CHARS:
            return self._reply(400, {"object": "error", "message": f"This model's maximum context length is {CONTEXT_CHARS} tokens. "
                                     f"However, you requested {chars} tokens.", "code": 400})  # fmt: skip
        text = f"```cpp\n// seed {body['seed']} temperature {body['temperature']}\nint f();\n```"
        self._reply(200, {
            "id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": chars // 4, "completion_tokens": 11, "total_tokens": chars // 4 + 11},
        })  # fmt: skip


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def db(tmp_path):
    return store.open_db(tmp_path / "db.sqlite")


def url(server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_a_call_reaches_the_server_and_is_recorded(server, db):
    backend = OpenAICompatBackend(url(server), api_key="lab-key")
    assert (backend.model, backend.context_length, backend.base_url) == ("served-coder", 4096, url(server) + "/v1")
    answer = Chat(backend, Recorder(db))([Message("user", "Write Add.")], seed=3, temperature=0.2, max_tokens=64, stop=["</s>"])
    assert answer.code == "// seed 3 temperature 0.2\nint f();\n"
    assert (answer.prompt_tokens, answer.completion_tokens, answer.finish_reason) == (2, 11, "stop")
    headers, body = server.requests[-1]
    assert headers["Authorization"] == "Bearer lab-key"
    assert body["model"] == "served-coder" and body["max_tokens"] == 64 and body["stop"] == ["</s>"]
    assert body["messages"] == [{"role": "user", "content": "Write Add."}]
    assert "response_format" not in body
    row = db.execute("SELECT backend, model, seed, temperature, completion_tokens FROM llm_calls").fetchone()
    assert row == ("openai", "served-coder", 3, 0.2, 11)


def test_a_json_schema_becomes_the_response_format(server, db):
    schema = {"type": "object", "properties": {"plan": {"type": "string"}}, "required": ["plan"]}
    Chat(OpenAICompatBackend(url(server)), Recorder(db))([Message("user", "Plan.")], json_schema=schema)
    assert server.requests[-1][1]["response_format"] == {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}


def test_configuration_chooses_the_server(server, db, settings):
    backend = open_backend(f"openai:{url(server)}/v1?model=big-coder&context_length=32768", settings)
    assert (backend.name, backend.model, backend.context_length) == ("openai", "big-coder", 32768)
    Chat(backend, Recorder(db))([Message("user", "hi")])
    assert server.requests[-1][1]["model"] == "big-coder"
    with pytest.raises(LLMError, match="has no option n_ctx"):
        open_backend(f"openai:{url(server)}?n_ctx=5", settings)


def test_a_prompt_over_the_context_fails_or_trims_old_turns(server, db):
    task = [Message("system", "s"), Message("user", "the task " * 10)]
    history = [Message("assistant", "a" * 150), Message("user", "u" * 150), Message("assistant", "b" * 10), Message("user", "fix it")]
    backend = OpenAICompatBackend(url(server))
    with pytest.raises(ContextOverflow, match="refused the prompt as too long: This model's maximum context length is 400"):
        Chat(backend, Recorder(db))(task + history)
    answer = Chat(backend, Recorder(db), on_overflow="trim")(task + history)
    assert answer.trimmed_messages == 2
    assert [m.content for m in answer.messages] == ["s", "the task " * 10, "b" * 10, "fix it"]
    assert server.requests[-1][1]["messages"] == [m.to_dict() for m in answer.messages]
    # the task itself is never cut: when it alone is too long, the call fails
    with pytest.raises(ContextOverflow):
        Chat(backend, Recorder(db), on_overflow="trim")([Message("user", "x" * 500)])


def test_server_errors_are_one_clear_line(server, db):
    backend = OpenAICompatBackend(url(server), model="m")
    with pytest.raises(LLMError, match="answered HTTP 500: the GPU caught fire"):
        Chat(backend, Recorder(db))([Message("user", "boom")])
    port = server.server_address[1]
    server.shutdown()
    server.server_close()
    with pytest.raises(LLMError, match=f"cannot reach http://127.0.0.1:{port}/v1/chat/completions"):
        Chat(OpenAICompatBackend(f"http://127.0.0.1:{port}", model="m"), Recorder(db))([Message("user", "x")])
    assert db.execute("SELECT count(*) FROM llm_calls").fetchone()[0] == 0  # failed calls leave no row
