"""Named presets: a few knobs each, applied under whatever else is set (``--profile``).

Each preset's figures are rough, public-order-of-magnitude numbers, not measurements of any
one deployment: tune the knobs to what you observe from your own server.
"""

from __future__ import annotations

from typing import Any

PROFILES: dict[str, dict[str, Any]] = {
    # No waiting at all: for functional tests and for measuring the client itself.
    "instant": {
        "ttft_ms": 0.0,
        "ttft_jitter_ms": 0.0,
        "itl_ms": 0.0,
        "itl_jitter_ms": 0.0,
        "embedding_ms": 0.0,
        "embedding_ms_per_token": 0.0,
    },
    # A hosted API's small model (gpt-4o-mini class): public leaderboards put TTFT around
    # 0.3-0.6 s with a long tail, and output near 80-100 tokens/s (ITL ~10-12 ms).
    "fast-api": {
        "ttft_distribution": "lognormal",
        "ttft_ms": 450.0,
        "ttft_jitter_ms": 150.0,
        "itl_distribution": "normal",
        "itl_ms": 12.0,
        "itl_jitter_ms": 4.0,
        "itl_min_ms": 2.0,
        "output_tokens_mean": 300.0,
        "output_tokens_stddev": 120.0,
    },
    # An 8B model under vLLM on one H100: prefill runs at ~20k tokens/s (0.05 ms a token),
    # decode ~7 ms a token alone and ~11 ms at batch 64 (+0.9 % per running request);
    # vLLM's default max_num_seqs is 256. For --engine batched (README "Batched engine"):
    # a step of B sequences takes 7 + 0.05 (B - 1) ms up to the knee at 128, where decode
    # turns compute-bound, then 0.07 ms more per sequence: 22 ms at 256, ~11.5k output
    # tokens/s, the order of the ~12.5k public runs report for Llama-3.1-8B on one H100.
    "vllm-8b-h100": {
        "ttft_distribution": "normal",
        "ttft_ms": 25.0,
        "ttft_jitter_ms": 5.0,
        "prefill_ms_per_token": 0.05,
        "ttft_load_factor": 0.05,
        "itl_distribution": "normal",
        "itl_ms": 7.0,
        "itl_jitter_ms": 0.5,
        "itl_load_factor": 0.009,
        "max_concurrency": 256,
        "max_num_seqs": 256,
        "max_num_batched_tokens": 8192,
        "engine_seq_ms": 0.05,
        "engine_knee_seqs": 128,
        "engine_past_knee_ms": 0.07,
        "output_tokens_mean": 256.0,
        "output_tokens_stddev": 96.0,
    },
    # A server past its capacity: slow, queueing, and turning requests away.
    "overloaded": {
        "ttft_distribution": "lognormal",
        "ttft_ms": 2000.0,
        "ttft_jitter_ms": 1000.0,
        "ttft_load_factor": 0.2,
        "itl_distribution": "lognormal",
        "itl_ms": 60.0,
        "itl_jitter_ms": 30.0,
        "itl_load_factor": 0.05,
        "max_concurrency": 8,
        "max_queue": 16,
        "queue_timeout_s": 30.0,
        "overload_status": 503,
    },
    # Bifrost's mocker with -big-payload: ~10 KB replies (corpus text runs ~4 bytes a
    # token) and long embeddings; the latency stays whatever else sets it.
    "big-payload": {
        "output_tokens_distribution": "fixed",
        "output_tokens_mean": 2500.0,
        "embedding_dimensions": 4096,
    },
}
