"""An OpenAI-compatible chat server on loopback whose behaviour a test switches while it runs.

Modes: `ok` (answers at once, streamed or not), `silent` (accepts the request and never
answers: a hung vLLM), `trickle` (starts a streamed answer and sends one token every
`interval_s`: a vLLM swapping to disk), `down` (refuses: the connection is closed at once).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ANSWER = "Drink plenty of fluids and rest [1]."


class FaultyLLMServer:
    """Serve /v1/chat/completions and /v1/models in a thread; `mode` may change at any time."""

    def __init__(self, mode: str = "ok", interval_s: float = 1.0) -> None:
        self.mode, self.interval_s = mode, interval_s
        self.streams = 0  # streamed answers begun
        self._stopping = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                self._json({"object": "list", "data": [{"id": "fake", "object": "model"}]})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                mode = server.mode
                if mode == "down":
                    self.close_connection = True
                    return
                if mode == "silent":
                    server._stopping.wait()  # holds the connection, never answers
                    return
                if not body.get("stream"):
                    message = {"role": "assistant", "content": ANSWER}
                    self._json(
                        {
                            "id": "c1",
                            "object": "chat.completion",
                            "created": int(time.time()),
                            "model": "fake",
                            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                        }
                    )
                    return
                server.streams += 1
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                words = ANSWER.split(" ")
                for n in range(10_000):
                    if mode == "ok" and n >= len(words):
                        break
                    word = words[n % len(words)] + " "
                    if not self._chunk(_event({"content": word})):
                        return
                    if mode == "trickle" and server._stopping.wait(server.interval_s):
                        return
                self._chunk(_event({}, finish="stop"))
                self._chunk(b"data: [DONE]\n\n")
                self._chunk(b"")

            def _chunk(self, data: bytes) -> bool:
                try:
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()
                except OSError:
                    return False  # the client gave up
                return True

            def _json(self, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()


def _event(delta: dict[str, Any], finish: str | None = None) -> bytes:
    chunk = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": "fake",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(chunk)}\n\n".encode()
