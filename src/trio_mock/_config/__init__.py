"""Configuration: every knob declared once (CLI, environment, TOML, runtime), its ranges,
the profiles, the usable CPUs, and the fault spec the knobs name.

Pure (no trio, Quart or ASGI) and the lowest layer: it imports no other.
"""
