"""Test-wide settings: offline, CPU, a private model cache.

Set before any test module imports huggingface_hub/datasets (they read these at
import time). Tests that talk to the loopback Hub run their clients in
subprocesses with their own environment.
"""
import os
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_UPDATE_DOWNLOAD_COUNTS"] = "0"
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Built-in tiny models are built once per run into a private cache (CI sets a persistent one).
os.environ.setdefault("SYNTHVLM_CACHE", tempfile.mkdtemp(prefix="synthvlm-test-cache-"))
