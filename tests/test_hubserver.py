"""Tests of tests/hubserver.py through the real huggingface_hub / datasets / diffusers clients.

Client code runs in a subprocess because huggingface_hub and datasets read HF_ENDPOINT,
HF_HUB_DISABLE_XET and HF_HOME at import time. Each snippet prints its findings as JSON
(`emit(...)`), and the test asserts on them and on what the server saw (`hub.log`,
`hub.commits`, `hub.refs`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from hubserver import HubServer  # noqa: E402

ALICE, BOB = "hf_test_alice_0123456789", "hf_test_bob_0123456789"

# Shared by every client snippet: `api`, `emit(**facts)` and `error(fn)` -> what fn raised.
_PRELUDE = """
import json
from huggingface_hub import HfApi, CommitOperationAdd, CommitOperationDelete, hf_hub_download
api = HfApi()
def emit(**facts):
    print("@@FACTS@@" + json.dumps(facts, default=str), flush=True)
def error(fn):
    try:
        fn()
    except Exception as e:
        response = getattr(e, "response", None)
        return {"type": type(e).__name__, "mro": [c.__name__ for c in type(e).__mro__],
                "status": getattr(response, "status_code", None), "message": str(e)}
    return None
"""


@pytest.fixture
def hub(tmp_path):
    with HubServer(tmp_path / "hub", tokens={ALICE: "alice", BOB: "bob"}, orgs={"org": ["alice"]}) as server:
        yield server


@pytest.fixture
def client(hub, tmp_path):
    """run(code, token=ALICE) runs `code` against the server in a fresh interpreter and cache."""
    calls = iter(range(1000))

    def run(code: str, token: str | None = ALICE, timeout: float = 180) -> dict:
        env = hub.client_env(tmp_path / f"client{next(calls)}", token)
        env.update(TRANSFORMERS_VERBOSITY="error", DIFFUSERS_VERBOSITY="error")
        proc = subprocess.run([sys.executable, "-c", _PRELUDE + textwrap.dedent(code)], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, f"client failed:\n{proc.stdout}\n{proc.stderr}"
        facts: dict = {}
        for line in proc.stdout.splitlines():
            if line.startswith("@@FACTS@@"):
                facts.update(json.loads(line[len("@@FACTS@@"):]))
        assert not hub.unhandled, f"client hit endpoints the server does not implement: {hub.unhandled}"
        assert not hub.errors, f"server errors: {hub.errors}"
        return facts

    return run


def statuses(hub: HubServer, pattern: str, method: str | None = None) -> list:
    return [status for _, _, status in hub.requests(pattern, method)]


# --------------------------------------------------------------------------- publishing
def test_private_dataset_commit_tag_download(hub, client):
    facts = client("""
        repo = "org/synth"
        url = api.create_repo(repo, repo_type="dataset", private=True)
        again = api.create_repo(repo, repo_type="dataset", private=True, exist_ok=True)  # the server answers 409
        initial = api.list_repo_commits(repo, repo_type="dataset")
        info = api.create_commit(repo, repo_type="dataset", commit_message="Publish v0.1.0",
                                 commit_description="fingerprint abc", operations=[
            CommitOperationAdd("README.md", b"---\\nlicense: cc-by-nc-4.0\\ntags: [synthetic]\\n---\\n# Synth\\n"),
            CommitOperationAdd("data/train-00000-of-00001.parquet", b"PAR1" + bytes(range(256)) * 8 + b"PAR1"),
            CommitOperationAdd("stats.json", b'{"kept": 3}'),
        ])
        api.create_tag(repo, repo_type="dataset", tag="v0.1.0", revision=info.oid)
        conflict = error(lambda: api.create_tag(repo, repo_type="dataset", tag="v0.1.0"))
        api.create_tag(repo, repo_type="dataset", tag="v0.1.0", exist_ok=True)  # swallowed 409
        second = api.create_commit(repo, repo_type="dataset", commit_message="stats",
                                   operations=[CommitOperationAdd("stats.json", b'{"kept": 4}')])
        noop = api.create_commit(repo, repo_type="dataset", commit_message="same again",
                                 operations=[CommitOperationAdd("stats.json", b'{"kept": 4}')])
        refs = api.list_repo_refs(repo, repo_type="dataset")
        commits = api.list_repo_commits(repo, repo_type="dataset")
        at_tag = hf_hub_download(repo, "stats.json", repo_type="dataset", revision="v0.1.0")
        at_main = hf_hub_download(repo, "stats.json", repo_type="dataset")
        parquet = hf_hub_download(repo, "data/train-00000-of-00001.parquet", repo_type="dataset", revision="v0.1.0")
        tree = api.list_repo_tree(repo, repo_type="dataset", revision="v0.1.0", recursive=True)
        ds_info = api.dataset_info(repo, revision="v0.1.0", files_metadata=True)
        emit(url=url, again=again, initial=[(c.title, c.authors) for c in initial],
             oid=info.oid, commit_url=info.commit_url, second=second.oid, noop=noop.oid, conflict=conflict,
             branches={r.name: r.target_commit for r in refs.branches},
             tags={r.name: r.target_commit for r in refs.tags},
             commits=[(c.commit_id, c.title, c.message, c.authors) for c in commits],
             at_tag=open(at_tag).read(), at_main=open(at_main).read(), parquet_size=len(open(parquet, "rb").read()),
             tree={f.path: getattr(f, "lfs", None) is not None for f in tree},
             private=ds_info.private, sha=ds_info.sha, card_license=ds_info.card_data.license)
    """)
    assert facts["url"] == facts["again"] == f"{hub.url}/datasets/org/synth"
    assert facts["initial"] == [["initial commit", ["alice"]]]  # what the Hub shows after create_repo

    assert facts["conflict"]["status"] == 409 and "HfHubHTTPError" in facts["conflict"]["mro"]
    assert facts["noop"] == facts["second"]  # unchanged files: the client skipped the commit
    assert statuses(hub, r"/commit/main$", "POST") == [200, 200]
    assert facts["branches"] == {"main": facts["second"]}
    assert facts["tags"] == {"v0.1.0": facts["oid"]}
    assert [c[:3] for c in facts["commits"]] == [
        [facts["second"], "stats", ""], [facts["oid"], "Publish v0.1.0", "fingerprint abc"],
        [hub.commits("org/synth")[-1]["id"], "initial commit", ""]]
    assert facts["commit_url"] == f"{hub.url}/datasets/org/synth/commit/{facts['oid']}"
    assert (facts["at_tag"], facts["at_main"]) == ('{"kept": 3}', '{"kept": 4}')
    assert facts["parquet_size"] == 8 + 256 * 8
    assert facts["tree"] == {"data": False, ".gitattributes": False, "README.md": False, "stats.json": False,
                             "data/train-00000-of-00001.parquet": True}
    assert (facts["private"], facts["sha"], facts["card_license"]) == (True, facts["oid"], "cc-by-nc-4.0")

    # Server side: a full tree per commit, LFS by sha256, one LFS upload.
    commits = hub.commits("org/synth")
    assert [c["title"] for c in commits] == ["stats", "Publish v0.1.0", "initial commit"]
    assert commits[1]["parents"] == [commits[2]["id"]] and commits[0]["parents"] == [commits[1]["id"]]
    assert set(commits[2]["files"]) == {".gitattributes"}
    parquet = commits[1]["files"]["data/train-00000-of-00001.parquet"]
    assert parquet["lfs"] and len(parquet["sha256"]) == 64
    assert statuses(hub, r"^/__lfs__/datasets/org/synth/[0-9a-f]{64}$", "PUT") == [200]
    assert hub.refs("org/synth") == {"branches": {"main": facts["second"]}, "tags": {"v0.1.0": facts["oid"]}}


def test_upload_mode_follows_gitattributes_size_and_content(hub, client):
    hub.create_repo("alice/modes", "dataset")
    client("""
        api.create_commit("alice/modes", repo_type="dataset", commit_message="modes", operations=[
            CommitOperationAdd("notes.txt", b"plain text"),
            CommitOperationAdd("weights.bin", b"tiny"),                 # *.bin is in .gitattributes
            CommitOperationAdd("raw.dat", b"abc\\x00def"),              # binary sample
            CommitOperationAdd("big.txt", b"a" * (10 * 1024 * 1024 + 1)),  # over the 10 MB limit
            CommitOperationAdd("empty.bin", b""),                       # the client forces "regular" for 0 bytes
        ])
    """)
    files = hub.commits("alice/modes")[0]["files"]
    assert {p: f["lfs"] for p, f in files.items()} == {
        ".gitattributes": False, "notes.txt": False, "weights.bin": True, "raw.dat": True, "big.txt": True,
        "empty.bin": False}
    assert len(statuses(hub, r"^/__lfs__/datasets/", "PUT")) == 3
    assert hub.read_file("alice/modes", "raw.dat") == b"abc\x00def"


# --------------------------------------------------------------------------- errors and auth
def test_private_missing_and_forbidden_repos_raise_client_errors(hub, client):
    hub.create_repo("alice/private", "dataset", private=True)
    hub.create_repo("alice/public", "dataset", private=False)
    anonymous = client("""
        emit(info=error(lambda: api.dataset_info("alice/private")),
             download=error(lambda: hf_hub_download("alice/private", ".gitattributes", repo_type="dataset")),
             public=api.dataset_info("alice/public").id,
             write=error(lambda: api.create_commit("alice/public", repo_type="dataset", commit_message="x",
                                                   operations=[CommitOperationAdd("x.txt", b"x")])))
    """, token=None)
    assert anonymous["info"]["type"] == "RepositoryNotFoundError" and anonymous["info"]["status"] == 401
    assert anonymous["download"]["type"] == "RepositoryNotFoundError"
    assert anonymous["public"] == "alice/public"
    assert anonymous["write"]["status"] == 401

    bob = client("""
        emit(info=error(lambda: api.dataset_info("alice/private")),
             write=error(lambda: api.create_commit("alice/public", repo_type="dataset", commit_message="x",
                                                   operations=[CommitOperationAdd("x.txt", b"x")])),
             create=error(lambda: api.create_repo("org/not-bobs", repo_type="dataset")))
    """, token=BOB)
    assert bob["info"]["type"] == "RepositoryNotFoundError" and bob["info"]["status"] == 404
    assert bob["write"]["status"] == 403 and bob["create"]["status"] == 403

    alice = client("""
        emit(missing=error(lambda: api.dataset_info("alice/nope")),
             missing_download=error(lambda: hf_hub_download("alice/nope", "x", repo_type="dataset")),
             wrong_type=error(lambda: api.model_info("alice/private")),
             revision=error(lambda: api.dataset_info("alice/private", revision="v9")),
             entry=error(lambda: hf_hub_download("alice/private", "nope.txt", repo_type="dataset")),
             whoami=api.whoami()["name"])
    """)
    assert alice["missing"]["type"] == alice["missing_download"]["type"] == "RepositoryNotFoundError"
    assert alice["missing"]["status"] == 404 and alice["wrong_type"]["type"] == "RepositoryNotFoundError"
    assert alice["revision"]["type"] == "RevisionNotFoundError"
    assert alice["entry"]["type"] == "RemoteEntryNotFoundError"
    assert alice["whoami"] == "alice"

    bad = client('emit(whoami=error(lambda: api.whoami()), info=error(lambda: api.dataset_info("alice/public")))',
                 token="hf_not_a_valid_token")
    assert bad["whoami"]["status"] == 401 and "Invalid user token" in bad["whoami"]["message"]
    assert bad["info"]["status"] == 401 and bad["info"]["type"] == "HfHubHTTPError"


def test_commits_are_atomic_and_check_parent_commit(hub, client):
    hub.create_repo("alice/atomic", "dataset")
    head = hub.refs("alice/atomic")["branches"]["main"]
    facts = client(f"""
        ops = [CommitOperationAdd("new.txt", b"new"), CommitOperationDelete("does-not-exist.txt")]
        emit(partial=error(lambda: api.create_commit("alice/atomic", repo_type="dataset", commit_message="x",
                                                    operations=ops)),
             stale=error(lambda: api.create_commit("alice/atomic", repo_type="dataset", commit_message="y",
                                                  operations=[CommitOperationAdd("a.txt", b"a")],
                                                  parent_commit="{'0' * 40}")),
             ok=api.create_commit("alice/atomic", repo_type="dataset", commit_message="z",
                                  operations=[CommitOperationAdd("a.txt", b"a")], parent_commit="{head[:7]}").oid,
             to_tag=error(lambda: api.create_commit("alice/atomic", repo_type="dataset", commit_message="w",
                                                   operations=[CommitOperationAdd("b.txt", b"b")],
                                                   revision="{head}")))
    """)
    assert facts["partial"]["type"] == "RemoteEntryNotFoundError"
    assert facts["stale"]["status"] == 412
    assert facts["to_tag"]["status"] == 400  # commits go to branches only
    commits = hub.commits("alice/atomic")
    assert [c["id"] for c in commits] == [facts["ok"], head]
    assert set(commits[0]["files"]) == {".gitattributes", "a.txt"}  # nothing of the failed commits leaked


def test_concurrent_commits_are_serialized(hub, client):
    hub.create_repo("alice/busy", "dataset")
    client("""
        from concurrent.futures import ThreadPoolExecutor
        def commit(i):
            return api.create_commit("alice/busy", repo_type="dataset", commit_message=f"c{i}",
                                     operations=[CommitOperationAdd(f"f{i}.txt", str(i).encode())]).oid
        with ThreadPoolExecutor(6) as pool:
            list(pool.map(commit, range(6)))
    """)
    commits = hub.commits("alice/busy")
    assert len(commits) == 7 and sorted(c["title"] for c in commits[:6]) == [f"c{i}" for i in range(6)]
    assert set(commits[0]["files"]) == {".gitattributes"} | {f"f{i}.txt" for i in range(6)}  # no lost update
    assert all(c["parents"] == [p["id"]] for c, p in zip(commits, commits[1:]))


def test_branches_tags_and_revisions(hub, client):
    hub.create_repo("alice/refs", "model")
    main = hub.refs("alice/refs", "model")["branches"]["main"]
    facts = client("""
        repo = "alice/refs"
        api.create_branch(repo, branch="dev")
        dev = api.create_commit(repo, revision="dev", commit_message="on dev",
                                operations=[CommitOperationAdd("config.json", b"{}")]).oid
        api.create_tag(repo, tag="rc1", revision="dev")
        exists = error(lambda: api.create_branch(repo, branch="dev"))
        api.create_branch(repo, branch="dev", exist_ok=True)
        refs = api.list_repo_refs(repo)
        api.delete_tag(repo, tag="rc1")
        deleted_again = error(lambda: api.delete_tag(repo, tag="rc1"))
        emit(dev=dev, exists=exists["status"], deleted_again=deleted_again["type"],
             tags_before={r.name: r.target_commit for r in refs.tags},
             branches={r.name: r.target_commit for r in refs.branches},
             tags_after=[r.name for r in api.list_repo_refs(repo).tags],
             by_sha=[c.title for c in api.list_repo_commits(repo, revision=dev)],
             main_files=api.list_repo_files(repo), dev_files=api.list_repo_files(repo, revision="refs/heads/dev"),
             file_exists=api.file_exists(repo, "config.json", revision=dev[:7]))
        api.update_repo_settings(repo, private=True)
        private = api.model_info(repo).private
        api.delete_repo(repo)
        emit(private=private, exists_after_delete=api.repo_exists(repo),
             delete_missing=error(lambda: api.delete_repo(repo)))
        api.delete_repo(repo, missing_ok=True)
    """)
    assert facts["branches"] == {"dev": facts["dev"], "main": main}
    assert facts["tags_before"] == {"rc1": facts["dev"]} and facts["tags_after"] == []
    assert facts["exists"] == 409 and facts["deleted_again"] == "RevisionNotFoundError"
    assert facts["by_sha"] == ["on dev", "initial commit"]
    assert facts["main_files"] == [".gitattributes"] and facts["dev_files"] == [".gitattributes", "config.json"]
    assert facts["file_exists"] is True
    assert facts["private"] is True and facts["exists_after_delete"] is False
    assert facts["delete_missing"]["type"] == "RepositoryNotFoundError"


def test_pagination_of_tree_and_commits(hub, client):
    hub.create_repo("alice/pages", "dataset")
    hub.tree_page_size, hub.commits_page_size = 2, 2
    facts = client("""
        for i in range(4):
            api.create_commit("alice/pages", repo_type="dataset", commit_message=f"c{i}",
                              operations=[CommitOperationAdd(f"d/f{i}.txt", str(i).encode())])
        emit(commits=[c.title for c in api.list_repo_commits("alice/pages", repo_type="dataset")],
             tree=sorted(f.path for f in api.list_repo_tree("alice/pages", repo_type="dataset", recursive=True)),
             sub=sorted(f.path for f in api.list_repo_tree("alice/pages", "d", repo_type="dataset")))
    """)
    assert facts["commits"] == ["c3", "c2", "c1", "c0", "initial commit"]
    assert facts["tree"] == [".gitattributes", "d", "d/f0.txt", "d/f1.txt", "d/f2.txt", "d/f3.txt"]
    assert facts["sub"] == ["d/f0.txt", "d/f1.txt", "d/f2.txt", "d/f3.txt"]
    assert len(hub.requests(r"/commits/main$", "GET")) == 3 and len(hub.requests(r"/tree/main$", "GET")) == 3


def test_card_metadata_is_validated(hub, client):
    hub.create_repo("alice/cards", "dataset")
    facts = client("""
        from huggingface_hub import DatasetCard
        good = ("---\\nlicense: mit\\nconfigs:\\n- config_name: default\\n  data_files:\\n"
                "  - split: train\\n    path: data/*.parquet\\n---\\n")
        bad_configs = "---\\nconfigs:\\n- data_files: 3\\n---\\n"
        def commit_readme(text):
            return api.create_commit("alice/cards", repo_type="dataset", commit_message="card",
                                     operations=[CommitOperationAdd("README.md", text)])
        emit(good=error(lambda: DatasetCard(good).validate()),
             bad_configs=error(lambda: DatasetCard(bad_configs).validate()),
             bad_license=error(lambda: DatasetCard("---\\nlicense: [1, 2]\\n---\\n").validate()),
             # DatasetCard() itself refuses a non-mapping header; create_commit sends README.md as is.
             not_mapping=error(lambda: commit_readme(b"---\\n- a\\n---\\n")),
             commit=error(lambda: commit_readme(bad_configs.encode())))
    """)
    assert facts["good"] is None
    assert facts["bad_configs"]["type"] == "ValueError" and "config_name" in facts["bad_configs"]["message"]
    assert "data_files" in facts["bad_configs"]["message"]
    assert "license" in facts["bad_license"]["message"] and "mapping" in facts["not_mapping"]["message"]
    assert facts["commit"]["type"] == "ValueError" and "Invalid metadata" in facts["commit"]["message"]
    assert not hub.requests(r"/commit/") and len(hub.commits("alice/cards")) == 1


# --------------------------------------------------------------------------- faults
@pytest.mark.slow
def test_fault_injection_and_which_calls_the_client_retries(hub, client):
    hub.create_repo("alice/faults", "dataset")
    add = 'operations=[CommitOperationAdd("{0}", b"{0}")]'

    # create_commit's POST /commit is sent once: a 5xx surfaces as HfHubHTTPError, nothing retried.
    hub.fail_next(r"/commit/main$", 500)
    facts = client(f'emit(e=error(lambda: api.create_commit("alice/faults", repo_type="dataset", '
                   f'commit_message="a", {add.format("a.txt")})))')
    assert facts["e"]["status"] == 500 and "HfHubHTTPError" in facts["e"]["mro"]
    assert statuses(hub, r"/commit/main$") == [500] and len(hub.commits("alice/faults")) == 1

    # The dangerous case: the commit is applied but the response is lost. The client raises,
    # yet the commit exists, so a blind retry would commit twice.
    hub.drop_next(r"/commit/main$", after=True)
    facts = client(f'emit(e=error(lambda: api.create_commit("alice/faults", repo_type="dataset", '
                   f'commit_message="b", {add.format("b.txt")})))')
    assert facts["e"]["type"] == "RemoteProtocolError"
    assert [c["title"] for c in hub.commits("alice/faults")] == ["b", "initial commit"]

    # preupload, the LFS batch and the LFS PUT go through http_backoff: retried after 1 s.
    hub.log.clear()
    hub.fail_next(r"/preupload/", 500)
    hub.fail_next(r"lfs/objects/batch$", 502)
    hub.fail_next(r"^/__lfs__/datasets/", 503, method="PUT")
    client(f'api.create_commit("alice/faults", repo_type="dataset", commit_message="c", {add.format("c.bin")})')
    assert statuses(hub, r"/preupload/") == [500, 200]
    assert statuses(hub, r"lfs/objects/batch$") == [502, 200]
    assert statuses(hub, r"^/__lfs__/datasets/", "PUT") == [503, 200]
    assert statuses(hub, r"/commit/main$") == [200]

    # create_tag and create_repo are single POSTs too.
    hub.fail_next(r"/tag/", 500)
    hub.fail_next(r"/repos/create$", 503)
    facts = client('emit(tag=error(lambda: api.create_tag("alice/faults", repo_type="dataset", tag="v1")), '
                   'repo=error(lambda: api.create_repo("alice/other", repo_type="dataset")))')
    assert facts["tag"]["status"] == 500 and facts["repo"]["status"] == 503
    assert statuses(hub, r"/tag/") == [500] and statuses(hub, r"/repos/create$") == [503]
    assert hub.refs("alice/faults")["tags"] == {}


# --------------------------------------------------------------------------- consumers
def test_load_dataset_at_a_tag_and_streaming(hub, client):
    facts = client("""
        import io
        import pyarrow as pa, pyarrow.parquet as pq
        import datasets
        repo = "org/synth"
        card = ("---\\nlicense: mit\\nconfigs:\\n- config_name: default\\n  data_files:\\n"
                "  - split: train\\n    path: data/train-*.parquet\\n---\\n# synth\\n")
        def parquet(ids):
            buf = io.BytesIO()
            pq.write_table(pa.table({"id": ids, "caption": [f"caption {i}" for i in ids]}), buf, row_group_size=2)
            return buf.getvalue()
        api.create_repo(repo, repo_type="dataset", private=True)
        api.create_commit(repo, repo_type="dataset", commit_message="v0.1.0", operations=[
            CommitOperationAdd("README.md", card.encode()),
            CommitOperationAdd("data/train-00000-of-00001.parquet", parquet([1, 2, 3]))])
        api.create_tag(repo, repo_type="dataset", tag="v0.1.0")
        api.create_commit(repo, repo_type="dataset", commit_message="v0.2.0", operations=[
            CommitOperationAdd("data/train-00000-of-00001.parquet", parquet([4, 5, 6, 7, 8]))])
        tagged = datasets.load_dataset(repo, revision="v0.1.0", split="train")
        main = datasets.load_dataset(repo, split="train")
        streamed = datasets.load_dataset(repo, revision="v0.1.0", split="train", streaming=True)
        emit(tagged=list(tagged["id"]), captions=list(tagged["caption"]), main=list(main["id"]),
             streamed=[row["id"] for row in streamed])
    """)
    assert facts["tagged"] == [1, 2, 3] and facts["captions"] == ["caption 1", "caption 2", "caption 3"]
    assert facts["main"] == [4, 5, 6, 7, 8]
    assert facts["streamed"] == [1, 2, 3]
    assert 206 in statuses(hub, r"/resolve/.*\.parquet$", "GET")  # streaming reads parquet by ranges


@pytest.mark.slow
def test_diffusers_pipeline_and_components_from_pretrained_at_revision(hub, client):
    facts = client("""
        import tempfile, torch
        from diffusers import AutoencoderKL, DDIMScheduler, DiffusionPipeline, StableDiffusionPipeline
        from diffusers import UNet2DConditionModel
        from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
        torch.manual_seed(0)
        unet = UNet2DConditionModel(
            sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
            norm_num_groups=4, cross_attention_dim=16, attention_head_dim=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"))
        vae = AutoencoderKL(block_out_channels=(8,), down_block_types=("DownEncoderBlock2D",),
                            up_block_types=("UpDecoderBlock2D",), latent_channels=4, norm_num_groups=4)
        text_encoder = CLIPTextModel(CLIPTextConfig(
            hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=1, vocab_size=600,
            max_position_embeddings=77, projection_dim=16, bos_token_id=512, eos_token_id=513, pad_token_id=513))
        # A byte-level CLIP vocabulary built in code (GPT-2's byte-to-unicode table), so nothing is downloaded.
        byte_values = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
        chars = byte_values[:] + [256 + i for i in range(256 - len(byte_values))]
        symbols = [chr(c) for c in chars]
        tokens = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
        vocab = {s: i for i, s in enumerate(tokens)}
        tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
        pipe = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                       scheduler=DDIMScheduler(), safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
        folder = tempfile.mkdtemp()
        pipe.save_pretrained(folder)
        repo = "org/tiny-sd"
        api.create_repo(repo, private=True)
        sha = api.upload_folder(repo_id=repo, folder_path=folder, commit_message="tiny sd").oid
        api.create_tag(repo, tag="v1", revision=sha)
        api.delete_file("model_index.json", repo, commit_message="main moves on without the pipeline index")
        def same(a, b):
            return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
        fresh = tempfile.mkdtemp  # a fresh cache per load: everything comes from the server
        loaded = DiffusionPipeline.from_pretrained(repo, revision=sha, cache_dir=fresh())
        vae2 = AutoencoderKL.from_pretrained(repo, subfolder="vae", revision="v1", cache_dir=fresh())
        te2 = CLIPTextModel.from_pretrained(repo, subfolder="text_encoder", revision="v1", cache_dir=fresh())
        at_main = error(lambda: DiffusionPipeline.from_pretrained(repo, cache_dir=fresh()))
        emit(cls=type(loaded).__name__, unet=same(unet, loaded.unet), vae=same(vae, vae2),
             text_encoder=same(text_encoder, te2), at_main=at_main and at_main["type"])
    """, timeout=300)
    assert facts["cls"] == "StableDiffusionPipeline"
    assert facts["unet"] and facts["vae"] and facts["text_encoder"]
    # main no longer has model_index.json, so loading main fails: the revision really mattered.
    assert facts["at_main"] == "RemoteEntryNotFoundError"
    lfs = {p for p, f in hub.commits("org/tiny-sd", "model", revision="v1")[0]["files"].items() if f["lfs"]}
    assert lfs == {"unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
                   "text_encoder/model.safetensors"}


# --------------------------------------------------------------------------- raw HTTP semantics
def _http(url: str, method: str = "GET", headers: dict | None = None, data: bytes | None = None):
    """-> (status, headers, body), without raising on HTTP errors."""
    request = urllib.request.Request(url, data, headers or {}, method=method)
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def _ndjson_commit(hub: HubServer, repo: str, *ops: dict) -> tuple[int, dict, bytes]:
    lines = [{"key": "header", "value": {"summary": "raw"}}, *ops]
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    headers = {"Authorization": f"Bearer {ALICE}", "Content-Type": "application/x-ndjson"}
    return _http(f"{hub.url}/api/datasets/{repo}/commit/main", "POST", headers, body)


def test_commit_endpoint_rejects_what_the_client_would_never_send(hub):
    # The real client validates README.md and uploads LFS objects before committing; the server
    # must still refuse a commit that skips those steps, like the Hub does.
    hub.create_repo("alice/raw", "dataset")
    readme = {"key": "file", "value": {"path": "README.md", "encoding": "base64",
                                       "content": "LS0tCmxpY2Vuc2U6IFsxXQotLS0K"}}  # "---\nlicense: [1]\n---\n"
    status, headers, body = _ndjson_commit(hub, "alice/raw", readme)
    assert status == 400 and "license" in json.loads(body)["error"] and "\n" not in headers["X-Error-Message"]
    missing_lfs = {"key": "lfsFile", "value": {"path": "x.bin", "algo": "sha256", "oid": "0" * 64, "size": 3}}
    assert _ndjson_commit(hub, "alice/raw", missing_lfs)[0] == 422
    for bad in ("../x", ".git/config", "/abs", "a//b"):
        assert _ndjson_commit(hub, "alice/raw", {"key": "file", "value": {"path": bad, "content": ""}})[0] == 400
    clash = [{"key": "file", "value": {"path": p, "content": ""}} for p in ("a", "a/b")]
    assert _ndjson_commit(hub, "alice/raw", *clash)[0] == 400
    assert len(hub.commits("alice/raw")) == 1
    status, _, body = _ndjson_commit(hub, "alice/raw", {"key": "file", "value": {"path": "ok.txt", "content": "ok"}})
    assert status == 200 and hub.read_file("alice/raw", "ok.txt") == b"ok"
    assert json.loads(body)["commitOid"] == hub.commits("alice/raw")[0]["id"]


def test_resolve_headers_and_ranges(hub):
    hub.create_repo("alice/ranges", "dataset", private=True)
    base = f"{hub.url}/datasets/alice/ranges/resolve/main/.gitattributes"
    auth = {"Authorization": f"Bearer {ALICE}"}
    content = hub.read_file("alice/ranges", ".gitattributes")
    status, headers, body = _http(base, headers=auth)
    assert status == 200 and body == content
    assert headers["X-Repo-Commit"] == hub.refs("alice/ranges")["branches"]["main"]
    assert headers["ETag"] == f'"{hub.commits("alice/ranges")[0]["files"][".gitattributes"]["oid"]}"'
    status, headers, body = _http(base, headers={**auth, "Range": "bytes=2-5"})
    assert (status, body, headers["Content-Range"]) == (206, content[2:6], f"bytes 2-5/{len(content)}")
    status, headers, body = _http(base, headers={**auth, "Range": "bytes=-4"})
    size = len(content)
    assert (status, body, headers["Content-Range"]) == (206, content[-4:], f"bytes {size - 4}-{size - 1}/{size}")
    assert _http(base, headers={**auth, "Range": f"bytes={len(content)}-"})[0] == 416
    status, headers, _ = _http(base)
    assert status == 401 and headers["X-Error-Code"] == "RepoNotFound"
    assert _http(base.replace("/main/", "/nope/"), headers=auth)[1]["X-Error-Code"] == "RevisionNotFound"
    assert _http(f"{hub.url}/api/agent-harnesses")[2] == b'{"standardEnvVars": [], "harnesses": {}}'
    assert hub.requests(r"/resolve/", "GET")[0] == ("GET", "/datasets/alice/ranges/resolve/main/.gitattributes", 200)
