"""Two-step sign-in (TOTP): set up from the account page, asked for after the password, each
code good once, five tries and five minutes per sign-in, turned off by its owner with a code
or by an administrator."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import httpx
import pyotp
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlmodel import Session, select

from bot.dashboard.accounts import StaffAccounts
from bot.dashboard.roles import Role
from bot.dashboard.sessions import CHALLENGE_COOKIE, COOKIE
from bot.dashboard.two_factor import (
    CHALLENGE_TRIES,
    STEP_S,
    ChallengeOutcome,
    TwoFactor,
    matching_step,
)
from bot.models import utcnow
from bot.storage.tables import AuditEvent, StaffLoginChallenge
from tests.dashboard.live import PASSWORD, LiveServer, csrf_of, serving, sign_in
from tests.fakes import scripted

KEY = re.compile(r'id="totp-key">([A-Z2-7 ]+)<')
RECOVERY = re.compile(r"\b([A-Z2-9]{5}-[A-Z2-9]{5})\b")


def code_at(secret: str, step_offset: int = 0) -> str:
    step = int(time.time()) // STEP_S + step_offset
    return pyotp.TOTP(secret, interval=STEP_S).generate_otp(step)


def enrol(live: LiveServer, username: str) -> tuple[httpx.Client, str]:
    """Sign in with the password and turn two-step sign-in on; return the client and key."""
    client, res = sign_in(live.url, username)
    assert res.status_code == 303
    token = csrf_of(client.get("/dashboard/account").text)
    page = client.post(
        "/dashboard/account/2fa/begin", data={"csrf_token": token, "password": PASSWORD}
    )
    assert page.status_code == 200 and 'src="data:image/svg+xml' in page.text  # the QR code
    found = KEY.search(page.text)
    assert found is not None
    secret = found.group(1).replace(" ", "")
    done = client.post(
        "/dashboard/account/2fa/confirm", data={"csrf_token": token, "code": code_at(secret)}
    )
    assert done.status_code == 200 and "Two-step sign-in is on" in done.text
    shown = done.text.split('id="recovery-codes"', 1)[1]
    RECOVERED[username] = RECOVERY.findall(shown)
    assert len(RECOVERED[username]) == 10  # shown once, with the page that turned it on
    return client, secret


RECOVERED: dict[str, list[str]] = {}


def password_step(live: LiveServer, username: str) -> tuple[httpx.Client, httpx.Response]:
    """Sign in with the password; for a two-step account this opens the code step."""
    client, res = sign_in(live.url, username, next_="/dashboard/account")
    assert res.status_code == 303
    return client, res


def give_code(client: httpx.Client, code: str) -> httpx.Response:
    form = client.get("/dashboard/login/code?next=/dashboard/account")
    assert form.status_code == 200, form.text
    return client.post(
        "/dashboard/login/code",
        data={"code": code, "csrf_token": csrf_of(form.text), "next": "/dashboard/account"},
    )


def test_turning_it_on_then_signing_in_needs_the_code(live: LiveServer) -> None:
    live.add_staff("tessa", Role.DOCTOR, "Dr Tessa")
    elsewhere, _ = sign_in(live.url, "tessa")  # another device, signed in before
    first, secret = enrol(live, "tessa")
    with closing(elsewhere), closing(first):
        # Sign-ins opened with the password alone have ended; the one that turned it on stays.
        assert elsewhere.get("/dashboard/account").status_code == 303
        page = first.get("/dashboard/account")
        assert page.status_code == 200 and "On: signing in asks" in page.text

    client, res = password_step(live, "tessa")
    with closing(client):
        # A right password alone signs nobody in: no session cookie, the queue stays shut.
        assert res.headers["location"] == "/dashboard/login/code?next=/dashboard/account"
        assert COOKIE not in client.cookies and CHALLENGE_COOKIE in client.cookies
        assert client.get("/dashboard").headers["location"].startswith("/dashboard/login")
        # The code that turned it on is spent; the app's next one is not.
        spent = give_code(client, code_at(secret))
        assert spent.status_code == 401 and "That code did not work" in spent.text
        right = give_code(client, code_at(secret, 1))
        # Signed in; and told that two-step sign-in was turned on since the last sign-in.
        assert right.status_code == 303
        assert right.headers["location"] == "/dashboard/account?changed=security"
        told = client.get(right.headers["location"]).text
        assert "security settings changed since you last signed in" in told
        events = told.split('id="security-events"', 1)[1]
        assert "2fa enabled" in events and "recovery codes made" in events
        assert client.get("/dashboard").status_code == 200
    with Session(live.runtime.storage.engine) as s:
        actions = [
            e.action
            for e in s.exec(select(AuditEvent).where(AuditEvent.actor.startswith("staff:")))  # type: ignore[attr-defined]
        ]
    assert "staff.2fa_enabled" in actions and "staff.login_2fa" in actions


def test_a_code_works_once(live: LiveServer) -> None:
    live.add_staff("ursula", Role.DOCTOR, "Dr Ursula")
    first, secret = enrol(live, "ursula")
    first.close()
    code = code_at(secret, 1)  # the app's next code: newer than the one that turned it on
    client, _ = password_step(live, "ursula")
    with closing(client):
        assert give_code(client, code).status_code == 303
    # Someone who watched it typed, or read it from a proxy's log, a second later:
    thief, _ = password_step(live, "ursula")
    with closing(thief):
        replay = give_code(thief, code)
        assert replay.status_code == 401 and COOKIE not in thief.cookies
        assert give_code(thief, code_at(secret, -1)).status_code == 401  # older still


def test_five_wrong_codes_end_the_attempt(live: LiveServer) -> None:
    vera = live.add_staff("vera", Role.DOCTOR, "Dr Vera")
    first, secret = enrol(live, "vera")
    first.close()
    client, _ = password_step(live, "vera")
    right = code_at(secret, 1)
    wrong = next(c for c in ("123456", "654321", "111111") if c not in {right, code_at(secret)})
    with closing(client):
        for _ in range(CHALLENGE_TRIES - 1):
            assert give_code(client, wrong).status_code == 401
        last = give_code(client, wrong)
        assert last.status_code == 401 and "Sign in again with your password" in last.text
        assert CHALLENGE_COOKIE not in client.cookies
        # The right code is too late for this attempt; the password step starts again.
        again = client.get("/dashboard/login/code")
        assert again.status_code == 303 and again.headers["location"].startswith("/dashboard/login")
    with Session(live.runtime.storage.engine) as s:
        mine = select(StaffLoginChallenge).where(StaffLoginChallenge.staff_id == vera.id)
        assert s.exec(mine).all() == []


def test_the_owner_turns_it_off_with_a_code_and_an_admin_resets_it(live: LiveServer) -> None:
    account = live.add_staff("wanda", Role.OPERATOR, "Wanda")
    client, secret = enrol(live, "wanda")
    with closing(client):
        token = csrf_of(client.get("/dashboard/account").text)
        # A stolen cookie is not enough to turn it off: neither alone nor with the code.
        refused = client.post("/dashboard/account/2fa/off", data={"csrf_token": token})
        assert refused.status_code == 422 and "password is not right" in refused.text
        refused = client.post(
            "/dashboard/account/2fa/off", data={"csrf_token": token, "code": code_at(secret, 1)}
        )
        assert refused.status_code == 422 and "password is not right" in refused.text
        refused = client.post(
            "/dashboard/account/2fa/off", data={"csrf_token": token, "password": PASSWORD}
        )
        assert refused.status_code == 422 and "code from your app" in refused.text
        off = client.post(
            "/dashboard/account/2fa/off",
            data={"csrf_token": token, "password": PASSWORD, "code": code_at(secret, 1)},
        )
        assert off.status_code == 303 and off.headers["location"].endswith("changed=2fa_off")
    plain, res = sign_in(live.url, "wanda", next_="/dashboard/account")
    with closing(plain):  # the password alone again (and told it was turned off)
        assert res.headers["location"] == "/dashboard/account?changed=security"

    again, _ = enrol(live, "wanda")
    again.close()
    reset = live.call(lambda rt: TwoFactor(rt.storage).reset("Wanda "))
    assert reset.id == account.id and not reset.two_factor
    back, res = sign_in(live.url, "wanda", next_="/dashboard/account")
    with closing(back):
        assert res.headers["location"] == "/dashboard/account?changed=security"
        events = back.get("/dashboard/account").text.split('id="security-events"', 1)[1]
        assert "2fa reset</strong> by cli" in events  # the administrator's act, named


def test_a_mistyped_setup_code_keeps_the_key_and_changes_nothing(live: LiveServer) -> None:
    live.add_staff("xena", Role.DOCTOR, "Dr Xena")
    client, _ = sign_in(live.url, "xena")
    with closing(client):
        token = csrf_of(client.get("/dashboard/account").text)
        begun = client.post(
            "/dashboard/account/2fa/begin", data={"csrf_token": token, "password": PASSWORD}
        )
        found = KEY.search(begun.text)
        assert found is not None
        secret = found.group(1).replace(" ", "")
        for typo in ("", "12345", "１２３４５６", "abcdef", "9" * 32):
            res = client.post(
                "/dashboard/account/2fa/confirm", data={"csrf_token": token, "code": typo}
            )
            assert res.status_code == 422 and found.group(1) in res.text  # the same key again
        assert "Off." in client.get("/dashboard/account").text
        spaced = code_at(secret)
        res = client.post(
            "/dashboard/account/2fa/confirm",
            data={"csrf_token": token, "code": f"{spaced[:3]} {spaced[3:]}"},
        )
        assert res.status_code == 200 and "Two-step sign-in is on" in res.text  # "123 456"


def test_an_attempt_expires_and_a_disabled_account_cannot_finish(live: LiveServer) -> None:
    account = live.add_staff("yara", Role.DOCTOR, "Dr Yara")
    first, secret = enrol(live, "yara")
    first.close()
    later = [utcnow()]
    factor = TwoFactor(live.runtime.storage, clock=lambda: later[0])
    token = live.call(lambda rt: factor.challenge(account))
    later[0] += timedelta(minutes=6)
    result = live.call(lambda rt: factor.answer(token, code_at(secret, 1)))
    assert result.outcome is ChallengeOutcome.OVER

    token = live.call(lambda rt: factor.challenge(account))
    live.call(lambda rt: StaffAccounts(rt.storage).disable("yara"))
    later[0] = utcnow()
    assert live.call(lambda rt: factor.answer(token, code_at(secret, 1))).outcome is (
        ChallengeOutcome.OVER
    )


def test_one_code_given_twice_at_once_signs_in_once(live: LiveServer) -> None:
    account = live.add_staff("zoe", Role.DOCTOR, "Dr Zoe")
    first, secret = enrol(live, "zoe")
    first.close()
    factor = TwoFactor(live.runtime.storage)
    code = code_at(secret, 1)

    async def both() -> list[ChallengeOutcome]:
        tokens = [await factor.challenge(account) for _ in range(2)]
        results = await asyncio.gather(*(factor.answer(t, code) for t in tokens))
        return [r.outcome for r in results]

    outcomes = live.call(lambda rt: both())
    assert sorted(outcomes) == [ChallengeOutcome.PASSED, ChallengeOutcome.WRONG]
    with Session(live.runtime.storage.engine) as s:
        mine = select(StaffLoginChallenge).where(StaffLoginChallenge.staff_id == account.id)
        left = s.exec(mine).all()
    assert len(left) == 1 and left[0].failures == 1  # the loser may try again with a new code


@given(st.text(max_size=64))
def test_any_typed_text_is_a_code_or_refused(text: str) -> None:
    secret = "JBSWY3DPEHPK3PXP"
    now = utcnow()
    step = matching_step(secret, text, now)
    if step is not None:
        assert abs(step - int(now.timestamp()) // STEP_S) <= 1
        assert sum(ch.isdigit() for ch in text) == 6


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_a_phone_clock_thirty_seconds_off_still_works(offset: int) -> None:
    secret = pyotp.random_base32()
    now = utcnow()
    step = int(now.timestamp()) // STEP_S + offset
    code = pyotp.TOTP(secret, interval=STEP_S).generate_otp(step)
    assert matching_step(secret, code, now) == step
    far = pyotp.TOTP(secret, interval=STEP_S).generate_otp(step + 3 * (offset or 1))
    assert matching_step(secret, far, now) is None or far == code


@pytest.fixture(scope="module")
def strict(
    tmp_path_factory: pytest.TempPathFactory, guideline_index_dir: Path
) -> Iterator[LiveServer]:
    """A deployment that requires two-step sign-in of every staff account."""
    folder = tmp_path_factory.mktemp("strict")
    with serving(
        folder, guideline_index_dir, scripted("ok"), dashboard_require_two_factor=True
    ) as server:
        yield server


def test_a_deployment_can_require_it_of_everyone(strict: LiveServer) -> None:
    strict.add_staff("abel", Role.DOCTOR, "Dr Abel")
    client, res = sign_in(strict.url, "abel")
    with closing(client):
        assert res.status_code == 303
        # Without a second factor the queue, cases, streams and forms are shut ...
        queue = client.get("/dashboard")
        assert queue.status_code == 303 and queue.headers["location"] == "/dashboard/account"
        assert client.get("/dashboard/events").status_code == 403
        account = client.get("/dashboard/account")
        assert account.status_code == 200 and "requires two-step sign-in" in account.text
        token = csrf_of(account.text)
        claim = client.post("/dashboard/cases/1/claim", data={"csrf_token": token})
        assert claim.status_code == 403
    # ... until it is set up; then it cannot be turned off.
    client, secret = enrol(strict, "abel")
    with closing(client):
        assert client.get("/dashboard").status_code == 200
        page = client.get("/dashboard/account")
        assert "/dashboard/account/2fa/off" not in page.text
        off = client.post(
            "/dashboard/account/2fa/off",
            data={"csrf_token": csrf_of(page.text), "code": code_at(secret, 1)},
        )
        assert off.status_code == 422 and "requires two-step sign-in" in off.text
        assert (
            client.post("/dashboard/logout", data={"csrf_token": csrf_of(page.text)}).status_code
            == 303
        )


def test_wrong_codes_count_against_the_account_across_attempts(live: LiveServer) -> None:
    # A thief with the password opens attempt after attempt: each wrong code counts, a right
    # password never resets the count, and the account locks as for wrong passwords.
    live.add_staff("zack", Role.DOCTOR, "Dr Zack")
    first, secret = enrol(live, "zack")
    first.close()
    limit = live.runtime.settings.dashboard_account_lock_failures
    fresh = {code_at(secret, k) for k in (-1, 0, 1)}
    wrong = next(c for c in ("123456", "654321", "111111", "222222") if c not in fresh)
    tries = 0
    while tries < limit:
        client, res = password_step(live, "zack")
        with closing(client):
            for _ in range(CHALLENGE_TRIES):
                if tries >= limit:
                    break
                assert give_code(client, wrong).status_code == 401
                tries += 1
    with Session(live.runtime.storage.engine) as s:
        locked = s.exec(
            select(AuditEvent).where(AuditEvent.action == "staff.locked")  # type: ignore[arg-type]
        ).all()
    assert any(e.subject_id == str(live_account_id(live, "zack")) for e in locked)
    # Locked: the right password opens no code step until the lock runs out.
    client, res = sign_in(live.url, "zack", next_="/dashboard/account")
    with closing(client):
        assert res.status_code == 401 and CHALLENGE_COOKIE not in client.cookies


def test_a_recovery_code_signs_in_once(live: LiveServer) -> None:
    live.add_staff("quinn", Role.DOCTOR, "Dr Quinn")
    first, _secret = enrol(live, "quinn")
    first.close()
    code = RECOVERED["quinn"][0]
    client, _ = password_step(live, "quinn")
    with closing(client):
        used = give_code(client, code.lower())  # typed in lower case: still the code
        assert used.status_code == 303 and client.get("/dashboard").status_code == 200
        page = client.get("/dashboard/account").text
        assert "9 unused" in page and "recovery code used" in page
    thief, _ = password_step(live, "quinn")
    with closing(thief):
        assert give_code(thief, code).status_code == 401  # once only


def live_account_id(live: LiveServer, username: str) -> int:
    with Session(live.runtime.storage.engine) as s:
        from bot.storage.tables import StaffUser

        row = s.exec(select(StaffUser).where(StaffUser.username == username)).one()
        assert row.id is not None
        return row.id


def test_the_owner_sees_their_sign_ins_and_ends_one(live: LiveServer) -> None:
    live.add_staff("uma", Role.DOCTOR, "Dr Uma")
    laptop, _ = sign_in(live.url, "uma")
    phone, _ = sign_in(live.url, "uma")
    with closing(laptop), closing(phone):
        page = laptop.get("/dashboard/account").text
        listed = page.split('id="sign-ins"', 1)[1].split("</section>", 1)[0]
        assert listed.count("<li>") == 2 and "(this browser)" in listed
        other = re.search(r"/dashboard/account/sessions/(\d+)/end", listed)
        assert other is not None
        done = laptop.post(other.group(0), data={"csrf_token": csrf_of(page)})
        assert done.status_code == 303 and done.headers["location"].endswith("signed_out")
        assert phone.get("/dashboard/account").status_code == 303  # the phone is signed out
        assert laptop.get("/dashboard/account").status_code == 200  # this one is not
        events = laptop.get("/dashboard/account").text
        listed = events.split('id="sign-ins"', 1)[1].split("</section>", 1)[0]
        assert listed.count("<li>") == 1
