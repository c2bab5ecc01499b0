"""An OpenAI-style chat-completions server on 127.0.0.1 for the prompt enhancer's tests: it records
what it is sent and answers as told (a rewrite, an error status, an odd body)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

KEY = "sk-enhancer-test-key-5150"
REWRITE = 'A tabby cat asleep on a sunlit windowsill, a sign reading "NAP TIME" above it, soft morning light'


@dataclass
class ChatServer:
    """An OpenAI-style `/v1/chat/completions` on 127.0.0.1 that records what it is sent."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    answer: Any = None

    def reply(self) -> tuple[int, bytes]:
        if self.status != 200:
            return self.status, json.dumps({"error": {"message": "the model is loading"}}).encode()
        body = self.answer if self.answer is not None else {"choices": [{"message": {"content": REWRITE}}]}
        return 200, json.dumps(body).encode()


@contextmanager
def chat_server() -> Iterator[ChatServer]:
    server_state = ChatServer()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            server_state.requests.append(
                {
                    "path": self.path,
                    "authorization": self.headers.get("Authorization"),
                    "body": json.loads(self.rfile.read(length)),
                }
            )
            status, body = server_state.reply()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server_state
    finally:
        server.shutdown()
        server.server_close()
