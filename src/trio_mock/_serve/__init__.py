"""Trio and ASGI: the front every request meets (id, key, bounded body), the stages that
decide a generation request's exchange, the transport that plays it on schedule (pacing,
the Pacer), load and admission, rate limits, scripted replies, Realtime over WebSocket,
tokenizer work off the loop, and our Hypercorn worker and protocols.

Everything it imports lies below it; only ``_app`` lies above.
"""
