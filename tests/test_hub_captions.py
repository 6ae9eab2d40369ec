"""Hub caption sources read through the loopback Hub at a pinned revision.

A private caption dataset in the Hub layout gets two commits with different captions; the first is
tagged `v1`. `synthvlm-build captions RECIPE --json` runs in a subprocess with `hub_env`, as a user runs
it, and must read the tagged revision, not main: an `hf_dataset` source with a Hub id (datasets
streaming) and an `llava_json` source with an `hf://datasets/...` path (hf_hub_download).
"""
import json
import subprocess
import sys
import textwrap

import pytest

from buildutil import cli

REPO = "org/captions"

UPLOAD = textwrap.dedent("""
    import io, json, sys
    import pyarrow as pa, pyarrow.parquet as pq
    from huggingface_hub import CommitOperationAdd, HfApi
    api = HfApi()
    repo, tag = sys.argv[1], sys.argv[2]
    api.create_repo(repo, repo_type="dataset", private=True)
    card = ("---\\nconfigs:\\n- config_name: default\\n  data_files:\\n  - split: train\\n"
            "    path: data/train-*\\n---\\n# captions\\n")
    for i, word in enumerate(("first", "second")):
        table = pa.table({"key": [f"k{j}" for j in range(3)],
                          "caption": [f"A {word} photo of a red bicycle number {j}." for j in range(3)]})
        buf = io.BytesIO()
        pq.write_table(table, buf)
        llava = [{"id": f"l{j}", "image": f"{j}.jpg", "conversations": [
            {"from": "human", "value": "<image>"}, {"from": "gpt", "value": f"The {word} lighthouse at dusk {j}."}]}
            for j in range(2)]
        info = api.create_commit(repo, [
            CommitOperationAdd("README.md", card.encode()),
            CommitOperationAdd("data/train-00000-of-00001.parquet", buf.getvalue()),
            CommitOperationAdd("llava.json", json.dumps(llava).encode()),
        ], commit_message=f"{word} captions", repo_type="dataset")
        if i == 0:
            api.create_tag(repo, tag=tag, revision=info.oid, repo_type="dataset")
""")

RECIPE = """\
name: hub-captions
version: 0.1.0
license: cc-by-4.0
seed: 0
captions:
  sources:
    - type: hf_dataset
      path: {repo}
      revision: v1
      name: hub
      column: caption
      id_column: key
    - type: llava_json
      path: hf://datasets/{repo}/llava.json
      revision: v1
      name: llava
generate:
  model: builtin:tiny-sd
  steps: 2
  resolution: [64, 64]
score:
  clip:
    model: builtin:tiny-clip
select:
  size: 2
execution:
  device: cpu
"""


@pytest.mark.slow
def test_hub_caption_sources_read_the_tagged_revision(hub, hub_env, tmp_path):
    up = subprocess.run([sys.executable, "-c", UPLOAD, REPO, "v1"], env=hub_env, capture_output=True, text=True,
                        timeout=120)
    assert up.returncode == 0, up.stderr
    assert len(hub.commits(REPO)) == 3 and set(hub.refs(REPO)["tags"]) == {"v1"}
    assert b"second" in hub.read_file(REPO, "llava.json")  # main holds the newer captions

    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.format(repo=REPO))
    proc = cli("captions", recipe, "--json", env=hub_env)
    got = json.loads(proc.stdout)
    assert [(c["id"], c["text"]) for c in got["captions"]] == [
        *[(f"hub:k{j}", f"A first photo of a red bicycle number {j}.") for j in range(3)],
        *[(f"llava:l{j}", f"The first lighthouse at dusk {j}.") for j in range(2)],
    ]
    # both sources were fetched from the server at the tag (the repo is private: the token went along)
    assert hub.requests(f"/datasets/{REPO}/resolve/v1/llava.json")
    assert not hub.requests(f"/datasets/{REPO}/resolve/main/")


@pytest.mark.slow
def test_hub_caption_source_unknown_revision_names_the_field(hub, hub_env, tmp_path):
    up = subprocess.run([sys.executable, "-c", UPLOAD, REPO, "v1"], env=hub_env, capture_output=True, text=True,
                        timeout=120)
    assert up.returncode == 0, up.stderr
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.format(repo=REPO).replace("revision: v1\n      name: llava",
                                                       "revision: v9\n      name: llava"))
    proc = cli("captions", recipe, "--json", env=hub_env, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "captions.sources[1].revision" in proc.stderr and "v9" in proc.stderr
