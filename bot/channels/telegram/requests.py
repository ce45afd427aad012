"""The HTTP side of the Bot API client, through python-telegram-bot's `BaseRequest` extension.

PTB fails a whole getUpdates batch on one update it cannot parse and asks again from the same
offset, forever. `TolerantUpdatesRequest` replaces such an update by an empty one with its id
before PTB reads the batch, so polling moves on (the update is logged by id, never by content).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from telegram import Update
from telegram.request import BaseRequest, HTTPXRequest, RequestData

logger = logging.getLogger(__name__)


class TolerantUpdatesRequest(HTTPXRequest):
    """HTTPXRequest whose getUpdates answers never hold an unreadable update."""

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = BaseRequest.DEFAULT_NONE,
        write_timeout: Any = BaseRequest.DEFAULT_NONE,
        connect_timeout: Any = BaseRequest.DEFAULT_NONE,
        pool_timeout: Any = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        status, body = await super().do_request(
            url, method, request_data, read_timeout, write_timeout, connect_timeout, pool_timeout
        )
        if status != 200 or not url.endswith("/getUpdates"):
            return status, body
        try:
            answer = json.loads(body)
        except ValueError:
            return status, body  # PTB reports a malformed answer itself
        result = answer.get("result") if isinstance(answer, dict) else None
        if not isinstance(result, list):
            return status, body
        answer["result"] = [_readable(raw) for raw in result]
        return status, json.dumps(answer).encode()


def _readable(raw: Any) -> Any:
    try:
        Update.de_json(raw, None)
        return raw
    except Exception as exc:
        update_id = raw.get("update_id", -1) if isinstance(raw, dict) else -1
        logger.warning("unreadable telegram update %s skipped: %s", update_id, type(exc).__name__)
        return {"update_id": update_id}
