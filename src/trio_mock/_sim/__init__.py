"""The simulation's pure core: latency draws, a reply's token schedule (the plan), the text
it says (corpus, text sources, tokenizer), and JSON-schema checking and sampling.

No trio, Quart or ASGI; only ``_config`` below it.
"""
