"""Signing a staff account in at a terminal, as the dashboard does: its password, and a code
from its authenticator app when it has two-step sign-in. Commands that change what CareBot
says or keeps (`carebot prompts`, `carebot records`) act as the account signed in, never as
a typed name."""

from __future__ import annotations

import asyncio
import getpass
import sys

import typer

from bot.dashboard.accounts import StaffAccount, StaffAccounts
from bot.dashboard.two_factor import TwoFactor
from bot.storage.repository import Storage


def fail(message: str, code: int = 1) -> typer.Exit:
    """Say why on standard error; the exit to raise."""
    typer.echo(f"carebot: {message}", err=True)
    return typer.Exit(code)


def sign_in(storage: Storage, username: str, password_stdin: bool) -> StaffAccount:
    """Sign `username` in; raise typer.Exit when that fails.

    With `--password-stdin` the password is the first line of standard input and the code,
    for an account with two-step sign-in, the second.
    """

    def ask(prompt: str) -> str:
        if password_stdin:
            return sys.stdin.readline().rstrip("\r\n")
        return getpass.getpass(prompt)

    password = ask(f"Password for {username}: ")
    result = asyncio.run(StaffAccounts(storage).authenticate(username, password, "cli"))
    account = result.account
    if account is None:
        raise fail("not signed in: wrong username or password, or the account is locked")
    if account.two_factor:
        code = ask(f"Code from {username}'s authenticator app: ")
        if not asyncio.run(TwoFactor(storage).verify(account, code, "cli")):
            raise fail("not signed in: the code is wrong or was used already")
    return account
