"""Scaling out without a shared filesystem (README "Scaling out"), with real parts, offline: moto's S3
server (tests/s3server.py) and a simulated Ray cluster (`ray.cluster_utils.Cluster`: a head that runs no
work and two worker nodes, the actors' disks only scratch). The quickstart builds into the store while a
worker node is removed half-way through a shard, and equals the local quickstart byte for byte, and
publishes from the store; a driver killed with SIGKILL is resumed by a fresh process that pushes the
release to the loopback Hub. Slow: one cluster for the module (seconds per node)."""
import glob
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest

from buildutil import ROOT, cli, cli_process, read_rows, write_recipe
from synthvlm_builder import layout
from test_resume import start_and_kill

pytest.importorskip("ray.data", reason="the ray extra is not installed")
pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(s3):
    """Head (the driver's node, no CPUs for work) + 2 worker nodes of 2 CPUs: 3 nodes. Started after the
    S3 server, so every node's processes find it (AWS_ENDPOINT_URL)."""
    os.environ.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    import ray
    from ray.cluster_utils import Cluster
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [c.add_node(num_cpus=2) for _ in range(2)]
    ray.init(address=c.address)
    yield c, workers
    ray.shutdown()
    c.shutdown()


def remove_mid_shard(c, nodes, s3, prefix: str, seen: dict) -> threading.Thread:
    """Remove the worker node on which an actor has half written a shard (a temp file in its scratch
    folder, named after its node) as soon as one has; `seen` records the shard and the markers the store
    held then."""
    pattern = os.path.join(tempfile.gettempdir(), "synthvlm-actor-*", "shards", ".shard-*")
    by_id = {node.node_id[:16]: node for node in nodes}

    def watch():
        deadline = time.time() + 600
        while time.time() < deadline:
            for partial in glob.glob(pattern):
                node = by_id.get(Path(partial).parents[1].name.split("-")[2])
                if node is not None:
                    seen["shard"] = int(Path(partial).name.split("-")[1].split(".")[0])
                    seen["markers"] = [k for k in s3.keys(prefix) if k.endswith(".done.json")]
                    c.remove_node(node)
                    return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_quickstart_on_a_cluster_losing_a_node_equals_local_and_publishes(s3, cluster, quickstart, hub,
                                                                         hub_env, tmp_path):
    c, workers = cluster
    local, _ = quickstart
    recipe = tmp_path / "recipes" / "quickstart.yaml"
    shutil.copytree(ROOT / "recipes", tmp_path / "recipes")
    recipe.write_text(recipe.read_text() + "  ray:\n    workers: 2\n")  # one actor per worker node
    prefix = f"{s3.bucket()}/quickstart"
    seen: dict = {}
    watcher = remove_mid_shard(c, workers, s3, prefix, seen)
    proc = cli(recipe, "--output", f"s3://{prefix}", "--executor", "ray")
    watcher.join(1)
    assert "shard" in seen, "no shard was in progress on the removed node"
    assert f"{seen['shard']:05d}.done.json" not in " ".join(seen["markers"])  # its shard was redone elsewhere
    assert f"built 24 rows -> s3://{prefix}" in proc.stderr
    data = sorted(k for k in s3.keys(prefix) if k.startswith("data/"))
    assert data == sorted(p.relative_to(local).as_posix() for p in (local / "data").iterdir())
    for rel in data + [layout.CAPTIONS]:  # the rows, byte for byte
        assert s3.fs.cat_file(f"{prefix}/{rel}") == (local / rel).read_bytes(), rel
    stats = json.loads(s3.fs.cat_file(f"{prefix}/{layout.STATS}"))
    assert stats["timing"]["images"] == json.loads((local / layout.STATS).read_text())["timing"]["images"]
    events = [json.loads(x) for k in s3.keys(prefix) if k.endswith(layout.EVENTS)
              for x in s3.fs.cat_file(f"{prefix}/{k}").decode().splitlines()]
    done = sorted(e["shard"] for e in events if e["event"] == "shard_done")
    assert done == list(range(len(done))) and len(done) == 2  # each shard counted once

    cli("publish", f"s3://{prefix}", "--repo-id", "tester/from-store", env=hub_env)
    for rel in data + [layout.CAPTIONS]:  # the Hub release holds the local build's rows
        assert hub.read_file("tester/from-store", rel) == (local / rel).read_bytes(), rel


def test_driver_killed_then_a_fresh_process_resumes_and_pushes(s3, hub, hub_env, tmp_path):
    recipe = write_recipe(tmp_path / "r", n_captions=12, shard_size=2, size=6,
                          extra="publish:\n  repo_id: tester/tiny\n")
    cli(recipe, "--output", tmp_path / "local")
    prefix = f"{s3.bucket()}/tiny"
    killed = start_and_kill(recipe, f"s3://{prefix}", at=2)
    assert killed.returncode == -9
    keys = s3.keys(prefix)
    assert [k.rsplit("/", 1)[1] for k in keys if k.endswith(".done.json")] == [
        "shard-00000.done.json", "shard-00001.done.json"]
    assert layout.DIR_LOCK in keys and layout.MANIFEST not in keys  # the dead driver's lease is left
    cache = tmp_path / "another-machine"  # a fresh local copy; the built-in models are shared
    (cache).mkdir()
    (cache / "builtin").symlink_to(Path(os.environ["SYNTHVLM_CACHE"]) / "builtin")
    proc = cli_process(recipe, "--output", f"s3://{prefix}", "--push", env={**hub_env, "SYNTHVLM_CACHE": str(cache)})
    assert "resuming: 2 of 6 shards already done and verified" in proc.stderr
    assert layout.DIR_LOCK not in s3.keys(prefix)
    local = tmp_path / "local"
    for rel in json.loads((local / layout.MANIFEST).read_text())["files"]:
        if rel not in (layout.STATS, layout.CARD):  # this run's timings
            assert hub.read_file("tester/tiny", rel) == (local / rel).read_bytes(), rel
    assert read_rows(local)
