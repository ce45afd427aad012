"""CareBot's exception hierarchy; translated into patient-facing text only at the edges."""


class CareBotError(Exception):
    """Base of every error CareBot raises on purpose."""


class ConfigError(CareBotError):
    """A setting is missing or invalid; the message names the variable."""


class LLMUnavailable(CareBotError):
    """The language model could not produce an answer (down, timed out, malformed)."""


class MemoryUnavailable(CareBotError):
    """Session memory (Redis or the embedded store) cannot be reached."""


class StorageUnavailable(CareBotError):
    """The database cannot be written or read (locked, down, full)."""


class LLMBusy(LLMUnavailable):
    """The language model is busy and its waiting line is full: answer without it now."""
