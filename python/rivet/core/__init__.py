"""The leaf layer: redaction, events, run ids, failpoints and retries.

With rivet.errors and rivet._native it imports nothing of rivet above it.
"""
