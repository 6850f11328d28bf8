"""The simulation's pure core: latency draws, a reply's token schedule (the plan), its
deadlines and its timeline (cut by a fault or a time limit), the text it says (corpus,
text sources, tokenizer), and JSON-schema checking and sampling.

No trio, Quart or ASGI; only ``_config`` below it.
"""
