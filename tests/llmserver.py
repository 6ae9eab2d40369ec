"""An OpenAI-compatible chat-completions server on 127.0.0.1, for the LLM judge's tests.

It answers by a fixed rule: "Yes" when the caption has at least 6 words, else "No" (the caption is
cut out of the prompt by the template it was filled into). It records every request, the most
requests ever in flight at once, and can inject faults per caption: a caption listed in `faults`
gets those failures, in order, on its first requests, then normal answers.

    faults = {"A red bicycle": ["429", "500", "timeout", "malformed", "garbage"]}

`models_reply` makes GET /v1/models answer 200 with something other than OpenAI's model list, as
a web UI or proxy at base_url would: "html" (a page), "badjson" (truncated JSON), "shape" ({"data":
"x"}), "noid" (models without ids); or any bytes given.

Run it by hand for the shipped recipe (recipes/curation_tiny.yaml):

    python tests/llmserver.py --port 8011
"""
from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from synthvlm_builder.curation.steps.llm_judge import JUDGE_PROMPT as DEFAULT_TEMPLATE


# GET /v1/models replies that are not an OpenAI model list: (content type, body).
MODELS_REPLIES = {
    "html": ("text/html; charset=utf-8", b"<!DOCTYPE html><html><head><title>Open WebUI</title></head>"
                                         b"<body>\x1b]0;pwned\x07" + b"<div>" * 40 + b"</body></html>"),
    "badjson": ("application/json", b'{"object": "list", "data": [{"id": "tiny-ju'),
    "shape": ("application/json", b'{"data": "x"}'),
    "noid": ("application/json", b'{"object": "list", "data": [{"name": "tiny-judge"}]}'),
}


def rule(caption: str) -> str:
    return "Yes" if len(caption.split()) >= 6 else "No"


class LlmServer:
    def __init__(self, model: str = "tiny-judge", template: str = DEFAULT_TEMPLATE, faults: dict | None = None,
                 delay: float = 0.0, timeout_sleep: float = 2.0, api_key: str | None = None, port: int = 0,
                 models_reply: str | bytes | None = None):
        self.model, self.template, self.delay, self.timeout_sleep = model, template, delay, timeout_sleep
        self.models_reply = models_reply
        self.api_key = api_key
        self.faults = {k: list(v) for k, v in (faults or {}).items()}
        self.lock = threading.Lock()
        self.requests: list[str] = []       # captions asked, in arrival order
        self.model_lists = 0                # GET /v1/models
        self.in_flight = self.max_in_flight = 0
        self.auth_headers: set[str] = set()
        self.errors: list[str] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> "LlmServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def caption_of(self, prompt: str) -> str:
        head, _, tail = self.template.partition("{caption}")
        if not (prompt.startswith(head) and prompt.endswith(tail)):
            raise ValueError(f"prompt does not follow the template: {prompt!r}")
        return prompt[len(head):len(prompt) - len(tail)]

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, body, content_type: str = "application/json") -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self) -> bool:
                got = self.headers.get("Authorization", "")
                with server.lock:
                    server.auth_headers.add(got)
                if server.api_key and got != f"Bearer {server.api_key}":
                    self._send(401, {"error": {"message": "bad key", "type": "invalid_request_error"}})
                    return False
                return True

            def do_GET(self):
                if self.path.rstrip("/") != "/v1/models":
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                if self._authorized():
                    with server.lock:
                        server.model_lists += 1
                    odd = MODELS_REPLIES.get(server.models_reply, server.models_reply)
                    if odd is not None:
                        return self._send(200, odd[1] if isinstance(odd, tuple) else odd,
                                          odd[0] if isinstance(odd, tuple) else "text/html")
                    self._send(200, {"object": "list", "data": [{"id": server.model, "object": "model",
                                                                  "owned_by": "test"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                if not self._authorized():
                    return
                try:
                    caption = server.caption_of(body["messages"][-1]["content"])
                except (KeyError, IndexError, ValueError) as e:
                    with server.lock:
                        server.errors.append(str(e))
                    return self._send(400, {"error": {"message": str(e)}})
                if body.get("model") != server.model:
                    return self._send(404, {"error": {"message": f"model {body.get('model')!r} not served"}})
                with server.lock:
                    server.requests.append(caption)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    fault = next((q.pop(0) for k, q in server.faults.items() if k in caption and q), None)
                try:
                    time.sleep(server.delay)
                    self._answer(caption, fault)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout fault)
                    pass
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def _answer(self, caption: str, fault: str | None) -> None:
                if fault in ("429", "500", "503"):
                    return self._send(int(fault), {"error": {"message": f"injected {fault}"}})
                if fault == "timeout":
                    time.sleep(server.timeout_sleep)
                if fault == "malformed":  # 200, but no answer in it
                    return self._send(200, {"id": "x", "object": "chat.completion", "created": 0,
                                            "model": server.model, "choices": []})
                if fault == "garbage":  # 200, not even JSON
                    return self._send(200, b"<html>proxy error</html>", "text/html")
                self._send(200, {
                    "id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()), "model": server.model,
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": rule(caption)}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

        return Handler


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=8011)
    p.add_argument("--model", default="tiny-judge")
    args = p.parse_args()
    with LlmServer(model=args.model, port=args.port) as srv:
        print(f"serving {args.model} at {srv.base_url} (Ctrl-C stops)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
