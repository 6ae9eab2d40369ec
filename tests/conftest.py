"""Test-wide settings: offline, CPU, a private model cache.

Set before any test module imports huggingface_hub/datasets (they read these at
import time). Tests that talk to the loopback Hub run their clients in
subprocesses with their own environment.
"""
import os
import signal
import tempfile

# A pytest that a non-interactive shell started in the background inherits SIGINT ignored, and passes that on
# to every process it starts: the Ctrl-C tests (in-process and spawned) need it delivered as a terminal does.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_UPDATE_DOWNLOAD_COUNTS"] = "0"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# OpenMP threads that spin while waiting starve every other process on a 2-core machine (measured:
# a tiny 4-image generation took 7 s instead of 0.1 s beside one other busy process). Passive waiting
# changes no result, only who gets the cores; it must be set before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Built-in tiny models are built once per run into a private cache (CI sets a persistent one).
os.environ.setdefault("SYNTHVLM_CACHE", tempfile.mkdtemp(prefix="synthvlm-test-cache-"))

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from hubserver import HubServer  # noqa: E402

HUB_TOKEN, HUB_USER = "hf_test_token_0123456789", "tester"


@pytest.fixture
def hub(tmp_path):
    """A fresh loopback Hub per test; any namespace that isn't a username is an org `tester` can write to."""
    with HubServer(tmp_path / "hub", tokens={HUB_TOKEN: HUB_USER}) as server:
        yield server
        assert not server.errors, server.errors          # server bugs (clients would retry 500s)
        assert not server.unhandled, server.unhandled    # endpoints the server lacks


@pytest.fixture
def hub_env(hub, tmp_path):
    """Environment for subprocess clients (e.g. `synthvlm-build publish`): HF_ENDPOINT, token, fresh caches."""
    return hub.client_env(tmp_path / "hf_client", token=HUB_TOKEN)


@pytest.fixture(scope="session")
def s3():
    """A local S3-compatible server (tests/s3server.py), one per run; each test takes its own bucket."""
    import importlib.util
    if not (importlib.util.find_spec("s3fs") and importlib.util.find_spec("moto")):
        from buildutil import missing_tool
        missing_tool('no s3fs or moto: pip install -e ".[dev]" brings both (the object-store tests)')
    from s3server import S3Server
    server = S3Server()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def quickstart(tmp_path_factory):
    """The quickstart, end to end in its own process exactly as the README runs it; built once per run."""
    from buildutil import ROOT, cli_process
    out = tmp_path_factory.mktemp("qs") / "out"
    proc = cli_process(ROOT / "recipes/quickstart.yaml", "--output", out)
    return out, proc


def readme_site(folder: Path, quickstart_out: Path) -> Path:
    """A folder where the README's commands find what they name: the quickstart's build at
    build/synthvlm-quickstart-v0.1.0 (a link to the session's) and recipes/."""
    from buildutil import ROOT, docs
    (folder / docs.QUICKSTART_BUILD).parent.mkdir(parents=True, exist_ok=True)
    (folder / docs.QUICKSTART_BUILD).symlink_to(quickstart_out, target_is_directory=True)
    (folder / "recipes").symlink_to(ROOT / "recipes", target_is_directory=True)
    return folder


@pytest.fixture(scope="session")
def quickstart_verified(quickstart, tmp_path_factory):
    """The README's `readme:run verify` block, run once on the quickstart's build (tests/test_readme.py
    compares its output with the README's; tests/test_verify.py checks what it says)."""
    from buildutil import ROOT, cli, docs
    site = readme_site(tmp_path_factory.mktemp("readme-verify"), quickstart[0])
    (block,) = [b for b in docs.readme_blocks((ROOT / "README.md").read_text()) if b.kind == "run" and b.name == "verify"]
    (words,) = docs.commands(block)
    assert words[:2] == ["synthvlm-build", "verify"], words
    return cli(*words[1:], cwd=site)


@pytest.fixture(scope="session")
def shard_clean(tmp_path_factory):
    """tests/test_resume.py's six-shard recipe built to the end, once per run (the resume tests and the Ray
    executor's compare with it); tests copy it before changing anything."""
    from buildutil import cli
    from test_resume import shard_recipe
    d = tmp_path_factory.mktemp("shard-clean")
    recipe = shard_recipe(d / "r")
    cli(recipe, "--output", d / "out")
    return recipe, d / "out"


@pytest.fixture(scope="session")
def shard_killed(tmp_path_factory):
    """The same recipe's build in a fresh process that got SIGKILL while shard 2 was half written, once per
    run: (recipe, output dir, the killed process). Tests resume copies of it (locally, on Ray)."""
    from test_resume import shard_recipe, start_and_kill
    d = tmp_path_factory.mktemp("shard-killed")
    recipe = shard_recipe(d / "r")
    return recipe, d / "out", start_and_kill(recipe, d / "out", at=2)


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """A fresh $SYNTHVLM_CACHE (so the caption stage's caches start empty) that shares the session's
    built-in models instead of building them again."""
    shared = Path(os.environ["SYNTHVLM_CACHE"]) / "builtin"
    shared.mkdir(parents=True, exist_ok=True)
    cache = tmp_path / "synthvlm-cache"
    cache.mkdir()
    (cache / "builtin").symlink_to(shared)
    monkeypatch.setenv("SYNTHVLM_CACHE", str(cache))
    monkeypatch.setenv("SYNTHVLM_LLM_RETRY_WAIT", "0.01")
    return cache
