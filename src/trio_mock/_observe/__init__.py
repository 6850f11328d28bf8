"""What was received and sent, and when: the request record and journal, the schedule-lag
measure, Prometheus metrics, logs.

No Quart or ASGI; below it ``_config``, ``_sim`` and ``_openai``.
"""
