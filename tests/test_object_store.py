"""Builds in object storage (`--output s3://bucket/prefix`) against a real S3-compatible server (moto's, on
127.0.0.1, tests/s3server.py) through s3fs: the same bytes as a local build, resume from another machine,
the lease lock, bad URLs, and reading the build back (load_dataset with storage_options, export).

One tiny build into the store and one local build per module; each test copies the store's build to a
prefix of its own (server-side copies) when it needs to change it. "Another machine" is a fresh
$SYNTHVLM_CACHE (conftest `private_cache`): the local copy of the store lives there.
"""
import json
import os
import socket
import time

import pyarrow.parquet as pq
import pytest

from buildutil import cli, read_rows, write_recipe
from synthvlm_builder import layout

RECIPE = {"n_captions": 12, "shard_size": 4, "size": 6}  # 3 shards


@pytest.fixture(scope="module")
def built(s3, tmp_path_factory):
    """(recipe, local build dir, bucket/prefix of the same build in the store, the build's CLI output)."""
    d = tmp_path_factory.mktemp("objstore")
    recipe = write_recipe(d / "r", **RECIPE)
    cli(recipe, "--output", d / "local")
    prefix = f"{s3.bucket()}/ds"
    proc = cli(recipe, "--output", f"s3://{prefix}")
    return recipe, d / "local", prefix, proc


def copy_prefix(s3, src: str, dst: str, skip=lambda rel: False) -> None:
    for rel in s3.keys(src):
        if not skip(rel):
            s3.fs.copy(f"{src}/{rel}", f"{dst}/{rel}")


def store_rows(s3, prefix: str, tmp_path) -> list[dict]:
    rows = []
    for rel in [k for k in s3.keys(prefix) if k.startswith("data/")]:
        s3.fs.get_file(f"{prefix}/{rel}", str(tmp_path / "x.parquet"))
        rows += pq.read_table(tmp_path / "x.parquet").to_pylist()
    return rows


def shard_keys(s3, prefix: str) -> list[str]:
    return [k.rsplit("/", 1)[1] for k in s3.keys(prefix) if "/shards/" in k]


@pytest.mark.slow  # on the module's two builds (a local one and one in the store): ~13 s
def test_build_in_the_store_equals_the_local_build(s3, built, tmp_path, monkeypatch):
    recipe, local, prefix, proc = built
    assert f"built 6 rows -> s3://{prefix}" in proc.stderr and "storage_options" in proc.stderr
    keys = s3.keys(prefix)
    local_files = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()
                         and layout.WORK not in p.parts)
    assert [k for k in keys if not k.startswith(layout.WORK)] == local_files
    for rel in local_files:  # the release, byte for byte (the card and lock too: same recipe, executor)
        if rel != layout.STATS:  # stats.json holds this run's timings
            assert s3.fs.cat_file(f"{prefix}/{rel}") == (local / rel).read_bytes(), rel
    assert layout.MANIFEST in keys and layout.DIR_LOCK not in keys and layout.JOURNAL not in keys
    assert shard_keys(s3, prefix) == [f"shard-0000{i}.{ext}" for i in range(3) for ext in ("done.json", "parquet")]
    assert not any("/final/" in k for k in keys)  # the staged copy is gone once installed
    # load_dataset reads the store's data files with storage_options (README "Scaling out")
    import datasets
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)  # conftest's: the store is on 127.0.0.1
    ds = datasets.load_dataset("parquet", data_files={"train": f"s3://{prefix}/data/*.parquet"}, split="train",
                               storage_options={"endpoint_url": s3.env["AWS_ENDPOINT_URL"]},
                               cache_dir=str(tmp_path / "hf"))
    assert ds["id"] == [r["id"] for r in read_rows(local)]


@pytest.mark.slow  # on the module's two builds (a local one and one in the store): ~13 s
def test_rerun_from_another_machine_finds_it_built(s3, built, private_cache):
    recipe, _, prefix, _ = built
    before = {k: s3.fs.info(f"{prefix}/{k}")["ETag"] for k in s3.keys(prefix)}
    proc = cli(recipe, "--output", f"s3://{prefix}")
    assert f"s3://{prefix} already holds this build" in proc.stderr and "nothing to do" in proc.stderr
    assert {k: s3.fs.info(f"{prefix}/{k}")["ETag"] for k in s3.keys(prefix)} == before


@pytest.mark.slow  # on the module's two builds (a local one and one in the store): ~13 s
def test_resume_from_another_machine_redoes_only_what_is_missing(s3, built, private_cache, tmp_path):
    """A run stopped before its release (none in the store) that left shard 1's marker damaged: a run on
    another machine checks every shard in the store, keeps shards 0 and 2 and makes shard 1 again.
    (A shard without its marker, after a SIGKILL: test_object_store_cluster.py.)"""
    recipe, local, prefix, _ = built
    dst = f"{prefix.split('/')[0]}/resume"
    release = set(json.loads(s3.fs.cat_file(f"{prefix}/{layout.MANIFEST}"))["files"])
    copy_prefix(s3, prefix, dst, skip=lambda rel: rel in release or rel == layout.MANIFEST)
    marker = next(k for k in s3.keys(dst) if k.endswith("shard-00001.done.json"))
    s3.fs.pipe_file(f"{dst}/{marker}", b'{"shard": 1, "rows": "many"}')
    kept = {i: s3.fs.info(f"{dst}/{marker.replace('00001.done.json', f'0000{i}.parquet')}")["ETag"] for i in (0, 2)}
    proc = cli(recipe, "--output", f"s3://{dst}")
    assert "shard 1: invalid completion marker" in proc.stderr
    assert "resuming: 2 of 3 shards already done and verified" in proc.stderr
    assert {i: s3.fs.info(f"{dst}/{marker.replace('00001.done.json', f'0000{i}.parquet')}")["ETag"]
            for i in (0, 2)} == kept
    assert store_rows(s3, dst, tmp_path) == read_rows(local)


def lease(host: str, pid: int, expires_in: float) -> bytes:
    return json.dumps({"owner": "x", "host": host, "boot": open("/proc/sys/kernel/random/boot_id").read().strip(),
                       "pid": pid, "expires": time.time() + expires_in, "ttl": 120}).encode()


@pytest.mark.slow  # on the module's two builds (a local one and one in the store): ~13 s
def test_the_lock_is_a_lease_in_the_store(s3, built, private_cache, tmp_path):
    recipe, local, prefix, _ = built
    dst = f"{prefix.split('/')[0]}/locked"
    copy_prefix(s3, prefix, dst)
    lock = f"{dst}/{layout.DIR_LOCK}"
    s3.fs.pipe_file(lock, lease("another-host", 1, 3600))  # a live build elsewhere
    before = {k: s3.fs.info(f"{dst}/{k}")["ETag"] for k in s3.keys(dst)}
    for args in ((), ("--overwrite",)):
        proc = cli(recipe, "--output", f"s3://{dst}", *args, check=False)
        assert proc.returncode == 2, proc.stderr
        errors = [line for line in proc.stderr.splitlines() if not line.startswith("note: ")]
        assert errors == [line for line in errors if line.startswith(
            f"error: --output: another synthvlm-build is running in s3://{dst} (host another-host, pid 1;")] != []
    assert {k: s3.fs.info(f"{dst}/{k}")["ETag"] for k in s3.keys(dst)} == before

    s3.fs.pipe_file(lock, b"not a lease")
    proc = cli(recipe, "--output", f"s3://{dst}", check=False)
    assert proc.returncode == 2 and f"corrupt state: s3://{dst}/{layout.DIR_LOCK} is corrupt" in proc.stderr

    for body in (lease("another-host", 1, -5),  # lapsed: its owner stopped renewing it
                 lease(socket.gethostname(), 2 ** 22 + 7, 3600)):  # a process of this machine that is gone
        s3.fs.pipe_file(lock, body)
        proc = cli(recipe, "--output", f"s3://{dst}")
        assert "already holds this build" in proc.stderr
        assert layout.DIR_LOCK not in s3.keys(dst)


def test_bad_store_urls_are_refused_before_any_work(s3, tmp_path):
    recipe = write_recipe(tmp_path / "r", **RECIPE)
    bucket = s3.bucket()
    s3.fs.pipe_file(f"{bucket}/notes/todo.txt", b"mine")
    cases = {"s3://": "--output: s3:// names no bucket and prefix",
             "s3://no-such-bucket-4242/x": "--output: s3://no-such-bucket-4242/x: the bucket no-such-bucket-4242"
                                           " does not exist",
             "nosuchscheme://a/b": "--output: nosuchscheme://a/b: ",
             f"s3://{bucket}/notes": f"--output: s3://{bucket}/notes is not empty and holds no synthvlm build",
             f"s3://{bucket}/a/../b": "names no bucket and prefix"}
    for url, message in cases.items():
        proc = cli(recipe, "--output", url, check=False)
        # (the first run in a process may also show the built-in tiny models being made: not an error)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error")]
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, (url, proc.stderr)
        assert len(errors) == 1 and message in errors[0] and proc.stderr.endswith(errors[0] + "\n"), (url, proc.stderr)
    assert s3.keys(bucket) == ["notes/todo.txt"]


@pytest.mark.slow  # on the module's two builds (a local one and one in the store): ~13 s
def test_export_and_verify_read_a_build_in_the_store(s3, built, tmp_path):
    recipe, local, prefix, _ = built
    cli("export", f"s3://{prefix}", "--llava", tmp_path / "llava")
    cli("export", local, "--llava", tmp_path / "llava-local")
    tree = {p.relative_to(tmp_path / "llava"): p.read_bytes() for p in (tmp_path / "llava").rglob("*") if p.is_file()}
    assert len(tree) == 7 and tree == {p.relative_to(tmp_path / "llava-local"): p.read_bytes()
                                       for p in (tmp_path / "llava-local").rglob("*") if p.is_file()}
    proc = cli("verify", f"s3://{prefix}", "--sample", "1")  # one row regenerated from the store's lock
    assert "1 of 1 row(s) match: verified" in proc.stdout, proc.stdout
    empty = f"{s3.bucket()}/nothing"
    proc = cli("export", f"s3://{empty}", "--llava", tmp_path / "l2", check=False)
    assert proc.returncode == 2 and f"error: DIR: s3://{empty} is not a finished synthvlm build" in proc.stderr
    assert not os.path.exists(tmp_path / "l2")


def test_plan_spreads_the_shards_over_nodes(tmp_path):
    recipe = write_recipe(tmp_path / "r", n_captions=10, shard_size=4, size=4)  # shards of 4, 4, 2 captions
    recipe.write_text(recipe.read_text().replace("      id_column: id\n", "      id_column: id\n      limit: 10\n"))
    rows = {n: cli("plan", recipe, "--nodes", n).stdout.splitlines()[-1] for n in (1, 2, 3, 5)}
    assert rows[1] == "nodes        1: at most 3 shards (20 images) per node"
    assert rows[2] == "nodes        2: at most 2 shards (12 images) per node"  # 8 | 8 + 4
    assert rows[3] == "nodes        3: at most 1 shard (8 images) per node"
    assert rows[5] == "nodes        5: at most 1 shard (8 images) per node"  # two nodes idle
    plan = json.loads(cli("plan", recipe, "--nodes", "2", "--json").stdout)
    assert plan["nodes"] == {"nodes": 2, "shards_per_node": 2, "images_per_node": 12, "wall_seconds": None}
    measured = json.loads(cli("plan", recipe, "--nodes", "2", "--measure", "--json").stdout)
    per_image = measured["measured"]["seconds_per_image"]
    assert measured["nodes"]["wall_seconds"] == round(12 * per_image, 1) and per_image > 0
    for bad, message in (("0", "must be at least 1"), ("two", "is not a whole number")):
        proc = cli("plan", recipe, "--nodes", bad, check=False)
        assert proc.returncode == 2 and proc.stderr.startswith("error: --nodes: ") and message in proc.stderr


@pytest.mark.slow  # on the module's two builds (a local one and one in the store): ~13 s
def test_output_dir_in_the_recipe_may_be_a_store(s3, built, tmp_path):
    """output.dir: s3://... is used as given (never taken relative to the recipe's folder)."""
    recipe, _, prefix, _ = built
    bucket = s3.bucket()
    text = recipe.read_text() + f"output:\n  dir: s3://{bucket}/from-recipe\n"
    (recipe.parent / "in-store.yaml").write_text(text)
    s3.fs.pipe_file(f"{bucket}/from-recipe/notes.txt", b"mine")  # refused before any work: not a build
    proc = cli(recipe.parent / "in-store.yaml", check=False)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.splitlines()[-1]  # located in the recipe: FILE:LINE:COL: output.dir: ...
    assert line.startswith(f"{recipe.parent / 'in-store.yaml'}:") and "Traceback" not in proc.stderr, proc.stderr
    assert f": output.dir: s3://{bucket}/from-recipe is not empty and holds no synthvlm build" in line, line
    assert s3.keys(bucket) == ["from-recipe/notes.txt"]


@pytest.mark.slow  # generates images of its own (the default run keeps the module's two shared builds)
def test_overwrite_replaces_the_release_in_the_store(s3, built, tmp_path):
    """Another recipe's build with --overwrite: the store ends with its release alone (the manifest lists
    every release object there), and the old build's work state is gone."""
    recipe, _, prefix, _ = built
    dst = f"{prefix.split('/')[0]}/overwritten"
    copy_prefix(s3, prefix, dst)
    old_builds = {k.split("/")[2] for k in s3.keys(dst) if k.startswith(layout.BUILDS)}
    other = write_recipe(tmp_path / "other", n_captions=4, shard_size=4, size=2)  # one small shard
    refused = cli(other, "--output", f"s3://{dst}", check=False)
    assert refused.returncode == 2 and "holds another recipe's build" in refused.stderr
    proc = cli(other, "--output", f"s3://{dst}", "--overwrite")
    assert f"built 2 rows -> s3://{dst}" in proc.stderr
    keys = s3.keys(dst)
    manifest = json.loads(s3.fs.cat_file(f"{dst}/{layout.MANIFEST}"))
    assert sorted(manifest["files"]) == [k for k in keys if not k.startswith(layout.WORK)]
    builds = {k.split("/")[2] for k in keys if k.startswith(layout.BUILDS)}
    assert len(builds) == 1 and not builds & old_builds
    assert len(store_rows(s3, dst, tmp_path)) == 2


@pytest.mark.slow  # generates images of its own (the default run keeps the module's two shared builds)
def test_an_install_cut_short_in_the_store_is_completed_by_the_next_run(s3, built, private_cache, tmp_path):
    """Killed mid-install: the release staged in the store, the journal written, the card and a data file
    not yet in place. Readers refuse it; the next run, on any machine, completes it from the store."""
    recipe, local, prefix, _ = built
    dst = f"{prefix.split('/')[0]}/cut-short"
    copy_prefix(s3, prefix, dst)
    manifest = json.loads(s3.fs.cat_file(f"{dst}/{layout.MANIFEST}"))
    key = next(k.split("/")[2] for k in s3.keys(dst) if k.startswith(layout.BUILDS))
    staging = f"{layout.BUILDS}/{key}/{layout.STAGING}"
    for rel in manifest["files"]:
        s3.fs.copy(f"{dst}/{rel}", f"{dst}/{staging}/{rel}")
    s3.fs.pipe_file(f"{dst}/{layout.JOURNAL}", json.dumps({"staging": staging, "files": manifest["files"], "build": {
        k: manifest[k] for k in ("identity", "fingerprint", "inputs")}}).encode())
    data = next(rel for rel in manifest["files"] if rel.startswith("data/"))
    s3.fs.rm_file(f"{dst}/{layout.CARD}")
    s3.fs.rm_file(f"{dst}/{data}")
    refused = cli("export", f"s3://{dst}", "--llava", tmp_path / "llava", check=False)
    assert refused.returncode == 2 and f"s3://{dst}: an install was cut short" in refused.stderr
    proc = cli(recipe, "--output", f"s3://{dst}")
    assert f"completed the install an earlier run left unfinished in s3://{dst}" in proc.stderr
    assert "already holds this build" in proc.stderr
    keys = s3.keys(dst)
    assert layout.JOURNAL not in keys and not any(k.startswith(staging) for k in keys)
    for rel in manifest["files"]:
        if rel != layout.STATS:
            assert s3.fs.cat_file(f"{dst}/{rel}") == (local / rel).read_bytes(), rel


@pytest.mark.slow  # generates images of its own (the default run keeps the module's two shared builds)
def test_a_build_that_lost_its_lease_installs_nothing(s3, tmp_path):
    """Another run takes the lock over while this one generates (as after a pause longer than the TTL):
    this one stops before its install, exit 1, and the store holds no release of it."""
    import threading
    recipe = write_recipe(tmp_path / "r", n_captions=4, shard_size=4, size=2)
    prefix = f"{s3.bucket()}/stolen"
    lock = f"{prefix}/{layout.DIR_LOCK}"

    def steal():
        for _ in range(2000):
            if any(k.endswith(layout.CURATED_INDEX) for k in s3.keys(prefix)):
                s3.fs.pipe_file(lock, lease("another-host", 1, 3600))
                return
            time.sleep(0.01)

    thief = threading.Thread(target=steal, daemon=True)
    thief.start()
    proc = cli(recipe, "--output", f"s3://{prefix}", check=False)
    thief.join(5)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines()[-1].startswith(f"error: lost the lock of s3://{prefix} to another run")
    keys = s3.keys(prefix)
    assert layout.MANIFEST not in keys and layout.CARD not in keys and not any(k.startswith("data/") for k in keys)
    assert json.loads(s3.fs.cat_file(lock))["host"] == "another-host"  # the new owner's lease is left alone
    assert any(k.endswith(layout.CURATED_INDEX) for k in keys)  # and so is the work state it may be using
