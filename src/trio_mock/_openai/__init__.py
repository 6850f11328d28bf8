"""OpenAI's wire format, pure: request models and their conversion, validation, errors in
OpenAI's shape, the mock model that answers a request's ask, the bytes of bodies and SSE
frames, the planned exchange a request's stages decide, and the Realtime API's events.

No trio, Quart or ASGI; ``_config`` and ``_sim`` below it.
"""
