"""The Telegram channel: python-telegram-bot over the one conversation engine."""

from bot.channels.telegram.app import start_telegram

__all__ = ["start_telegram"]
