"""Errors of staff accounts; the CLI and the login page turn them into plain words."""

from bot.errors import CareBotError


class AccountError(CareBotError):
    """A staff account could not be created or changed."""


class InvalidAccount(AccountError):
    """A username, display name, role or password is not acceptable; the message says why."""


class DuplicateAccount(AccountError):
    """The username (or Telegram id) belongs to another account."""


class UnknownAccount(AccountError):
    """No account has that username."""
