"""A minimal Telegram Bot API server on loopback: enough for long polling and sendMessage.

It speaks Telegram's JSON shapes, so python-telegram-bot's own HTTP code runs against it.
The Telegram issue grows it (webhooks, edits, 429s, callback queries, ...).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from tests.servers import free_port

BOT = {
    "id": 4242,
    "is_bot": True,
    "first_name": "CareBot",
    "username": "carebot_test_bot",
    "can_join_groups": True,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}


class BotAPIServer:
    """Queue updates for the bot; record every method call it makes."""

    def __init__(self) -> None:
        self.port = free_port()
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._updates: list[dict[str, Any]] = []
        self._next_update = 1
        self._next_message = 1000
        self._cond = threading.Condition()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length).decode()
                if "json" in (self.headers.get("content-type") or ""):
                    params = json.loads(raw or "{}")
                else:
                    params = {k: v[0] for k, v in parse_qs(raw).items()}
                method = self.path.rsplit("/", 1)[-1]
                body = json.dumps(server.answer(method, params)).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST

        self._http = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        with self._cond:
            self.calls.append((method, params))
            self._cond.notify_all()
        if method == "getMe":
            return {"ok": True, "result": BOT}
        if method in ("deleteWebhook", "setMyCommands", "sendChatAction"):
            return {"ok": True, "result": True}
        if method == "getUpdates":
            return {"ok": True, "result": self._poll(params)}
        if method == "sendMessage":
            self._next_message += 1
            return {
                "ok": True,
                "result": {
                    "message_id": self._next_message,
                    "date": int(time.time()),
                    "chat": {"id": int(params["chat_id"]), "type": "private"},
                    "from": BOT,
                    "text": params.get("text", ""),
                },
            }
        return {"ok": False, "error_code": 404, "description": "Not Found: method not found"}

    def _poll(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        deadline = time.monotonic() + min(float(params.get("timeout") or 0), 1.0)
        with self._cond:
            while True:
                ready = [u for u in self._updates if u["update_id"] >= offset]
                if ready or time.monotonic() >= deadline:
                    return ready
                self._cond.wait(max(0.0, deadline - time.monotonic()))

    def send_update(self, message: dict[str, Any]) -> None:
        """Queue a message update as if a user had written to the bot."""
        with self._cond:
            self._updates.append({"update_id": self._next_update, "message": message})
            self._next_update += 1
            self._cond.notify_all()

    def sent(self) -> list[dict[str, Any]]:
        """Return the parameters of every sendMessage call so far."""
        return [p for m, p in self.calls if m == "sendMessage"]

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()


def private_message(message_id: int, user_id: int, **content: Any) -> dict[str, Any]:
    """A private-chat message from a user, in Telegram's shape."""
    user = {"id": user_id, "is_bot": False, "first_name": "Pat", "language_code": "en"}
    return {
        "message_id": message_id,
        "date": int(time.time()),
        "from": user,
        "chat": {"id": user_id, "type": "private", "first_name": "Pat"},
        **content,
    }
