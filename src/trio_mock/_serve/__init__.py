"""Trio and ASGI: the generation endpoints that read, plan and play an answer on schedule
(pacing, the Pacer), load and admission, rate limits, auth, scripted replies, Realtime over
WebSocket, tokenizer work off the loop, and our Hypercorn worker.

Everything it imports lies below it; only ``_app`` lies above.
"""
