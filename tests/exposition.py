"""Reading a Prometheus text exposition in tests: samples by name and label set."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Labels = frozenset[tuple[str, str]]
Samples = dict[tuple[str, Labels], float]


def parse(text: str) -> Samples:
    """Every sample of a text exposition but ``_created``, by name and label set."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.endswith("_created"):
                out[sample.name, frozenset(sample.labels.items())] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples carrying (at least) ``labels``; 0 when there is none."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def by_label(samples: Samples, name: str, *keys: str) -> dict[tuple[str, ...], float]:
    """``name``'s non-zero samples keyed by the values of ``keys``."""
    out: dict[tuple[str, ...], float] = {}
    for (n, ls), v in samples.items():
        if n == name and v:
            labels = dict(ls)
            key = tuple(labels[k] for k in keys)
            out[key] = out.get(key, 0) + v
    return out
