"""``trio-mock fit CASSETTE``: a profile fitted to a recording, printed as TOML.

The profile (``[latency]`` and ``[output]`` knobs, with comments naming the best family
and its Kolmogorov-Smirnov distance) loads with ``--config``, so generated traffic takes the
recorded backend's shape.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Sequence

from .._openai._cassette import CassetteError
from .._openai._timings import timings
from .._serve._replay import load_cassette
from .._sim._fit import profile_toml


def fit_main(argv: Sequence[str]) -> int:
    """Run ``trio-mock fit``; the exit status (2 for an unusable cassette)."""
    parser = argparse.ArgumentParser(
        prog="trio-mock fit",
        description="Fit the latency model (TTFT, ITL, output length) to a cassette's "
        "streams and print the profile as TOML (load it with --config).",
    )
    parser.add_argument("cassette", metavar="CASSETTE", help="a JSONL cassette (--cassette)")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the profile here")
    args = parser.parse_args(argv)
    try:
        measured = timings(load_cassette(args.cassette).recordings)
        if not measured.ttft_ms:
            raise CassetteError(f"{args.cassette}: no streamed answer with text to fit")
        profile = profile_toml(args.cassette, measured.ttft_ms, measured.itl_ms, measured.lengths)
    except CassetteError as error:
        print(f"trio-mock fit: error: {error}", file=sys.stderr)
        return 2
    note = f"# {measured.streams} streams"
    if measured.coalesced:
        note += f"; {measured.coalesced} gaps of 0 left out (chunks that arrived together)"
    profile = profile.replace("\n", f"\n{note}\n", 1)
    if args.output:
        pathlib.Path(args.output).write_text(profile, encoding="utf-8")
    else:
        sys.stdout.write(profile)
    return 0
