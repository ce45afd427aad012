"""Guideline retrieval and grounded, cited answers."""
