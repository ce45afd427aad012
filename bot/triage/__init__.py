"""Triage: deterministic red-flag rules first; the LLM classifier comes with the triage issue."""
