"""A local Telegram Bot API server for end-to-end tests.

python-telegram-bot's real HTTP code talks to it (``base_url=f"{server.base_url}/bot"``), so a
test exercises the same requests, JSON shapes and error handling the bot meets in production.
What it emulates, following https://core.telegram.org/bots/api and TDLib's behaviour:

* ``/bot<token>/<method>`` over HTTP/1.1 keep-alive; parameters from the query string, a JSON
  body or an urlencoded body (JSON-typed values such as ``reply_markup`` decoded); method names
  are case-insensitive. Answers use Telegram's shapes: ``{"ok": true, "result": ...}`` or
  ``{"ok": false, "error_code": N, "description": "...", "parameters": {...}}`` with the HTTP
  status equal to ``error_code``.
* Updates: ``getUpdates`` with real offset semantics (confirmed updates are forgotten, negative
  offsets, ``limit``, long polling capped at 1 s, 409 when a webhook is set or when a newer
  ``getUpdates`` takes over) and ``allowed_updates``; or webhooks: ``setWebhook`` makes a
  background thread POST queued updates, in order, one at a time, with the
  ``X-Telegram-Bot-Api-Secret-Token`` header.
* Messages: ``sendMessage`` / ``editMessageText`` / ``editMessageReplyMarkup`` /
  ``deleteMessage`` with Telegram's validation: HTML (TDLib's tag set and error texts),
  MarkdownV2 and Markdown parsing into text + entities, trimming, the 4096 UTF-16 limit, "message
  is not modified", inline keyboard checks. Every message the bot sent is kept with its edit
  history in :attr:`BotAPIServer.messages`.
* Callback queries (valid once, like Telegram), bot commands per scope and language, chat menu
  button, descriptions, ``getChat``, ``getFile`` and file downloads.
* Fault injection: :meth:`BotAPIServer.fail_next` (429 with ``retry_after`` by default) and
  :meth:`BotAPIServer.drop_connection_next` (the socket closes before anything happens).

Deliberate differences from Telegram: webhooks may use plain ``http://`` URLs on any port;
multipart uploads are accepted for ``sendDocument`` only (the file is kept in
:attr:`BotAPIServer.documents`); and by default (``strict_html=True``) a bare ``&`` or an unknown
named entity such as ``&nbsp;`` is rejected, although TDLib keeps such text literally (the Bot API
documentation says they must be escaped).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from tests.servers import free_port

JSON = dict[str, Any]

BOT: JSON = {
    "id": 4242,
    "is_bot": True,
    "first_name": "CareBot",
    "username": "carebot_test_bot",
    "can_join_groups": True,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
    "can_connect_to_business": False,
    "has_main_web_app": False,
}

MAX_TEXT_UTF16 = 4096
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"
WEBHOOK_CONFLICT = (
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete "
    "the webhook first"
)
POLL_CONFLICT = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is "
    "running"
)

# fmt: off
# Parameters whose form-encoded value is JSON (python-telegram-bot json.dumps them).
_JSON_PARAMS = frozenset({
    "reply_markup", "commands", "reply_parameters", "link_preview_options", "allowed_updates",
    "scope", "entities", "caption_entities", "menu_button", "media", "results", "options",
    "permissions", "reaction", "message_ids"
})
# String parameters that must never be JSON-decoded, whatever they look like.
_STRING_PARAMS = frozenset({
    "text", "caption", "data", "description", "short_description", "name", "title",
    "question", "url", "secret_token", "callback_query_id", "inline_message_id",
    "language_code", "parse_mode", "action", "emoji", "file_id"
})
_UPDATE_TYPES_EXCLUDED_BY_DEFAULT = frozenset(
    {"chat_member", "message_reaction", "message_reaction_count"}
)
_CHAT_ACTIONS = frozenset({
    "typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice",
    "upload_document", "choose_sticker", "find_location", "record_video_note",
    "upload_video_note"
})
_INLINE_BUTTON_ACTIONS = (
    "url", "callback_data", "web_app", "login_url", "switch_inline_query",
    "switch_inline_query_current_chat", "switch_inline_query_chosen_chat", "copy_text",
    "callback_game", "pay",
)
_SCOPE_TYPES = frozenset({
    "default", "all_private_chats", "all_group_chats", "all_chat_administrators", "chat",
    "chat_administrators", "chat_member"
})
# fmt: on
_SPACES = " \t\r\n\v\f\x00"


class ApiError(Exception):
    """An error answer: HTTP status ``code`` and Telegram's error body."""

    def __init__(self, code: int, description: str, parameters: JSON | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters

    def body(self) -> JSON:
        body: JSON = {"ok": False, "error_code": self.code, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def bad_request(reason: str) -> ApiError:
    return ApiError(400, f"Bad Request: {reason}")


class EntityParseError(ValueError):
    """Markup Telegram refuses; the message is TDLib's reason (after "can't parse entities:")."""


# --------------------------------------------------------------------------------------------
# Text formatting: HTML, MarkdownV2 and Markdown into (text, entities), like TDLib.
# --------------------------------------------------------------------------------------------


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram's limits and entity offsets."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _byte_offset(source: str, index: int) -> int:
    return len(source[:index].encode("utf-8", "surrogatepass"))


@dataclass
class _Open:
    tag: str
    start: int  # UTF-16 offset in the output
    index: int  # index in the source (for byte offsets in errors)
    parts: int  # number of output parts when opened (to read the entity's text)
    order: int
    entity: JSON | None = None
    language: str = ""
    has_href: bool = True
    code_child: tuple[JSON, int, int, str] | None = None


# TDLib's order for entities with the same offset and length (MessageEntity::get_type_priority).
_PRIORITY = {
    "blockquote": 0,
    "expandable_blockquote": 0,
    "pre": 11,
    "code": 20,
    "text_link": 49,
    "text_mention": 49,
    "bold": 90,
    "italic": 91,
    "underline": 92,
    "strikethrough": 93,
    "spoiler": 94,
    "custom_emoji": 99,
}


@dataclass
class _Output:
    parts: list[str] = field(default_factory=list)
    u16: int = 0
    entities: list[tuple[int, JSON]] = field(default_factory=list)
    opened: int = 0

    def emit(self, text: str) -> None:
        if text:
            self.parts.append(text)
            self.u16 += utf16_len(text)

    def next_order(self) -> int:
        self.opened += 1
        return self.opened

    def add(self, start: int, entity: JSON | None, order: int) -> JSON | None:
        length = self.u16 - start
        if entity is None or length <= 0:
            return None
        placed = {"type": entity["type"], "offset": start, "length": length}
        placed.update({k: v for k, v in entity.items() if k != "type"})
        self.entities.append((order, placed))
        return placed

    def text_since(self, parts: int) -> str:
        return "".join(self.parts[parts:])

    def result(self) -> tuple[str, list[JSON]]:
        ordered = sorted(
            self.entities,
            key=lambda oe: (
                oe[1]["offset"],
                -oe[1]["length"],
                _PRIORITY.get(oe[1]["type"], 50) - (oe[1]["type"] == "pre" and "language" in oe[1]),
                oe[0],
            ),
        )
        return "".join(self.parts), [entity for _, entity in ordered]


_DOMAIN = re.compile(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(:\d{1,5})?")


def _normalize_url(url: str) -> str | None:
    """TDLib-like link check: a normalized http(s)/tg/ton URL, or None if it is no link."""
    if not url or any(ch.isspace() for ch in url):
        return None
    scheme_match = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):(//)?", url)
    if scheme_match and (scheme_match.group(2) or scheme_match.group(1).lower() in ("tg", "ton")):
        scheme = scheme_match.group(1).lower()
        rest = url[scheme_match.end() :]
        if scheme in ("tg", "ton"):
            return f"{scheme}://{rest}" if rest else None
        if scheme not in ("http", "https"):
            return None
    else:
        scheme, rest = "http", url
    host_end = min([i for i in (rest.find(c) for c in "/?#") if i >= 0] or [len(rest)])
    host, path = rest[:host_end], rest[host_end:]
    no_scheme = scheme_match is None or not scheme_match.group(2)
    if no_scheme and not _DOMAIN.fullmatch(host):
        return None
    if not host:
        return None
    if not path.startswith("/"):
        path = "/" + path
    return f"{scheme}://{host}{path}"


def _link_entity(url: str) -> JSON | None:
    mention = re.fullmatch(r"(?i)tg:(?://)?user\?id=(\d+)", url.strip())
    if mention:
        user = {"id": int(mention.group(1)), "is_bot": False, "first_name": ""}
        return {"type": "text_mention", "user": user}
    normalized = _normalize_url(url)
    return None if normalized is None else {"type": "text_link", "url": normalized}


_HTML_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "span": "spoiler",
    "tg-spoiler": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_HTML_ENTITY = re.compile(r"&(?:#([0-9]+)|#[xX]([0-9a-fA-F]+)|([A-Za-z][A-Za-z0-9]*));?")
_UNQUOTED_VALUE = re.compile(r"""=\s*([^\s"'>][^\s>]*)""")
_NAME_TOKEN = re.compile(r"[A-Za-z0-9.-]*")
_QUOTED = re.compile(r""""[^"]*"|'[^']*'""")
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_SURROGATE_ERROR = (
    "Text contains invalid Unicode characters after decoding HTML entities, check for unmatched "
    "surrogate code units"
)


def _decode_charref(number: int) -> str | None:
    if 0xD800 <= number <= 0xDFFF:
        raise EntityParseError(_SURROGATE_ERROR)
    if number == 0 or number >= 0x10FFFF:
        return None
    return chr(number)


class _TelegramHTML(HTMLParser):
    """Telegram's HTML subset on top of the stdlib tokenizer, with TDLib's error messages."""

    def __init__(self, source: str, *, strict: bool) -> None:
        super().__init__(convert_charrefs=False)
        self.source = source
        self.strict = strict
        self.out = _Output()
        self.stack: list[_Open] = []
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", source)]

    # positions ---------------------------------------------------------------------------
    def _index(self) -> int:
        line, column = self.getpos()
        return self._line_starts[line - 1] + column

    def _at(self, index: int) -> int:
        return _byte_offset(self.source, index)

    def _tag_error(self, index: int) -> EntityParseError:
        """What TDLib says about a '<' at ``index`` that does not open a supported tag."""
        at = self._at(index)
        rest = self.source[index + 1 :]
        if rest.startswith("/"):
            if not self.stack:
                return EntityParseError(f"Unexpected end tag at byte offset {at}")
            return EntityParseError(f"Unclosed end tag at byte offset {at}")
        name = re.match(r"[^\s>]*", rest)
        assert name is not None
        if name.end() == len(rest):
            return EntityParseError(f"Unclosed start tag at byte offset {at}")
        return EntityParseError(
            f'Unsupported start tag "{name.group(0).lower()}" at byte offset {at}'
        )

    # text ----------------------------------------------------------------------------------
    def handle_data(self, data: str) -> None:
        base = self._index()
        i = 0
        while i < len(data):
            stops = [j for j in (data.find("<", i), data.find("&", i)) if j >= 0]
            if not stops:
                self.out.emit(data[i:])
                return
            j = min(stops)
            self.out.emit(data[i:j])
            if data[j] == "<":
                raise self._tag_error(base + j)
            match = _HTML_ENTITY.match(data, j)
            decoded = self._decode(match) if match else None
            if decoded is None or match is None:
                if self.strict:
                    raise EntityParseError(
                        f"Character '&' at byte offset {self._at(base + j)} must be written "
                        "as &amp;"
                    )
                self.out.emit("&")
                i = j + 1
                continue
            self.out.emit(decoded)
            i = match.end()

    def _decode(self, match: re.Match[str]) -> str | None:
        if match.group(1) is not None:
            return _decode_charref(int(match.group(1))) if len(match.group(1)) < 8 else None
        if match.group(2) is not None:
            return _decode_charref(int(match.group(2), 16)) if len(match.group(2)) < 7 else None
        return _NAMED_ENTITIES.get(match.group(3))

    def handle_entityref(self, name: str) -> None:
        index = self._index()
        end = index + 1 + len(name)
        has_semicolon = self.source[end : end + 1] == ";"
        if name in _NAMED_ENTITIES:
            self.out.emit(_NAMED_ENTITIES[name])
            return
        if self.strict:
            raise EntityParseError(
                f'Unsupported HTML entity "&{name};" at byte offset {self._at(index)}: only &lt;, '
                "&gt;, &amp;, &quot; and numeric entities are supported"
            )
        self.out.emit(f"&{name}" + (";" if has_semicolon else ""))

    def handle_charref(self, name: str) -> None:
        index = self._index()
        digits = name[1:] if name[:1] in "xX" else name
        try:
            number = int(digits, 16 if name[:1] in "xX" else 10)
        except ValueError:
            number = 0
        decoded = _decode_charref(number) if len(digits) < 8 else None
        if decoded is None:
            if self.strict:
                raise EntityParseError(
                    f'Invalid numeric HTML entity "&#{name};" at byte offset {self._at(index)}'
                )
            end = index + 2 + len(name)
            self.out.emit(f"&#{name}" + (";" if self.source[end : end + 1] == ";" else ""))
            return
        self.out.emit(decoded)

    # tags ----------------------------------------------------------------------------------
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        index = self._index()
        at = self._at(index)
        kind = _HTML_TAGS.get(tag)
        if kind is None:
            raise EntityParseError(f'Unsupported start tag "{tag}" at byte offset {at}')
        # Quoted values become same-length placeholders so that only unquoted ones are checked.
        raw = _QUOTED.sub(lambda m: "q" * len(m.group(0)), self.get_starttag_text() or "")
        for token in _UNQUOTED_VALUE.finditer(raw):
            if not _NAME_TOKEN.fullmatch(token.group(1).rstrip("/")):
                # TDLib: unquoted attribute values are name tokens (letters, digits, '.', '-')
                at_token = self._at(index + token.start(1))
                raise EntityParseError(f"Unexpected end of name token at byte offset {at_token}")
        values = {name: value or "" for name, value in attrs}
        opened = _Open(tag, self.out.u16, index, len(self.out.parts), self.out.next_order())
        opened.entity = {"type": kind}
        if tag == "span" and values.get("class") != "tg-spoiler":
            raise EntityParseError(f'Tag "span" must have class "tg-spoiler" at byte offset {at}')
        if tag == "a":
            opened.has_href = "href" in values
            opened.entity = _link_entity(values["href"]) if opened.has_href else None
        elif tag == "blockquote" and "expandable" in values:
            opened.entity = {"type": "expandable_blockquote"}
        elif tag == "tg-emoji":
            emoji_id = values.get("emoji-id", "")
            if not emoji_id.isdigit():
                raise EntityParseError(
                    f'Tag "tg-emoji" must have attribute "emoji-id" at byte offset {at}'
                )
            opened.entity = {"type": "custom_emoji", "custom_emoji_id": emoji_id}
        elif tag == "code":
            css = values.get("class", "")
            if css.startswith("language-"):
                opened.language = css[len("language-") :]
        self.stack.append(opened)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        at = self._at(self._index())
        raise EntityParseError(f'Unsupported start tag "{tag}/" at byte offset {at}')

    def handle_endtag(self, tag: str) -> None:
        index = self._index()
        at = self._at(index)
        if not self.stack:
            raise EntityParseError(f"Unexpected end tag at byte offset {at}")
        top = self.stack[-1]
        if top.tag != tag:
            raise EntityParseError(
                f'Unmatched end tag at byte offset {at}, expected "</{top.tag}>", found "</{tag}>"'
            )
        self.stack.pop()
        entity = top.entity
        if top.tag == "a" and not top.has_href:
            entity = _link_entity(self.out.text_since(top.parts))
        if top.tag == "pre" and top.code_child is not None:
            child, start, end, language = top.code_child
            if start == top.start and end == self.out.u16:
                # <pre><code class="language-x">...</code></pre> is one pre entity with a language
                self.out.entities = [(o, e) for o, e in self.out.entities if e is not child]
                entity = {"type": "pre", "language": language}
        placed = self.out.add(top.start, entity, top.order)
        parent = self.stack[-1] if self.stack else None
        if top.tag == "code" and top.language and placed and parent and parent.tag == "pre":
            parent.code_child = (placed, top.start, self.out.u16, top.language)

    # everything else is an unsupported tag for Telegram -------------------------------------
    def handle_comment(self, data: str) -> None:
        raise self._tag_error(self._index())

    def handle_decl(self, decl: str) -> None:
        raise self._tag_error(self._index())

    def handle_pi(self, data: str) -> None:
        raise self._tag_error(self._index())

    def unknown_decl(self, data: str) -> None:
        raise self._tag_error(self._index())

    def parse(self) -> tuple[str, list[JSON]]:
        self.feed(self.source)
        self.close()
        if self.stack:
            raise EntityParseError(
                f'Can\'t find end tag corresponding to start tag "{self.stack[-1].tag}"'
            )
        return self.out.result()


def parse_html(html: str, *, strict: bool = True) -> tuple[str, list[JSON]]:
    """Telegram's HTML parse mode: (text, entities) before trimming, or EntityParseError."""
    return _TelegramHTML(html, strict=strict).parse()


_MD2_RESERVED = "_*[]()~`>#+-=|{}.!"
_MD2_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "code": "Code",
    "pre": "Pre",
    "text_link": "TextUrl",
    "custom_emoji": "CustomEmoji",
}
_TG_EMOJI = re.compile(r"(?i)tg://emoji/?\?(?:[^#]*&)?id=([1-9][0-9]*)(?:&[^#]*)?(?:#.*)?")
_MD_SPACE = " \t\r\n\x00\v"


def _reserved(char: str) -> EntityParseError:
    return EntityParseError(
        f"Character '{char}' is reserved and must be escaped with the preceding '\\'"
    )


def _md2_is_end(kind: str, src: str, i: int) -> bool:
    c, nxt = src[i], src[i + 1 : i + 2]
    return {
        "bold": c == "*",
        "italic": c == "_" and nxt != "_",
        "underline": c == "_" and nxt == "_",
        "strikethrough": c == "~",
        "spoiler": c == "|" and nxt == "|",
        "code": c == "`",
        "pre": src.startswith("```", i),
        "text_link": c == "]",
        "custom_emoji": c == "]",
    }[kind]


def _skip_pre_header(src: str, i: int) -> tuple[int, str]:
    """After an opening ```: the optional language and one leading newline."""
    language = ""
    end = i
    while end < len(src) and src[end] not in _MD_SPACE and src[end] != "`":
        end += 1
    if end != i and end < len(src) and src[end] != "`":
        language, i = src[i:end], end
    if i < len(src) and src[i] in "\r\n":
        if i + 1 < len(src) and src[i + 1] in "\r\n" and src[i] != src[i + 1]:
            i += 2
        else:
            i += 1
    return i, language


def _md_url(src: str, i: int) -> tuple[str, int]:
    """Read a MarkdownV2 link target starting at ``i`` (after '('); returns (url, index of ')')."""
    chars: list[str] = []
    begin = i
    while i < len(src) and src[i] != ")":
        if src[i] == "\\" and i + 1 < len(src) and 0 < ord(src[i + 1]) <= 126:
            chars.append(src[i + 1])
            i += 2
            continue
        chars.append(src[i])
        i += 1
    if i >= len(src):
        raise EntityParseError(f"Can't find end of a URL at byte offset {_byte_offset(src, begin)}")
    return "".join(chars), i


def _md2_quote_marker(src: str, i: int) -> int:
    """Index of a trailing '||' (expandable mark) if the quoted line at ``i`` is the last one."""
    ends = [j for j in (src.find("\r", i), src.find("\n", i)) if j >= 0]
    line_end = min(ends) if ends else len(src)
    if line_end - 2 < i or src[line_end - 2 : line_end] != "||":
        return -1
    newline = src.find("\n", line_end)
    if newline >= 0 and src.startswith(">", newline + 1):
        return -1
    return line_end - 2


def parse_markdown_v2(src: str) -> tuple[str, list[JSON]]:
    """Telegram's MarkdownV2 parse mode (TDLib's algorithm), or EntityParseError."""
    out = _Output()
    stack: list[_Open] = []
    quote: _Open | None = None
    quote_depth = 0
    expandable = False
    marker = quote_mark = -1
    n = len(src)
    i = 0

    def unfinished(opened: _Open) -> EntityParseError:
        at = _byte_offset(src, opened.index)
        return EntityParseError(
            f"Can't find end of {_MD2_NAMES[opened.tag]} entity at byte offset {at}"
        )

    def close_quote() -> None:
        assert quote is not None
        if len(stack) > quote_depth:
            raise unfinished(stack[-1])
        kind = "expandable_blockquote" if expandable else "blockquote"
        out.add(quote.start, {"type": kind}, quote.order)

    while i < n:
        in_code = bool(stack) and stack[-1].tag in ("code", "pre")
        c = src[i]
        emitted = len(out.parts)
        line_start = (not emitted or out.parts[-1][-1] in "\r\n") and emitted != quote_mark
        if not in_code and quote is not None and i > 0 and src[i - 1] == "\n" and c != ">":
            close_quote()
            quote = None
        if c == ">" and not in_code and line_start:
            # A quote starts where '>' precedes any text of a line ("**>" is an empty bold first).
            if quote is None:
                quote = _Open("blockquote", out.u16, i, len(out.parts), out.next_order())
                quote_depth, expandable = len(stack), False
            i += 1
            marker, quote_mark = _md2_quote_marker(src, i), emitted
            continue
        if i == marker and quote is not None and not (stack and stack[-1].tag == "spoiler"):
            expandable = True
            i += 2
            continue
        if c == "\\" and i + 1 < n and 0 < ord(src[i + 1]) <= 126:
            out.emit(src[i + 1])
            i += 2
            continue
        if c not in ("`" if in_code else _MD2_RESERVED):
            out.emit(c)
            i += 1
            continue
        if stack and _md2_is_end(stack[-1].tag, src, i):
            opened = stack.pop()
            entity: JSON | None = {"type": opened.tag}
            if opened.tag in ("underline", "spoiler"):
                i += 2
            elif opened.tag == "pre":
                i += 3
                if opened.language:
                    entity = {"type": "pre", "language": opened.language}
            elif opened.tag == "text_link":
                if src[i + 1 : i + 2] == "(":
                    url, i = _md_url(src, i + 2)
                else:
                    url = out.text_since(opened.parts)
                entity = _link_entity(url)
                i += 1
            elif opened.tag == "custom_emoji":
                if src[i + 1 : i + 2] != "(":
                    raise EntityParseError("The entity must contain a tg://emoji or tg://time URL")
                url, i = _md_url(src, i + 2)
                emoji = _TG_EMOJI.fullmatch(url)
                if emoji is None:
                    raise EntityParseError("Invalid tg://emoji or tg://time URL specified")
                entity = {"type": "custom_emoji", "custom_emoji_id": emoji.group(1)}
                i += 1
            else:
                i += 1
            out.add(opened.start, entity, opened.order)
            continue
        begin, nxt, language = i, src[i + 1 : i + 2], ""
        if c == "_":
            kind = "underline" if nxt == "_" else "italic"
            i += 2 if nxt == "_" else 1
        elif c in "*~[":
            kind = {"*": "bold", "~": "strikethrough", "[": "text_link"}[c]
            i += 1
        elif c == "|" and nxt == "|":
            kind, i = "spoiler", i + 2
        elif c == "!" and nxt == "[":
            kind, i = "custom_emoji", i + 2
        elif c == "`" and src.startswith("```", i):
            kind = "pre"
            i, language = _skip_pre_header(src, i + 3)
        elif c == "`":
            kind, i = "code", i + 1
        else:
            raise _reserved(c)
        opened = _Open(kind, out.u16, begin, len(out.parts), out.next_order(), language=language)
        stack.append(opened)
    if stack:
        raise unfinished(stack[-1])
    if quote is not None:
        close_quote()
    return out.result()


def parse_markdown(src: str) -> tuple[str, list[JSON]]:
    """Telegram's legacy Markdown parse mode, or EntityParseError."""
    out = _Output()
    n = len(src)
    i = 0
    while i < n:
        c = src[i]
        if c == "\\" and i + 1 < n and src[i + 1] in "_*`[":
            out.emit(src[i + 1])
            i += 2
            continue
        if c not in "_*`[":
            out.emit(c)
            i += 1
            continue
        begin, end_char, is_pre, language = i, ("]" if c == "[" else c), False, ""
        i += 1
        if c == "`" and src.startswith("``", i):
            is_pre = True
            i, language = _skip_pre_header(src, i + 2)
        start, parts, order = out.u16, len(out.parts), out.next_order()
        while i < n and (src[i] != end_char or (is_pre and not src.startswith("```", i))):
            out.emit(src[i])
            i += 1
        if i >= n:
            at = _byte_offset(src, begin)
            raise EntityParseError(f"Can't find end of the entity starting at byte offset {at}")
        entity: JSON | None
        if c == "[":
            url = out.text_since(parts)
            if src[i + 1 : i + 2] == "(":
                close = src.find(")", i + 2)
                if close >= 0:
                    url, i = src[i + 2 : close], close
            entity = _link_entity(url)
        elif is_pre:
            entity = {"type": "pre", "language": language} if language else {"type": "pre"}
            i += 2
        else:
            entity = {"type": {"_": "italic", "*": "bold", "`": "code"}[c]}
        i += 1
        out.add(start, entity, order)
    return out.result()


def _trim(text: str, entities: list[JSON]) -> tuple[str, list[JSON]]:
    """Telegram strips leading and trailing whitespace; entities follow the text."""
    left = text.lstrip(_SPACES)
    lead = utf16_len(text[: len(text) - len(left)])
    body = left.rstrip(_SPACES)
    size = utf16_len(body)
    kept = []
    for entity in entities:
        start = max(entity["offset"] - lead, 0)
        end = min(entity["offset"] + entity["length"] - lead, size)
        if end > start:
            kept.append({**entity, "offset": start, "length": end - start})
    return body, kept


def format_text(
    text: str, parse_mode: str | None, entities: list[JSON] | None = None, *, strict: bool = True
) -> tuple[str, list[JSON]]:
    """What Telegram stores for ``text``: (visible text, entities), or ApiError 400."""
    mode = (parse_mode or "").lower()
    if entities:
        plain, found = text, [dict(e) for e in entities if isinstance(e, dict)]
    else:
        try:
            if mode == "html":
                plain, found = parse_html(text, strict=strict)
            elif mode == "markdownv2":
                plain, found = parse_markdown_v2(text)
            elif mode == "markdown":
                plain, found = parse_markdown(text)
            elif mode == "":
                plain, found = text, []
            else:
                raise bad_request("unsupported parse_mode")
        except EntityParseError as exc:
            raise bad_request(f"can't parse entities: {exc}") from exc
    plain, found = _trim(plain, found)
    if not plain:
        raise bad_request("message text is empty")
    if utf16_len(plain) > MAX_TEXT_UTF16:
        raise bad_request("message is too long")
    return plain, found


def visible_text(html: str) -> str:
    """The text a user sees for an HTML message (tags stripped, entities decoded, trimmed).

    Raises EntityParseError for markup Telegram would refuse.
    """
    text, entities = parse_html(html)
    return _trim(text, entities)[0]


# --------------------------------------------------------------------------------------------
# Incoming content in Telegram's shapes.
# --------------------------------------------------------------------------------------------

_BOT_COMMAND = re.compile(r"(?<![\w/<>@])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![\w/])")


def _command_entities(text: str) -> list[JSON]:
    """The bot_command entities Telegram adds to a user's text (CommandHandler needs them)."""
    return [
        {"type": "bot_command", "offset": utf16_len(text[: m.start()]), "length": utf16_len(m[0])}
        for m in _BOT_COMMAND.finditer(text)
    ]


def user(user_id: int, first_name: str = "Pat", language_code: str | None = "en") -> JSON:
    """A Telegram User (a person, not a bot)."""
    person: JSON = {"id": user_id, "is_bot": False, "first_name": first_name}
    if language_code is not None:
        person["language_code"] = language_code
    return person


def _with_entities(content: dict[str, Any]) -> JSON:
    content = copy.deepcopy(content)
    text = content.get("text")
    if isinstance(text, str) and "entities" not in content:
        found = _command_entities(text)
        if found:
            content["entities"] = found
    return content


def private_message(
    message_id: int,
    user_id: int,
    *,
    language_code: str | None = "en",
    first_name: str = "Pat",
    **content: Any,
) -> JSON:
    """A private-chat message from a user, in Telegram's shape (bot commands get entities)."""
    return {
        "message_id": message_id,
        "date": int(time.time()),
        "from": user(user_id, first_name, language_code),
        "chat": {"id": user_id, "type": "private", "first_name": first_name},
        **_with_entities(content),
    }


def group_message(
    message_id: int,
    user_id: int,
    chat_id: int,
    *,
    title: str = "family",
    chat_type: str | None = None,
    language_code: str | None = "en",
    first_name: str = "Pat",
    **content: Any,
) -> JSON:
    """A message from a user in a group (``-100...`` ids are supergroups unless told)."""
    kind = chat_type or ("supergroup" if chat_id <= -1_000_000_000_000 else "group")
    return {
        "message_id": message_id,
        "date": int(time.time()),
        "from": user(user_id, first_name, language_code),
        "chat": {"id": chat_id, "type": kind, "title": title},
        **_with_entities(content),
    }


def _file(kind: str, size: int, **extra: Any) -> JSON:
    return {
        "file_id": f"{kind}-file-id",
        "file_unique_id": f"{kind}-uniq",
        "file_size": size,
        **extra,
    }


_PHOTO_SIZES = [
    {"file_id": f"photo-{w}-file-id", "file_unique_id": f"photo-{w}-uniq", "width": w, "height": h}
    | {"file_size": size}
    for w, h, size in ((90, 67, 1203), (320, 240, 15021), (800, 600, 60834))
]
_LOCATION = {"latitude": 52.525, "longitude": 13.377}
_ANIMATION = _file(
    "animation",
    240118,
    width=320,
    height=240,
    duration=2,
    file_name="wave.mp4",
    mime_type="video/mp4",
)

NON_TEXT: dict[str, JSON] = {
    "voice": {"voice": _file("voice", 4213, duration=3, mime_type="audio/ogg")},
    "audio": {
        "audio": _file(
            "audio",
            96321,
            duration=12,
            performer="Nurse",
            title="Breathing exercise",
            file_name="breathing.mp3",
            mime_type="audio/mpeg",
        )
    },
    "video": {
        "video": _file(
            "video",
            512000,
            width=640,
            height=360,
            duration=5,
            file_name="rash.mp4",
            mime_type="video/mp4",
        )
    },
    "video_note": {"video_note": _file("video_note", 180000, length=240, duration=4)},
    "photo": {"photo": _PHOTO_SIZES},
    "document": {
        "document": _file(
            "document", 2048, file_name="lab-results.pdf", mime_type="application/pdf"
        )
    },
    "sticker": {
        "sticker": _file(
            "sticker",
            23000,
            type="regular",
            width=512,
            height=512,
            is_animated=False,
            is_video=False,
            emoji="👍",
            set_name="CareStickers",
        )
    },
    "location": {"location": _LOCATION},
    # Telegram sends a venue's location twice: as "venue.location" and as "location".
    "venue": {
        "location": _LOCATION,
        "venue": {"location": _LOCATION, "title": "Charité", "address": "Charitéplatz 1, Berlin"},
    },
    "contact": {"contact": {"phone_number": "+4915112345678", "first_name": "Pat", "user_id": 77}},
    "poll": {
        "poll": {
            "id": "5012345678901234567",
            "question": "How do you feel?",
            "options": [
                {"text": "Better", "voter_count": 0, "persistent_id": "0"},
                {"text": "Worse", "voter_count": 0, "persistent_id": "1"},
            ],
            "total_voter_count": 0,
            "is_closed": False,
            "is_anonymous": True,
            "type": "regular",
            "allows_multiple_answers": False,
            "allows_revoting": True,
            "members_only": False,
        }
    },
    "dice": {"dice": {"emoji": "🎲", "value": 4}},
    # Telegram sends an animation as both "animation" and "document" (backward compatibility).
    "animation": {"animation": _ANIMATION, "document": _ANIMATION},
}


# --------------------------------------------------------------------------------------------
# Request helpers
# --------------------------------------------------------------------------------------------


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    return None


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return value is True or (isinstance(value, int) and value == 1)


def _decode_form_value(name: str, value: str) -> Any:
    if name in _STRING_PARAMS:
        return value
    if name in _JSON_PARAMS or value.startswith(("{", "[")):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _parse_params(query: str, raw: bytes, content_type: str) -> JSON:
    params: JSON = {}
    for name, values in parse_qs(query, keep_blank_values=True).items():
        params[name] = _decode_form_value(name, values[-1])
    kind = content_type.split(";")[0].strip().lower()
    if not raw:
        return params
    if kind == "application/json":
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise bad_request("can't parse JSON encoded request body") from exc
        if not isinstance(body, dict):
            raise bad_request("JSON object expected as request body")
        params.update(body)
    elif kind.startswith("multipart/"):
        params.update(_parse_multipart(raw, content_type))
    else:
        text = raw.decode("utf-8", "replace")
        for name, values in parse_qs(text, keep_blank_values=True).items():
            params[name] = _decode_form_value(name, values[-1])
    return params


def _parse_multipart(raw: bytes, content_type: str) -> JSON:
    """Fields of a multipart/form-data body; a file field becomes {"filename", "content"}."""
    from email.parser import BytesParser
    from email.policy import HTTP

    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw
    )
    if not message.is_multipart():
        raise bad_request("can't parse multipart/form-data request body")
    params: JSON = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        content = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is not None:
            params[name] = {"filename": filename, "content": content}
        else:
            params[name] = _decode_form_value(name, content.decode("utf-8", "replace"))
    return params


@dataclass
class _Fault:
    drop: bool
    code: int = 429
    description: str = ""
    parameters: JSON | None = None


@dataclass
class _Described:
    """A successful result that also carries Telegram's top-level "description"."""

    result: Any
    description: str


_DEFAULT_ERRORS = {
    400: "Bad Request: injected failure",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict: injected failure",
    500: "Internal Server Error",
    502: "Bad Gateway",
}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], api: BotAPIServer) -> None:
        self.api = api
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # the client went away (a cancelled long poll, a test's dropped connection)
        super().handle_error(request, client_address)


_METHOD_PATH = re.compile(r"^/bot([^/]*)/([A-Za-z0-9_]*)$")
_FILE_PATH = re.compile(r"^/file/bot([^/]*)/(.+)$")
_TOKEN = re.compile(r"^\d+:[A-Za-z0-9_-]+$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "TelegramBotAPI-test"
    timeout = 60  # idle keep-alive connections close on their own

    @property
    def api(self) -> BotAPIServer:
        return cast(_HTTPServer, self.server).api

    def setup(self) -> None:
        super().setup()
        self.api._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.api._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        url = urlsplit(self.path)
        file_match = _FILE_PATH.match(url.path)
        if file_match and self.command == "GET":
            self._serve_file(file_match.group(1), file_match.group(2))
            return
        match = _METHOD_PATH.match(url.path)
        if match is None or not match.group(2) or not _TOKEN.match(match.group(1)):
            self._reply(404, ApiError(404, "Not Found").body())
            return
        if self.api.token is not None and match.group(1) != self.api.token:
            self._reply(401, ApiError(401, "Unauthorized").body())
            return
        try:
            params = _parse_params(url.query, raw, self.headers.get("Content-Type") or "")
        except ApiError as exc:
            self._reply(exc.code, exc.body())
            return
        if not self.api._pass_hold(match.group(2), params):
            self.close_connection = True  # held, then never carried out: a send that was lost
            return
        outcome = self.api._dispatch(match.group(2), params)
        if outcome is None:
            self.close_connection = True  # no answer at all: the client sees a network error
            return
        self._send(outcome[0], outcome[1])

    do_GET = do_POST

    def _serve_file(self, token: str, path: str) -> None:
        content = self.api._file_content(path) if _TOKEN.match(token) else None
        if content is None:
            self._reply(404, ApiError(404, "Not Found").body())
        else:
            self._send(200, content, "application/octet-stream")

    def _reply(self, status: int, body: JSON) -> None:
        self._send(status, json.dumps(body, ensure_ascii=False).encode())

    def _send(self, status: int, payload: bytes, content_type: str = "application/json") -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _post_json(url: str, body: bytes, secret: str | None, timeout_s: float) -> tuple[int, bytes]:
    """POST ``body`` as JSON; (status, response body). Raises OSError on connection errors."""
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _NO_PROXY.open(request, timeout=timeout_s) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class BotAPIServer:
    """A Telegram Bot API server on 127.0.0.1: queue updates for the bot, record what it does.

    Thread-safe: HTTP handler threads, the webhook thread and the test share one lock.
    """

    def __init__(
        self, *, token: str | None = None, strict_html: bool = True, webhook_attempts: int = 5
    ) -> None:
        self.port = free_port()
        self.token = token  # None: any well-formed token works; else others get 401
        self.strict_html = strict_html
        self.webhook_attempts = webhook_attempts
        self._cond = threading.Condition(threading.RLock())
        # Every call as made, and its outcome at the same index: (HTTP status, body), None while
        # it runs, status 0 for a dropped connection.
        self.calls: list[tuple[str, JSON]] = []
        self.results: list[tuple[int, JSON] | None] = []
        # Every message the bot sent, by (chat_id, message_id), with its edit history.
        self.messages: dict[tuple[int, int], JSON] = {}
        # Files the bot sent (sendDocument): (chat id, file name, bytes, caption).
        self.documents: list[tuple[int, str, bytes, str]] = []
        self.callback_answers: dict[str, JSON] = {}
        self._held: tuple[str, int] | None = None  # (method, chat id) of `hold`
        self._held_calls, self._held_outcome = 0, True
        self.webhook_deliveries: list[tuple[int, int | str]] = []  # (update_id, status or error)
        self.dropped_updates: list[JSON] = []  # not allowed_updates, or webhook gave up
        self.descriptions: dict[str, dict[str, str]] = {"description": {}, "short_description": {}}
        self.menu_buttons: dict[int | None, JSON] = {}
        self.files: dict[str, tuple[str, bytes]] = {}  # file_id -> (file_path, content)
        self._updates: list[JSON] = []
        self._next_update = 1
        self._next_message = 1000
        self._next_callback = 0
        self._valid_callbacks: dict[str, JSON] = {}
        self._faults: dict[str, deque[_Fault]] = {}
        self._commands: dict[tuple[str, str], list[JSON]] = {}
        self._webhook: JSON | None = None
        self._webhook_error: tuple[int, str] | None = None
        self._allowed_updates: list[str] | None = None
        self._poll_generation = 0
        self._users: dict[int, JSON] = {}
        self._chats: dict[int, JSON] = {}
        self._user_messages: dict[tuple[int, int], JSON] = {}
        self._blocked: set[int] = set()
        self._connections: set[socket.socket] = set()
        self._stopped = False
        self._stop_event = threading.Event()
        self.last_update_id = 0
        for content in NON_TEXT.values():
            for value in content.values():
                for item in value if isinstance(value, list) else [value]:
                    if isinstance(item, dict) and "file_id" in item:
                        kind = item["file_id"].split("-")[0]
                        self.add_file(
                            item["file_id"], b"\x00" * 64, f"{kind}/file_{len(self.files)}"
                        )
        self._methods: dict[str, Callable[[JSON], Any]] = {
            "getme": lambda p: dict(BOT),
            "logout": lambda p: True,
            "close": lambda p: True,
            "getupdates": self._get_updates,
            "setwebhook": self._set_webhook,
            "deletewebhook": self._delete_webhook,
            "getwebhookinfo": self._get_webhook_info,
            "sendmessage": self._send_message,
            "senddocument": self._send_document,
            "editmessagetext": self._edit_message_text,
            "editmessagereplymarkup": self._edit_message_reply_markup,
            "deletemessage": self._delete_message,
            "sendchataction": self._send_chat_action,
            "answercallbackquery": self._answer_callback_query,
            "setmycommands": self._set_my_commands,
            "deletemycommands": self._delete_my_commands,
            "getmycommands": self._get_my_commands,
            "setchatmenubutton": self._set_chat_menu_button,
            "getchatmenubutton": self._get_chat_menu_button,
            "setmydescription": lambda p: self._set_description("description", p),
            "setmyshortdescription": lambda p: self._set_description("short_description", p),
            "getmydescription": lambda p: self._get_description("description", p),
            "getmyshortdescription": lambda p: self._get_description("short_description", p),
            "getchat": self._get_chat,
            "getfile": self._get_file,
        }
        self._http = _HTTPServer(("127.0.0.1", self.port), self)
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self._webhook_thread = threading.Thread(target=self._webhook_loop, daemon=True)
        self._webhook_thread.start()

    def __enter__(self) -> BotAPIServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ---------------------------------------------------------------------------------------
    # Injecting updates
    # ---------------------------------------------------------------------------------------

    def send_update(self, message: JSON) -> int:
        """Queue a message update as if a user had written to the bot; returns its update_id."""
        return self._inject({"message": copy.deepcopy(message)})

    def send_edited(self, message: JSON) -> int:
        """Queue an edited_message update (``edit_date`` added if missing)."""
        edited = copy.deepcopy(message)
        edited.setdefault("edit_date", int(time.time()))
        return self._inject({"edited_message": edited})

    def send_callback(self, from_user_id: int, data: str, message: JSON | None = None) -> str:
        """Queue a callback_query update (a button press); returns the callback query id.

        ``message`` defaults to the last message the bot sent to chat ``from_user_id``, as it is
        now. The id is valid for one answerCallbackQuery.
        """
        with self._cond:
            self._next_callback += 1
            query_id = str(4_611_686_018_427_387_904 + self._next_callback * 7919)
            if message is None:
                mine = [
                    record
                    for (chat_id, _), record in sorted(self.messages.items())
                    if chat_id == from_user_id and not record["deleted"]
                ]
                message = self._message_view(mine[-1]) if mine else None
            chat_id = message["chat"]["id"] if message and "chat" in message else from_user_id
            query: JSON = {
                "id": query_id,
                "from": copy.deepcopy(self._users.get(from_user_id) or user(from_user_id)),
                "chat_instance": str(-(abs(int(chat_id)) * 1_000_003 + 17)),
                "data": data,
            }
            if message is not None:
                query["message"] = copy.deepcopy(message)
            self._valid_callbacks[query_id] = query
            self._inject({"callback_query": query})
            return query_id

    def send_raw(self, update: JSON) -> int:
        """Queue any update JSON as is (even malformed); an update_id is added if missing.

        Returns the update_id (0 if the given one is not an integer). ``allowed_updates`` does
        not filter raw updates.
        """
        with self._cond:
            raw = copy.deepcopy(update)
            if "update_id" not in raw:
                raw = {"update_id": self._next_update, **raw}
            uid = _int(raw["update_id"]) or 0
            self._next_update = max(self._next_update, uid + 1)
            self.last_update_id = uid
            for value in raw.values():
                self._remember(value)
            self._updates.append(raw)
            self._cond.notify_all()
            return uid

    def _inject(self, body: JSON) -> int:
        with self._cond:
            uid = self._next_update
            self._next_update += 1
            self.last_update_id = uid
            update = {"update_id": uid, **body}
            for value in body.values():
                self._remember(value)
            if self._allowed(next(iter(body))):
                self._updates.append(update)
            else:
                self.dropped_updates.append(update)
            self._cond.notify_all()
            return uid

    def _remember(self, value: Any) -> None:
        """Learn users, chats and user messages from an injected update."""
        if not isinstance(value, dict):
            return
        sender = value.get("from")
        if isinstance(sender, dict) and _int(sender.get("id")) is not None:
            self._users[int(sender["id"])] = copy.deepcopy(sender)
        chat = value.get("chat")
        if isinstance(chat, dict) and _int(chat.get("id")) is not None:
            self._chats[int(chat["id"])] = copy.deepcopy(chat)
            message_id = _int(value.get("message_id"))
            if message_id is not None:
                self._user_messages[(int(chat["id"]), message_id)] = copy.deepcopy(value)

    def _allowed(self, kind: str) -> bool:
        if self._allowed_updates:
            return kind in self._allowed_updates
        return kind not in _UPDATE_TYPES_EXCLUDED_BY_DEFAULT

    # ---------------------------------------------------------------------------------------
    # Fault injection and test controls
    # ---------------------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        times: int = 1,
        *,
        retry_after: int | None = None,
        error_code: int = 429,
        description: str | None = None,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` with an error (429 by default).

        The HTTP status equals ``error_code``; a 429 carries ``parameters.retry_after`` (1 s
        unless told). Nothing happens for a failed call, but it is recorded in ``calls``.
        """
        if error_code == 429 and retry_after is None:
            retry_after = 1
        if description is None:
            if error_code == 429:
                description = f"Too Many Requests: retry after {retry_after}"
            else:
                description = _DEFAULT_ERRORS.get(error_code, f"Error {error_code}")
        parameters = {"retry_after": retry_after} if retry_after is not None else None
        fault = _Fault(False, error_code, description, parameters)
        with self._cond:
            self._faults.setdefault(method.lower(), deque()).extend([fault] * times)

    def drop_connection_next(self, method: str, times: int = 1) -> None:
        """Close the socket without answering the next ``times`` calls (before acting)."""
        with self._cond:
            self._faults.setdefault(method.lower(), deque()).extend([_Fault(True)] * times)

    def hold(self, method: str, chat_id: int) -> None:
        """Keep the next call of ``method`` to ``chat_id`` waiting, unanswered, until
        ``release``: a send in flight when the sender is killed."""
        with self._cond:
            self._held = (method.lower(), chat_id)
            self._held_calls = 0

    def held_calls(self) -> int:
        """How many calls are waiting at the hold now (or have waited there)."""
        with self._cond:
            return self._held_calls

    def release(self, *, carried_out: bool) -> None:
        """Let the held call go: carried out (it landed, though its sender may be gone) or not
        (the connection is dropped without acting, as if it never reached Telegram)."""
        with self._cond:
            self._held, self._held_outcome = None, carried_out
            self._cond.notify_all()

    def _pass_hold(self, method: str, params: JSON) -> bool:
        """Wait while a hold matches the call; False when the call must not be carried out."""
        with self._cond:
            held = self._held
            if held is None or held[0] != method.lower() or _int(params.get("chat_id")) != held[1]:
                return True
            self._held_calls += 1
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._held is None or self._stopped, timeout=300)
            return self._held_outcome

    def block(self, chat_id: int) -> None:
        """The user blocked the bot: sending to the chat answers 403 Forbidden."""
        with self._cond:
            self._blocked.add(chat_id)

    def unblock(self, chat_id: int) -> None:
        with self._cond:
            self._blocked.discard(chat_id)

    def add_file(self, file_id: str, content: bytes, file_path: str | None = None) -> None:
        """Make ``file_id`` known to getFile and downloadable from /file/bot<token>/<path>."""
        with self._cond:
            self.files[file_id] = (file_path or f"documents/{file_id}", content)

    def _file_content(self, path: str) -> bytes | None:
        with self._cond:
            for file_path, content in self.files.values():
                if file_path == path:
                    return content
            return None

    # ---------------------------------------------------------------------------------------
    # Observing what the bot did
    # ---------------------------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Block until ``predicate()`` is true (checked whenever something happens)."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout_s)

    async def await_for(self, predicate: Callable[[], bool], timeout_s: float = 30) -> bool:
        """Async variant of :meth:`wait_for` for tests running on the event loop."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    def sent(self, chat_id: int | None = None) -> list[JSON]:
        """The parameters of every successful sendMessage call, optionally for one chat."""
        with self._cond:
            return [
                params
                for params, _ in self._succeeded("sendmessage")
                if chat_id is None or _int(params.get("chat_id")) == chat_id
            ]

    def _succeeded(self, method: str) -> list[tuple[JSON, JSON]]:
        return [
            (params, result[1])
            for (name, params), result in zip(self.calls, self.results, strict=True)
            if name.lower() == method and result is not None and result[0] == 200
        ]

    def texts(self, chat_id: int) -> list[str]:
        """The current visible text of each message the bot sent to ``chat_id`` and kept."""
        with self._cond:
            return [
                record["text"]
                for (cid, _), record in sorted(self.messages.items())
                if cid == chat_id and not record["deleted"]
            ]

    def methods(self) -> list[str]:
        with self._cond:
            return [name for name, _ in self.calls]

    def count(self, method: str) -> int:
        """How many times ``method`` was called (case-insensitive), failed calls included."""
        with self._cond:
            return sum(1 for name, _ in self.calls if name.lower() == method.lower())

    def errors(self) -> list[tuple[str, JSON, JSON]]:
        """(method, params, error body) of every call that did not succeed."""
        with self._cond:
            return [
                (name, params, result[1])
                for (name, params), result in zip(self.calls, self.results, strict=True)
                if result is not None and result[0] != 200
            ]

    def pending_updates(self) -> int:
        with self._cond:
            return len(self._updates)

    def commands(self, language_code: str = "", *, scope: JSON | None = None) -> list[JSON]:
        """The bot's commands for a scope (default scope) and language."""
        with self._cond:
            return copy.deepcopy(self._commands.get(self._commands_key(scope, language_code), []))

    def webhook(self) -> JSON | None:
        """The webhook settings (url, secret_token, allowed_updates, max_connections) or None."""
        with self._cond:
            return copy.deepcopy(self._webhook)

    def post_to_webhook(self, update: JSON, secret: str | None) -> int:
        """POST one update to the webhook URL with ``secret`` as the secret header (or none).

        Returns the HTTP status the bot answered; for testing a wrong or missing secret.
        """
        with self._cond:
            if self._webhook is None:
                raise RuntimeError("no webhook is set")
            url = str(self._webhook["url"])
        return _post_json(url, json.dumps(update).encode(), secret, 10.0)[0]

    def stop(self) -> None:
        """Shut the server down; stops the webhook thread and closes open connections."""
        with self._cond:
            if self._stopped:
                return
            self._stopped = True
            self._cond.notify_all()
        self._stop_event.set()
        self._http.shutdown()
        self._http.server_close()
        with self._cond:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self._webhook_thread.join(timeout=5)

    def _track(self, connection: socket.socket, *, add: bool) -> None:
        with self._cond:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    # ---------------------------------------------------------------------------------------
    # Dispatch
    # ---------------------------------------------------------------------------------------

    def _dispatch(self, method: str, params: JSON) -> tuple[int, bytes] | None:
        """Record and run one call; (status, JSON body), or None to drop the connection."""
        with self._cond:
            index = len(self.calls)
            self.calls.append((method, params))
            self.results.append(None)
            self._cond.notify_all()
            queue = self._faults.get(method.lower())
            fault = queue.popleft() if queue else None
            body: JSON
            if fault is not None and fault.drop:
                self.results[index] = (0, {})
                self._cond.notify_all()
                return None
            if fault is not None:
                status = fault.code
                body = ApiError(fault.code, fault.description, fault.parameters).body()
            else:
                handler = self._methods.get(method.lower())
                try:
                    if handler is None:
                        raise ApiError(404, "Not Found")
                    result = handler(params)
                    status, body = 200, {"ok": True}
                    if isinstance(result, _Described):
                        body["result"], body["description"] = result.result, result.description
                    else:
                        body["result"] = result
                except ApiError as exc:
                    status, body = exc.code, exc.body()
            self.results[index] = (status, body)
            payload = json.dumps(body, ensure_ascii=False).encode()
            self._cond.notify_all()
            return status, payload

    # getUpdates and webhooks ----------------------------------------------------------------

    def _get_updates(self, p: JSON) -> list[JSON]:
        if self._webhook is not None:
            raise ApiError(409, WEBHOOK_CONFLICT)
        offset = _int(p.get("offset")) or 0
        limit = min(max(_int(p.get("limit")) or 100, 1), 100)
        try:
            timeout = max(float(p.get("timeout") or 0), 0.0)
        except (TypeError, ValueError):
            timeout = 0.0
        allowed = p.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = [str(kind) for kind in allowed]
        if offset > 0:
            self._updates = [u for u in self._updates if (_int(u.get("update_id")) or 0) >= offset]
        elif offset < 0:
            self._updates = self._updates[offset:]
        self._poll_generation += 1
        generation = self._poll_generation
        deadline = time.monotonic() + min(timeout, 1.0)
        while True:
            if self._stopped or self._webhook is not None:
                return []
            if generation != self._poll_generation:
                raise ApiError(409, POLL_CONFLICT)
            if self._updates:
                return copy.deepcopy(self._updates[:limit])
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            self._cond.wait(remaining)

    def _set_webhook(self, p: JSON) -> _Described:
        url = str(p.get("url") or "")
        if not url:
            return self._delete_webhook(p)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise bad_request("bad webhook: HTTPS url must be provided for webhook")
        secret = p.get("secret_token")
        if secret is not None and secret != "":
            if not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
                raise bad_request("secret token contains unallowed characters")
        else:
            secret = None
        allowed = p.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = [str(kind) for kind in allowed]
        max_connections = min(max(_int(p.get("max_connections")) or 40, 1), 100)
        hook: JSON = {
            "url": url,
            "secret_token": secret,
            "allowed_updates": copy.deepcopy(self._allowed_updates),
            "max_connections": max_connections,
        }
        if _flag(p.get("drop_pending_updates")):
            self._updates.clear()
        unchanged = self._webhook == hook
        self._webhook = hook
        self._webhook_error = None
        return _Described(True, "Webhook is already set" if unchanged else "Webhook was set")

    def _delete_webhook(self, p: JSON) -> _Described:
        if _flag(p.get("drop_pending_updates")):
            self._updates.clear()
        existed = self._webhook is not None
        self._webhook = None
        self._webhook_error = None
        return _Described(True, "Webhook was deleted" if existed else "Webhook is already deleted")

    def _get_webhook_info(self, p: JSON) -> JSON:
        info: JSON = {
            "url": self._webhook["url"] if self._webhook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if self._webhook is not None:
            info["max_connections"] = self._webhook["max_connections"]
            info["ip_address"] = "127.0.0.1"
            if self._allowed_updates:
                info["allowed_updates"] = list(self._allowed_updates)
            if self._webhook_error is not None:
                info["last_error_date"], info["last_error_message"] = self._webhook_error
        return info

    def _webhook_loop(self) -> None:
        """Deliver queued updates to the webhook: in order, one at a time, a few tries each."""
        attempts: dict[int, int] = {}
        while True:
            with self._cond:
                while not self._stopped and (self._webhook is None or not self._updates):
                    self._cond.wait(0.5)
                if self._stopped or self._webhook is None:
                    return
                update = self._updates[0]
                uid = _int(update.get("update_id")) or 0
                url, secret = str(self._webhook["url"]), self._webhook["secret_token"]
                body = json.dumps(update, ensure_ascii=False).encode()
            error: str | None = None
            reply = b""
            try:
                status, reply = _post_json(url, body, secret, 10.0)
                if not 200 <= status < 300:
                    error = f"Wrong response from the webhook: {status}"
            except OSError as exc:
                status, error = 0, f"Connection failed: {getattr(exc, 'reason', exc)}"
            with self._cond:
                first = self._updates[0] if self._updates else None
                still_first = first is not None and (_int(first.get("update_id")) or 0) == uid
                self.webhook_deliveries.append((uid, status if error is None else error))
                if error is None:
                    attempts.pop(uid, None)
                    if still_first:
                        self._updates.pop(0)
                else:
                    self._webhook_error = (int(time.time()), error)
                    attempts[uid] = attempts.get(uid, 0) + 1
                    if attempts[uid] >= self.webhook_attempts and still_first:
                        self.dropped_updates.append(self._updates.pop(0))
                        attempts.pop(uid, None)
                self._cond.notify_all()
            if error is not None:
                self._stop_event.wait(min(0.05 * 2 ** attempts.get(uid, 0), 1.0))
                continue
            self._run_webhook_reply(reply)

    def _run_webhook_reply(self, reply: bytes) -> None:
        """Telegram runs a method call given in the body of the webhook's answer."""
        try:
            answer = json.loads(reply) if reply.strip() else None
        except ValueError:
            return
        if isinstance(answer, dict) and isinstance(answer.get("method"), str):
            params = {k: v for k, v in answer.items() if k != "method"}
            self._dispatch(answer["method"], params)

    # messages ------------------------------------------------------------------------------

    def _chat_id(self, p: JSON, *, sending: bool = False) -> int:
        raw = p.get("chat_id")
        if raw is None or raw == "":
            raise bad_request("chat_id is empty")
        chat_id = _int(raw)
        if chat_id is None or chat_id == 0:
            raise bad_request("chat not found")
        if sending and chat_id in self._blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return chat_id

    def _chat_view(self, chat_id: int) -> JSON:
        known = self._chats.get(chat_id)
        if known is not None:
            return copy.deepcopy(known)
        if chat_id > 0:
            person = self._users.get(chat_id, {})
            return {"id": chat_id, "type": "private", "first_name": person.get("first_name", "Pat")}
        return {"id": chat_id, "type": "supergroup", "title": "Group"}

    def _markup(self, p: JSON) -> JSON | None:
        markup = p.get("reply_markup")
        if markup is None or markup == "":
            return None
        if not isinstance(markup, dict):
            raise bad_request("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in markup:
            rows = markup["inline_keyboard"]
            if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
                raise bad_request(
                    'field "inline_keyboard" of the InlineKeyboardMarkup should be an Array of '
                    "Arrays"
                )
            for row in rows:
                for button in row:
                    self._check_button(button)
            return copy.deepcopy(markup)
        if any(key in markup for key in ("keyboard", "remove_keyboard", "force_reply")):
            return copy.deepcopy(markup)
        raise bad_request("can't parse reply keyboard markup JSON object")

    @staticmethod
    def _check_button(button: Any) -> None:
        if not isinstance(button, dict) or not isinstance(button.get("text"), str):
            raise bad_request(
                'can\'t parse inline keyboard button: Field "text" must be of type String'
            )
        if not any(key in button for key in _INLINE_BUTTON_ACTIONS):
            raise bad_request(
                "can't parse inline keyboard button: Text buttons are unallowed in the inline "
                "keyboard"
            )
        data = button.get("callback_data")
        if data is not None and not 1 <= len(str(data).encode()) <= 64:
            raise bad_request("BUTTON_DATA_INVALID")
        if "url" in button and not (isinstance(button["url"], str) and button["url"].strip()):
            raise bad_request("BUTTON_URL_INVALID")

    def _format(self, p: JSON) -> tuple[str, list[JSON]]:
        text = p.get("text")
        if text is None:
            raise bad_request("message text is empty")
        entities = p.get("entities")
        return format_text(
            str(text),
            str(p["parse_mode"]) if p.get("parse_mode") else None,
            entities if isinstance(entities, list) else None,
            strict=self.strict_html,
        )

    def _message_view(self, record: JSON) -> JSON:
        message: JSON = {
            "message_id": record["message_id"],
            "date": record["date"],
            "chat": self._chat_view(record["chat_id"]),
            "from": dict(BOT),
            "text": record["text"],
        }
        if record["entities"]:
            message["entities"] = copy.deepcopy(record["entities"])
        markup = record["reply_markup"]
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            message["reply_markup"] = copy.deepcopy(markup)
        if record["edit_date"] is not None:
            message["edit_date"] = record["edit_date"]
        if record["reply_to_message"] is not None:
            message["reply_to_message"] = copy.deepcopy(record["reply_to_message"])
        return message

    def _reply_target(self, p: JSON, chat_id: int) -> JSON | None:
        reply = p.get("reply_parameters")
        target: int | None = None
        allow_missing = _flag(p.get("allow_sending_without_reply"))
        if isinstance(reply, dict):
            target = _int(reply.get("message_id"))
            allow_missing = allow_missing or _flag(reply.get("allow_sending_without_reply"))
            if _int(reply.get("chat_id")) not in (None, chat_id):
                return None  # a reply to another chat: not modelled
        elif p.get("reply_to_message_id") is not None:
            target = _int(p.get("reply_to_message_id"))
        if target is None:
            return None
        own = self.messages.get((chat_id, target))
        if own is not None and not own["deleted"]:
            return self._message_view(own)
        theirs = self._user_messages.get((chat_id, target))
        if theirs is not None:
            return copy.deepcopy(theirs)
        if allow_missing:
            return None
        raise bad_request("message to be replied not found")

    def _send_message(self, p: JSON) -> JSON:
        chat_id = self._chat_id(p, sending=True)
        markup = self._markup(p)
        text, entities = self._format(p)
        reply_to = self._reply_target(p, chat_id)
        self._next_message += 1
        now = int(time.time())
        version = {
            "text": text,
            "entities": entities,
            "parse_mode": p.get("parse_mode"),
            "raw_text": p.get("text"),
            "reply_markup": markup,
            "date": now,
        }
        record: JSON = {
            "chat_id": chat_id,
            "message_id": self._next_message,
            "date": now,
            "edit_date": None,
            "deleted": False,
            "reply_to_message": reply_to,
            **{k: v for k, v in version.items() if k != "date"},
            "versions": [version],
        }
        self.messages[(chat_id, self._next_message)] = record
        return self._message_view(record)

    def _send_document(self, p: JSON) -> JSON:
        chat_id = self._chat_id(p, sending=True)
        document = p.get("document")
        if not isinstance(document, dict) or "content" not in document:
            raise bad_request("there is no document in the request")
        caption = str(p.get("caption") or "")
        self.documents.append((chat_id, str(document["filename"]), document["content"], caption))
        record = self._send_message({"chat_id": chat_id, "text": caption or "[document]"})
        return record

    def _target(self, p: JSON, verb: str) -> JSON:
        if p.get("inline_message_id"):
            raise bad_request("MESSAGE_ID_INVALID")
        chat_id = self._chat_id(p, sending=True)
        if p.get("message_id") is None or p.get("message_id") == "":
            raise bad_request("message identifier is not specified")
        message_id = _int(p.get("message_id"))
        record = self.messages.get((chat_id, message_id or 0))
        if record is None or record["deleted"]:
            if (chat_id, message_id or 0) in self._user_messages:
                raise bad_request(f"message can't be {verb}ed")
            raise bad_request(f"message to {verb} not found")
        return record

    def _apply_edit(self, record: JSON, version: JSON) -> JSON:
        same = (version["text"], version["entities"], version["reply_markup"]) == (
            record["text"],
            record["entities"],
            record["reply_markup"],
        )
        if same:
            raise ApiError(400, NOT_MODIFIED)
        now = int(time.time())
        record.update(version)
        record["edit_date"] = now
        record["versions"].append({**version, "date": now})
        return self._message_view(record)

    def _edit_message_text(self, p: JSON) -> JSON:
        record = self._target(p, "edit")
        markup = self._markup(p)  # no reply_markup removes the inline keyboard, like Telegram
        text, entities = self._format(p)
        version = {
            "text": text,
            "entities": entities,
            "parse_mode": p.get("parse_mode"),
            "raw_text": p.get("text"),
            "reply_markup": markup,
        }
        return self._apply_edit(record, version)

    def _edit_message_reply_markup(self, p: JSON) -> JSON:
        record = self._target(p, "edit")
        version = {
            "text": record["text"],
            "entities": record["entities"],
            "parse_mode": record["parse_mode"],
            "raw_text": record["raw_text"],
            "reply_markup": self._markup(p),
        }
        return self._apply_edit(record, version)

    def _delete_message(self, p: JSON) -> bool:
        chat_id = self._chat_id(p)
        message_id = _int(p.get("message_id"))
        if message_id is None:
            raise bad_request("message identifier is not specified")
        record = self.messages.get((chat_id, message_id))
        if record is not None and not record["deleted"]:
            record["deleted"] = True
            return True
        if self._user_messages.pop((chat_id, message_id), None) is not None:
            return True
        raise bad_request("message to delete not found")

    def _send_chat_action(self, p: JSON) -> bool:
        self._chat_id(p, sending=True)
        if p.get("action") not in _CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        return True

    def _answer_callback_query(self, p: JSON) -> bool:
        query_id = str(p.get("callback_query_id") or "")
        if query_id not in self._valid_callbacks:
            raise ApiError(400, QUERY_TOO_OLD)
        del self._valid_callbacks[query_id]
        self.callback_answers[query_id] = dict(p)
        return True

    # commands, descriptions, menu button, chats, files --------------------------------------

    @staticmethod
    def _commands_key(scope: Any, language_code: Any) -> tuple[str, str]:
        if not isinstance(scope, dict):
            scope = {"type": "default"}
        if scope.get("type") not in _SCOPE_TYPES:
            raise bad_request("unsupported bot command scope type")
        return json.dumps(scope, sort_keys=True), str(language_code or "")

    def _set_my_commands(self, p: JSON) -> bool:
        commands = p.get("commands")
        if not isinstance(commands, list):
            raise bad_request("can't parse commands JSON array")
        for command in commands:
            if not isinstance(command, dict):
                raise bad_request("can't parse BotCommand JSON object")
            name, description = command.get("command"), command.get("description")
            if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_]{1,32}", name):
                raise bad_request("BOT_COMMAND_INVALID")
            if not isinstance(description, str) or not 1 <= len(description.strip()) <= 256:
                raise bad_request("command description is invalid")
        key = self._commands_key(p.get("scope"), p.get("language_code"))
        self._commands[key] = [
            {"command": c["command"], "description": c["description"]} for c in commands
        ]
        return True

    def _delete_my_commands(self, p: JSON) -> bool:
        self._commands.pop(self._commands_key(p.get("scope"), p.get("language_code")), None)
        return True

    def _get_my_commands(self, p: JSON) -> list[JSON]:
        key = self._commands_key(p.get("scope"), p.get("language_code"))
        return copy.deepcopy(self._commands.get(key, []))

    def _set_chat_menu_button(self, p: JSON) -> bool:
        button = p.get("menu_button")
        chat_id = self._chat_id(p) if p.get("chat_id") not in (None, "") else None
        if button is None:
            self.menu_buttons.pop(chat_id, None)
            return True
        if not isinstance(button, dict) or button.get("type") not in (
            "commands",
            "web_app",
            "default",
        ):
            raise bad_request("can't parse menu button JSON object")
        self.menu_buttons[chat_id] = copy.deepcopy(button)
        return True

    def _get_chat_menu_button(self, p: JSON) -> JSON:
        chat_id = self._chat_id(p) if p.get("chat_id") not in (None, "") else None
        button = self.menu_buttons.get(chat_id) or self.menu_buttons.get(None)
        return copy.deepcopy(button) if button else {"type": "commands"}

    def _set_description(self, kind: str, p: JSON) -> bool:
        value = str(p.get(kind) or "")
        limit = 512 if kind == "description" else 120
        if len(value) > limit:
            raise bad_request(f"{kind} is too long")
        self.descriptions[kind][str(p.get("language_code") or "")] = value
        return True

    def _get_description(self, kind: str, p: JSON) -> JSON:
        language = str(p.get("language_code") or "")
        texts = self.descriptions[kind]
        return {kind: texts.get(language, texts.get("", ""))}

    def _get_chat(self, p: JSON) -> JSON:
        chat_id = self._chat_id(p)
        if chat_id < 0 and chat_id not in self._chats:
            raise bad_request("chat not found")
        chat = self._chat_view(chat_id)
        if chat_id > 0 and chat_id in self._users:
            person = self._users[chat_id]
            for key in ("first_name", "last_name", "username"):
                if key in person:
                    chat[key] = person[key]
        chat.update(
            accent_color_id=chat_id % 7 if chat_id > 0 else 0,
            max_reaction_count=11,
            accepted_gift_types={
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        )
        return chat

    def _get_file(self, p: JSON) -> JSON:
        file_id = str(p.get("file_id") or "")
        if file_id not in self.files:
            raise bad_request("invalid file_id")
        path, content = self.files[file_id]
        unique = file_id.replace("-file-id", "-uniq")
        return {
            "file_id": file_id,
            "file_unique_id": unique,
            "file_size": len(content),
            "file_path": path,
        }
