"""The whole-run log scan itself: it catches what it must, and not ordinary log lines."""

from __future__ import annotations

import logging

import pytest

from tests.log_scan import LogScan


@pytest.mark.parametrize(
    ("line", "what"),
    [
        ("GET https://api.telegram.org/bot123:TEST/getUpdates", "a bot token"),
        ("token 1234567890:AAHfakefakefakefakefakefakefakefake12 in a URL", "a bot token"),
        ("sign-in for ada with password correct horse battery staple", "a password"),
        ("turn for chat 7: 'Crushing chest pain and sweating'", "a patient's words"),
    ],
)
def test_leaks_are_found(line: str, what: str) -> None:
    scan = LogScan()
    scan.handle(logging.LogRecord("bot.engine", logging.INFO, __file__, 1, line, None, None))
    assert [f.what for f in scan.findings] == [what]


def test_ordinary_lines_and_the_tests_own_fakes_pass() -> None:
    scan = LogScan()
    for name, line in [
        ("bot.engine", "turn 3 for chat telegram:84 took 12.5 ms (EM-CHEST-PAIN, emergency)"),
        ("bot.dashboard.accounts", "staff account 4 signed in at 05:12:33"),
        ("tests.bot_api", "fake server got /bot123:TEST/sendMessage"),  # the test's own fake
    ]:
        scan.handle(logging.LogRecord(name, logging.INFO, __file__, 1, line, None, None))
    assert scan.findings == [] and scan.scanned == 2
