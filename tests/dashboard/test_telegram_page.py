"""A clinician links their Telegram account from the dashboard, and unlinks it."""

from __future__ import annotations

import re
from contextlib import closing

from bot.dashboard.roles import Role
from bot.dashboard.telegram_link import TelegramLinks
from tests.dashboard.live import PASSWORD, LiveServer, csrf_of, sign_in
from tests.dashboard.test_prompt_console import text_of

CODE = re.compile(r"/link ([A-Z0-9]{4}-[A-Z0-9]{4})")


def test_a_doctor_links_with_a_code_shown_once_and_unlinks(live: LiveServer) -> None:
    live.add_staff("tess", Role.DOCTOR, "Dr Tess")
    live.add_staff("otto", Role.OPERATOR, "Otto")
    doctor, _ = sign_in(live.url, "tess")
    operator, _ = sign_in(live.url, "otto")
    with closing(doctor), closing(operator):
        page = doctor.get("/dashboard/telegram").text
        assert "Not linked" in text_of(page) and "(Dr Tess, doctor)" in text_of(page)
        # A sign-in cookie alone (stolen, or a browser left open) makes no code.
        for password in ("", "not the password"):
            refused_code = doctor.post(
                "/dashboard/telegram/code",
                data={"csrf_token": csrf_of(page), "password": password},
            )
            assert refused_code.status_code == 422 and CODE.search(refused_code.text) is None
            assert "password is not right" in refused_code.text
        shown = doctor.post(
            "/dashboard/telegram/code", data={"csrf_token": csrf_of(page), "password": PASSWORD}
        ).text
        code = CODE.search(shown)
        assert code, text_of(shown)
        assert CODE.search(doctor.get("/dashboard/telegram").text) is None  # shown once

        links = TelegramLinks(live.runtime.storage)
        linked = live.call(lambda rt: links.link(code.group(1), 4242))
        assert linked.username == "tess"
        page = doctor.get("/dashboard/telegram").text
        assert "Linked" in text_of(page) and "4242" in page
        done = doctor.post("/dashboard/telegram/unlink", data={"csrf_token": csrf_of(page)})
        assert "Unlinked" in text_of(doctor.get(done.headers["location"]).text)
        assert live.call(lambda rt: links.actor(4242)) is None

        refused = operator.get("/dashboard/telegram")
        assert refused.status_code == 403
