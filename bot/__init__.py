"""CareBot: a self-hostable telemedicine chat assistant."""

__version__ = "0.1.0"
