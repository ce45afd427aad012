"""Nobody locks staff out from outside: a browser that signed in before (a known device)
gets in while strangers have filled every shared limit and locked the account; forwarded
headers are believed only from configured proxies; behind one, cookies are `__Host-`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.dashboard.known_devices import COOKIE as DEVICE
from bot.dashboard.roles import Role
from tests.dashboard.live import PASSWORD, LiveServer, csrf_of, serving, sign_in
from tests.fakes import scripted

LIMITS = {
    "dashboard_login_attempts_per_client": 5,
    "dashboard_login_attempts_overall": 12,
    "dashboard_account_lock_failures": 4,
}


@pytest.fixture
def live(tmp_path: Path, guideline_index_dir: Path) -> Iterator[LiveServer]:
    """A server of its own per test: the limits are per process and these tests fill them."""
    with serving(tmp_path, guideline_index_dir, scripted("ok"), **LIMITS) as server:  # type: ignore[arg-type]
        yield server


def attempt(
    base: str, username: str, password: str, cookies: dict[str, str] | None = None, **headers: str
) -> httpx.Response:
    with httpx.Client(base_url=base, cookies=cookies, timeout=30) as client:
        form = client.get("/dashboard/login", headers=headers)
        return client.post(
            "/dashboard/login",
            data={"username": username, "password": password, "csrf_token": csrf_of(form.text)},
            headers=headers,
        )


def test_a_known_browser_signs_in_while_strangers_fill_every_limit(live: LiveServer) -> None:
    live.add_staff("ada", Role.DOCTOR, "Dr Ada")
    live.add_staff("bo", Role.DOCTOR, "Dr Bo")
    client, res = sign_in(live.url, "ada")  # Dr Ada's own browser, yesterday
    device = client.cookies.get(DEVICE)
    client.close()
    assert res.status_code == 303 and device
    # An attacker: wrong passwords for "ada" until the account locks, then junk until the
    # address and overall limits are full. (From loopback; forwarded addresses are ignored.)
    statuses = [attempt(live.url, "ada", f"guess {i}").status_code for i in range(20)]
    assert statuses[-1] == 429  # the attacker is throttled
    # A new browser cannot get in now, even with the right password ...
    assert attempt(live.url, "ada", PASSWORD).status_code in (401, 429)
    # ... but Dr Ada's own browser can: she is not locked out by a stranger.
    mine = attempt(live.url, "ada", PASSWORD, cookies={DEVICE: device})
    assert mine.status_code == 303, mine.text
    # Her device cookie is hers: for Dr Bo's account it is a stranger's browser, and a
    # forged or altered value is nobody's.
    assert attempt(live.url, "bo", PASSWORD, cookies={DEVICE: device}).status_code in (401, 429)
    forged = device[:-2] + ("AA" if not device.endswith("AA") else "BB")
    assert attempt(live.url, "ada", PASSWORD, cookies={DEVICE: forged}).status_code in (401, 429)
    # The known device has its own small budget of wrong passwords.
    wrong = [
        attempt(live.url, "ada", "typo", cookies={DEVICE: device}).status_code for _ in range(6)
    ]
    assert wrong[:4] == [401] * 4 and wrong[-1] == 429


def test_forwarded_addresses_are_ignored_unless_from_a_configured_proxy(live: LiveServer) -> None:
    live.add_staff("cy", Role.DOCTOR, "Dr Cy")
    # Rotating X-Forwarded-For does not make one client many: its sixth attempt waits.
    results = [
        attempt(live.url, "cy", "nope", **{"X-Forwarded-For": f"198.51.100.{i}"}).status_code
        for i in range(6)
    ]
    assert results[:5] == [401] * 5 and results[5] == 429


def test_behind_a_configured_proxy_addresses_and_https_come_from_it(
    tmp_path: Path, guideline_index_dir: Path
) -> None:
    with serving(
        tmp_path,
        guideline_index_dir,
        scripted("ok"),
        trusted_proxies="127.0.0.1",
        **LIMITS,  # type: ignore[arg-type]
    ) as live:
        live.add_staff("di", Role.DOCTOR, "Dr Di")
        live.add_staff("el", Role.DOCTOR, "Dr El")
        # Each forwarded address is its own client now (the proxy says who is connecting).
        results = [
            attempt(live.url, "di", "nope", **{"X-Forwarded-For": f"198.51.100.{i}"}).status_code
            for i in range(6)
        ]
        assert 429 not in results[:3]
        # Over HTTPS (as the proxy reports), the chat and device cookies are `__Host-`.
        https = {"X-Forwarded-Proto": "https"}
        chat = httpx.get(f"{live.url}/api/history", headers=https).headers["set-cookie"]
        assert chat.startswith("__Host-carebot_chat=") and "secure" in chat.lower()
        assert "path=/" in chat.lower() and "domain" not in chat.lower()
        # (The proxy speaks HTTPS to browsers; here on plain loopback, Secure cookies are
        # passed by hand.)
        headers = {"X-Forwarded-For": "192.0.2.7", **https}
        form = httpx.get(f"{live.url}/dashboard/login", headers=headers)
        login_cookie = form.headers["set-cookie"].split(";", 1)[0]
        signed = httpx.post(
            f"{live.url}/dashboard/login",
            data={"username": "el", "password": PASSWORD, "csrf_token": csrf_of(form.text)},
            headers={**headers, "Cookie": login_cookie},
        )
        assert signed.status_code == 303, signed.text
        device = [c for c in signed.headers.get_list("set-cookie") if "device" in c]
        assert device and device[0].startswith("__Host-carebot_device=")
