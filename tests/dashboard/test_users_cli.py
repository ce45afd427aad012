"""`carebot users add|list|disable` as an administrator runs them."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from bot.dashboard.accounts import LoginFailure, StaffAccounts
from bot.storage.repository import Storage, make_engine

CAREBOT = [sys.executable, "-m", "bot.cli", "users"]
PASSWORD = "a long enough password"


def users(tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAREBOT_")}
    env.update(CAREBOT_DATA_DIR=str(tmp_path / "data"), COLUMNS="200")  # no wrapped errors
    return subprocess.run(
        [*CAREBOT, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )


async def sign_in(tmp_path: Path, username: str, password: str = PASSWORD) -> LoginFailure | None:
    storage = Storage(make_engine(f"sqlite:///{tmp_path / 'data' / 'carebot.db'}"))
    try:
        return (await StaffAccounts(storage).authenticate(username, password)).failure
    finally:
        storage.engine.dispose()


async def test_add_list_disable(tmp_path: Path) -> None:
    out = users(
        tmp_path,
        *("add", "Ada", "--role", "doctor", "--name", "Dr Ada", "--telegram-id", "4242"),
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "created doctor ada (Dr Ada)\n"
    assert PASSWORD not in out.stdout + out.stderr
    assert await sign_in(tmp_path, "ada") is None
    # The database (staff password hashes here, patients' words in a deployment) and its
    # folder are for CareBot's user alone.
    data = tmp_path / "data"
    for path in (data, *data.glob("carebot.db*")):
        assert path.stat().st_mode & 0o077 == 0, f"{path.name}: {path.stat().st_mode:o}"

    out = users(
        tmp_path, "add", "olly", "--role", "operator", "--name", "Olly", stdin=f"{PASSWORD}\n" * 2
    )
    assert out.returncode == 0, out.stderr  # asked twice (from stdin when there is no terminal)

    listing = users(tmp_path, "list").stdout.splitlines()
    assert listing[0].split() == ["USERNAME", "NAME", "ROLE", "TELEGRAM", "2FA", "STATE"]
    assert listing[1].split() == ["ada", "Dr", "Ada", "doctor", "4242", "-", "active"]
    assert listing[2].split() == ["olly", "Olly", "operator", "-", "-", "active"]

    out = users(tmp_path, "disable", "ada")
    assert out.returncode == 0 and out.stdout.startswith("disabled ada")
    assert "disabled" in users(tmp_path, "list").stdout.splitlines()[1]
    assert await sign_in(tmp_path, "ada") is LoginFailure.DISABLED


@pytest.fixture(scope="module")
def with_ada(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("users")
    add = ["add", "ada", "--role", "doctor", "--name", "Dr Ada", "--password-stdin"]
    out = users(folder, *add, stdin=PASSWORD)
    assert out.returncode == 0, out.stderr
    return folder


@pytest.mark.parametrize(
    ("command", "stdin", "code", "message"),
    [
        ("add ada --role doctor --name 'Dr A2' --password-stdin", PASSWORD, 1,
         "a user named 'ada' already exists"),
        ("add bob --role nurse --name Bob --password-stdin", PASSWORD, 2,
         "'nurse' is not one of 'doctor', 'operator', 'admin'"),
        ("add bob --role doctor --name Bob --password-stdin", "short", 2,
         "a password needs at least 10 characters"),
        ("add bob --role doctor --name Bob", f"{PASSWORD}\nanother password\n", 2,
         "the passwords differ; nothing was saved"),
        ("add 'bob smith' --role doctor --name Bob --password-stdin", PASSWORD, 1,
         "use 2-64 letters"),
        ("disable nobody", "", 1, "no user named 'nobody'"),
    ],
    ids=["duplicate", "bad-role", "short-password", "passwords-differ", "bad-username", "unknown"],
)  # fmt: skip
async def test_mistakes_get_a_clear_message_and_change_nothing(
    with_ada: Path, command: str, stdin: str, code: int, message: str
) -> None:
    out = users(with_ada, *shlex.split(command), stdin=stdin)
    assert out.returncode == code, out.stderr
    assert message in " ".join(out.stderr.split())
    storage = Storage(make_engine(f"sqlite:///{with_ada / 'data' / 'carebot.db'}"))
    try:
        accounts = await StaffAccounts(storage).all()
    finally:
        storage.engine.dispose()
    assert [(a.username, a.display_name, a.disabled) for a in accounts] == [
        ("ada", "Dr Ada", False)
    ]


async def test_an_administrator_resets_a_forgotten_password(tmp_path: Path) -> None:
    add = ["add", "ida", "--role", "doctor", "--name", "Dr Ida", "--password-stdin"]
    assert users(tmp_path, *add, stdin=PASSWORD + "\n").returncode == 0
    new = "the second long password"
    out = users(tmp_path, "reset-password", "ida", "--password-stdin", stdin=new + "\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("new password for ida (signed out of 0 session(s);")
    assert new not in out.stdout + out.stderr
    assert await sign_in(tmp_path, "ida") is LoginFailure.WRONG
    assert await sign_in(tmp_path, "ida", new) is None
    missing = users(tmp_path, "reset-password", "nobody", "--password-stdin", stdin=new + "\n")
    assert missing.returncode == 1 and "no user named 'nobody'" in missing.stderr


async def test_an_administrator_turns_off_two_step_sign_in_for_a_lost_phone(
    tmp_path: Path,
) -> None:
    import pyotp

    from bot.dashboard.two_factor import STEP_S, TwoFactor

    add = ["add", "ivo", "--role", "doctor", "--name", "Dr Ivo", "--password-stdin"]
    assert users(tmp_path, *add, stdin=PASSWORD + "\n").returncode == 0
    storage = Storage(make_engine(f"sqlite:///{tmp_path / 'data' / 'carebot.db'}"))
    try:
        ivo = (await StaffAccounts(storage).authenticate("ivo", PASSWORD)).account
        assert ivo is not None
        factor = TwoFactor(storage)
        secret = (await factor.begin(ivo)).secret
        code = pyotp.TOTP(secret, interval=STEP_S).now()
        assert await factor.confirm(ivo, code)
    finally:
        storage.engine.dispose()
    assert users(tmp_path, "list").stdout.splitlines()[1].split()[-2] == "on"

    out = users(tmp_path, "reset-2fa", "Ivo")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("two-step sign-in off for ivo")
    assert users(tmp_path, "list").stdout.splitlines()[1].split()[-2] == "-"
    missing = users(tmp_path, "reset-2fa", "nobody")
    assert missing.returncode == 1 and "no user named 'nobody'" in missing.stderr


async def test_an_administrator_reset_ends_the_telegram_link_and_can_unlink_and_enable(
    tmp_path: Path,
) -> None:
    # A stolen dashboard session could have linked the thief's Telegram: a reset of the
    # password (or of the second factor) must end that link as well as the sign-ins.
    add = ["add", "kai", "--role", "doctor", "--name", "Dr Kai", "--telegram-id", "777"]
    assert users(tmp_path, *add, "--password-stdin", stdin=PASSWORD + "\n").returncode == 0
    new = "the second long password"
    out = users(tmp_path, "reset-password", "kai", "--password-stdin", stdin=new + "\n")
    assert out.returncode == 0, out.stderr
    assert users(tmp_path, "list").stdout.splitlines()[1].split()[4] == "-"  # no Telegram

    add = ["add", "lou", "--role", "doctor", "--name", "Dr Lou", "--telegram-id", "778"]
    assert users(tmp_path, *add, "--password-stdin", stdin=PASSWORD + "\n").returncode == 0
    out = users(tmp_path, "unlink-telegram", "lou")
    assert out.returncode == 0 and out.stdout == "unlinked lou from Telegram\n"
    assert users(tmp_path, "unlink-telegram", "lou").stdout == "lou had no Telegram link\n"
    assert users(tmp_path, "unlink-telegram", "nobody").returncode == 1

    assert users(tmp_path, "disable", "lou").returncode == 0
    assert await sign_in(tmp_path, "lou") is LoginFailure.DISABLED
    out = users(tmp_path, "enable", "lou")
    assert out.returncode == 0 and out.stdout == "enabled lou\n"
    assert await sign_in(tmp_path, "lou") is None


async def test_an_access_review_and_a_role_change(tmp_path: Path) -> None:
    for name, role in (("amy", "doctor"), ("oz", "operator")):
        add = ["add", name, "--role", role, "--name", name.title(), "--password-stdin"]
        assert users(tmp_path, *add, stdin=PASSWORD + "\n").returncode == 0
    assert await sign_in(tmp_path, "amy") is None
    review = users(tmp_path, "review").stdout.splitlines()
    assert review[0].split()[:3] == ["USERNAME", "ROLE", "CAN"]
    amy = next(line for line in review if line.startswith("amy"))
    oz = next(line for line in review if line.startswith("oz"))
    assert "read cases" in amy and "approve safety texts" in amy and "OFF" in amy
    assert "UTC" in amy and oz.rstrip().endswith("never")  # amy signed in; oz never did
    assert "edit prompts" in oz and "read cases" not in oz
    out = users(tmp_path, "set-role", "oz", "doctor")
    assert out.returncode == 0 and out.stdout.startswith("oz is now doctor")
    oz = next(
        line for line in users(tmp_path, "review").stdout.splitlines() if line.startswith("oz")
    )
    assert "read cases" in oz and "edit prompts" not in oz
    assert users(tmp_path, "set-role", "oz", "king").returncode != 0
