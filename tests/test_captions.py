"""Caption sources, the curation funnel, and the JSONL hand-off, on files written here."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from synthvlm_builder.curation.reading import read_source
from synthvlm_builder.curation.captions import (Funnel, curate, format_funnel, iter_curate, parse_caption_line,
                                                write_jsonl)
from synthvlm_builder.curation.step import MaxFilter, RangeFilter, RepetitionFilter
from synthvlm_builder.recipe.config import CaptionsConfig, Caption, SourceConfig
from synthvlm_builder.recipe.typed import filters_section as FiltersConfig
from synthvlm_builder.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
CAPTIONS = [
    "A brown dog runs across a green field.",
    "Two children build a sandcastle on the beach, laughing.",
    "A café terrace at night — warm lights and “quiet” tables.",
    "a red bicycle leaning against a brick wall",
]
LLAVA_IDS = ["004539375", "002239345", "001386042", "000021577"]


@pytest.fixture(autouse=True)
def offline_hub(tmp_path, monkeypatch):
    """No network and no writes to ~/.cache: Hub clients see offline mode and tmp caches."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_datasets"))


def write_sources(d: Path) -> dict[str, SourceConfig]:
    """The same captions in every supported format; returns a SourceConfig per type."""
    llava = [{"id": i, "image": f"{i}.jpg",
              "conversations": [{"from": "human", "value": "Describe the image.\n<image>"},
                                {"from": "gpt", "value": c}]} for i, c in zip(LLAVA_IDS, CAPTIONS)]
    (d / "blip_laion_cc_sbu_558k.json").write_text(json.dumps(llava, ensure_ascii=False), encoding="utf-8")
    (d / "caps.jsonl").write_text("".join(json.dumps({"caption": c, "n": i}, ensure_ascii=False) + "\n"
                                          for i, c in enumerate(CAPTIONS)), encoding="utf-8")
    with open(d / "caps.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["url", "caption"])
        w.writerows([f"http://x/{i}.jpg", c] for i, c in enumerate(CAPTIONS))
    table = pa.table({"caption": CAPTIONS, "key": [f"k{i}" for i in range(len(CAPTIONS))]})
    pq.write_table(table, d / "caps.parquet", row_group_size=2)  # two row groups
    (d / "caps.txt").write_text("\n".join(CAPTIONS) + "\n", encoding="utf-8")
    hub = d / "hub_dataset"
    (hub / "data").mkdir(parents=True)
    pq.write_table(table, hub / "data" / "train-00000-of-00001.parquet")
    (hub / "README.md").write_text("---\nconfigs:\n- config_name: default\n  data_files:\n"
                                   "  - split: train\n    path: data/train-*.parquet\n---\n# captions\n")
    return {
        "llava_json": SourceConfig("llava_json", str(d / "blip_laion_cc_sbu_558k.json"), "llava"),
        "jsonl": SourceConfig("jsonl", str(d / "caps.jsonl"), "jl"),
        "csv": SourceConfig("csv", str(d / "caps.csv"), "cs"),
        "parquet": SourceConfig("parquet", str(d / "caps.parquet"), "pq"),
        "text": SourceConfig("text", str(d / "caps.txt"), "tx"),
        "hf_dataset": SourceConfig("hf_dataset", str(hub), "hub", split="train"),
    }


@pytest.fixture
def sources(tmp_path):
    return write_sources(tmp_path)


def test_every_format_yields_the_same_captions_and_ids(sources):
    for kind, src in sources.items():
        runs = [list(read_source(src, 0)) for _ in range(2)]
        assert runs[0] == runs[1], kind  # same order, run after run
        assert [c.text for c in runs[0]] == CAPTIONS, kind
        assert {c.source for c in runs[0]} == {src.name}
        rows = LLAVA_IDS if kind == "llava_json" else range(len(CAPTIONS))
        assert [c.id for c in runs[0]] == [f"{src.name}:{r}" for r in rows], kind


def test_id_column_and_limit(sources):
    src = SourceConfig("parquet", sources["parquet"].path, "pq", id_column="key", limit=3)
    assert [c.id for c in read_source(src, 0)] == ["pq:k0", "pq:k1", "pq:k2"]  # limit crosses a row group
    hub = SourceConfig("hf_dataset", sources["hf_dataset"].path, "hub", id_column="key", limit=1)
    assert list(read_source(hub, 0)) == [Caption("hub:k0", CAPTIONS[0], "hub")]


def test_text_source_skips_blank_lines_but_keeps_line_numbers(tmp_path):
    (tmp_path / "t.txt").write_text("first\n\n   \nsecond\r\n", encoding="utf-8")
    got = list(read_source(SourceConfig("text", str(tmp_path / "t.txt"), "t"), 0))
    assert got == [Caption("t:0", "first", "t"), Caption("t:3", "second", "t")]


@pytest.mark.parametrize("kind", ["llava_json", "jsonl", "csv", "parquet", "text", "hf_dataset"])
def test_missing_file_names_the_path_field(tmp_path, kind):
    src = SourceConfig(kind, str(tmp_path / "nope"), "s")
    with pytest.raises(InputError) as e:
        read_source(src, 2)  # raises before anything is iterated
    assert e.value.field == "captions.sources[2].path"


@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet", "hf_dataset"])
def test_missing_column_lists_the_columns(sources, kind):
    src = SourceConfig(kind, sources[kind].path, "s", column="text", split="train")
    with pytest.raises(InputError) as e:
        read_source(src, 1)
    assert e.value.field == "captions.sources[1].column"
    assert "'text'" in e.value.message and "caption" in e.value.message


def test_missing_id_column_names_id_column(sources):
    with pytest.raises(InputError) as e:
        read_source(SourceConfig("csv", sources["csv"].path, "s", id_column="key"), 0)
    assert e.value.field == "captions.sources[0].id_column"


def test_unreadable_json_says_where(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"caption": "ok"}\n{"caption": "no end\n', encoding="utf-8")
    stream = read_source(SourceConfig("jsonl", str(tmp_path / "bad.jsonl"), "s"), 0)
    assert next(stream).text == "ok"
    with pytest.raises(InputError) as e:
        next(stream)
    assert e.value.field == "captions.sources[0].path" and "bad.jsonl:2:" in e.value.location

    (tmp_path / "bad.json").write_text('[{"id": "1", "conversations": [}', encoding="utf-8")
    with pytest.raises(InputError) as e:
        read_source(SourceConfig("llava_json", str(tmp_path / "bad.json"), "s"), 3)
    assert e.value.field == "captions.sources[3].path" and "invalid JSON" in e.value.message

    (tmp_path / "obj.json").write_text('{"id": "1"}', encoding="utf-8")  # not a list of records
    with pytest.raises(InputError, match="JSON list"):
        read_source(SourceConfig("llava_json", str(tmp_path / "obj.json"), "s"), 0)


def test_text_that_is_not_utf8(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("un caf\u00e9 au soleil\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8") as e:
        read_source(SourceConfig("text", str(tmp_path / "latin1.txt"), "s"), 4)
    assert e.value.field == "captions.sources[4].path"


def test_llava_record_without_gpt_turn(tmp_path):
    recs = [{"id": "7", "image": "7.jpg", "conversations": [{"from": "human", "value": "<image>"}]}]
    (tmp_path / "l.json").write_text(json.dumps(recs), encoding="utf-8")
    with pytest.raises(InputError) as e:
        read_source(SourceConfig("llava_json", str(tmp_path / "l.json"), "s"), 0)
    assert e.value.field == "captions.sources[0].path" and "id 7" in e.value.message and "gpt" in e.value.message


def test_hf_dataset_bad_split_names_the_split_field(sources):
    with pytest.raises(InputError) as e:
        read_source(SourceConfig("hf_dataset", sources["hf_dataset"].path, "s", split="test"), 0)
    assert e.value.field == "captions.sources[0].split"


def test_hf_uri_offline_is_an_input_error(monkeypatch):
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # in case it was imported online
    src = SourceConfig("jsonl", "hf://datasets/some-org/captions/train.jsonl", "s", revision="main")
    with pytest.raises(InputError) as e:
        read_source(src, 0)
    assert e.value.field == "captions.sources[0].path" and "cannot download" in e.value.message
    with pytest.raises(InputError) as e:
        read_source(SourceConfig("csv", "hf://datasets/some-org/captions", "s"), 0)
    assert "not a file" in e.value.message


def test_iter_curate_checks_every_source_before_yielding(sources, tmp_path):
    cfg = CaptionsConfig((sources["jsonl"], SourceConfig("csv", str(tmp_path / "missing.csv"), "b")))
    with pytest.raises(InputError) as e:
        iter_curate(cfg)  # no next(): the error comes from setting up, not from streaming
    assert e.value.field == "captions.sources[1].path"


def test_max_tokens_drops_or_truncates(tmp_path):
    words = "a small brown dog runs across the green grass near a red barn while children watch".split()
    long = " ".join(words[i % len(words)] for i in range(120))  # 120 words, 122 CLIP tokens
    (tmp_path / "t.txt").write_text(f"a short caption\n{long}\n", encoding="utf-8")
    src = SourceConfig("text", str(tmp_path / "t.txt"), "t")
    from synthvlm_builder.models.tokenizer import caption_tokenizer
    tok = caption_tokenizer("builtin:tiny-sd")  # the real 49,408-token CLIP BPE, as SD's tokenizer
    assert tok.count(long) == 122

    dropped = curate(CaptionsConfig((src,), FiltersConfig(max_tokens=77)), tok)
    assert [c.id for c in dropped.captions] == ["t:0"]
    assert dropped.funnel["filters"] == [
        {"name": "empty", "dropped": 0, "examples": []},
        {"name": "max_tokens", "dropped": 1, "examples": [{"id": "t:1", "text": long}]},
        {"name": "dedupe", "dropped": 0, "examples": []}]

    kept = curate(CaptionsConfig((src,), FiltersConfig(max_tokens=77, truncate=True)), tok)
    assert [c.id for c in kept.captions] == ["t:0", "t:1"]
    truncated = kept.captions[1].text
    assert tok.count(truncated) <= 77 and long.startswith(truncated)
    assert kept.funnel["truncated"] == 1 and kept.funnel["filters"][1] == {"name": "max_tokens", "dropped": 0,
                                                                          "examples": []}

    with pytest.raises(ValueError, match="tokenizer"):
        curate(CaptionsConfig((src,), FiltersConfig(max_tokens=77)))


def test_dedupe_normalized_keeps_the_first_id(tmp_path):
    (tmp_path / "a.txt").write_text("A cat on a mat.\na dog\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text(json.dumps({"caption": "a  cat on a mat"}) + "\n", encoding="utf-8")
    srcs = (SourceConfig("text", str(tmp_path / "a.txt"), "a"), SourceConfig("jsonl", str(tmp_path / "b.jsonl"), "b"))
    normalized = curate(CaptionsConfig(srcs, FiltersConfig(dedupe="normalized")))
    assert [c.id for c in normalized.captions] == ["a:0", "a:1"]
    assert normalized.funnel["filters"] == [{"name": "empty", "dropped": 0, "examples": []}, {"name": "dedupe", "dropped": 1,
                                             "examples": [{"id": "b:0", "text": "a  cat on a mat"}]}]
    exact = curate(CaptionsConfig(srcs, FiltersConfig(dedupe="exact")))
    assert [c.id for c in exact.captions] == ["a:0", "a:1", "b:0"]


PRESET = FiltersConfig(preset="synthvlm", alnum_ratio=RangeFilter(min=0.6),
                       special_char_ratio=RangeFilter(min=0.165, max=0.42),
                       char_repetition=RepetitionFilter(10, 0.0937), word_repetition=RepetitionFilter(10, 0.0309),
                       flagged_words=MaxFilter(0.0), dedupe="exact")


def test_funnel_adds_up_with_at_most_three_examples(sources, tmp_path):
    junk = ["$$$ 100% !!! ###"] * 5 + ["ha " * 30] * 2 + [CAPTIONS[0]] * 2  # alnum-poor, repetitive, dupes
    (tmp_path / "junk.txt").write_text("\n".join(junk) + "\n", encoding="utf-8")
    cfg = CaptionsConfig((sources["llava_json"], SourceConfig("text", str(tmp_path / "junk.txt"), "junk"),
                          sources["parquet"]), PRESET)
    result = curate(cfg)
    f = result.funnel
    json.dumps(f)  # JSON-serialisable as is
    assert [s["read"] for s in f["sources"]] == [4, 9, 4] and f["read"] == 17
    assert f["read"] == f["kept"] + sum(x["dropped"] for x in f["filters"])
    assert f["kept"] == len(result.captions)
    assert [x["name"] for x in f["filters"]] == ["empty", "alnum_ratio", "special_char_ratio", "char_repetition",
                                                 "word_repetition", "flagged_words", "dedupe"]
    alnum = f["filters"][1]
    assert alnum["dropped"] >= 5 and len(alnum["examples"]) == 3
    assert alnum["examples"][0] == {"id": "junk:0", "text": junk[0]}
    assert all(len(x["examples"]) <= 3 for x in f["filters"])
    ids = [c.id for c in result.captions]
    assert ids[0] == "llava:004539375" and "pq:0" not in ids  # pq:0 repeats llava's first caption
    order = [c.source for c in result.captions]
    assert order == sorted(order, key=["llava", "junk", "pq"].index)  # sources stay in recipe order
    text = format_funnel(f)
    assert "junk (text): 9 read" in text and "alnum_ratio: " in text and f"kept: {f['kept']} of 17" in text
    assert text.count("junk:0") == 1  # the example is shown once, under its filter


def test_streaming_write_then_read(sources, tmp_path):
    cfg = CaptionsConfig((sources["jsonl"], sources["text"]), FiltersConfig(dedupe="exact"))
    funnel = Funnel()
    out = tmp_path / "out" / "captions.jsonl"
    out.parent.mkdir()
    out.write_text("stale\n")  # replaced whole, not appended to
    n = write_jsonl(iter_curate(cfg, None, funnel), out)
    assert n == 4 and funnel.kept == 4 and funnel.filters[-1].dropped == 4  # tx repeats jl's captions
    assert [parse_caption_line(ln) for ln in out.read_text(encoding="utf-8").splitlines()] == curate(cfg).captions
    assert json.loads(out.read_text(encoding="utf-8").splitlines()[2]) == {"id": "jl:2", "text": CAPTIONS[2],
                                                                           "source": "jl"}
    assert [p.name for p in out.parent.iterdir()] == ["captions.jsonl"]  # no temp file left


def test_failed_write_leaves_the_old_file(tmp_path):
    out = tmp_path / "captions.jsonl"
    out.write_text("old\n")

    def broken():
        yield Caption("a:0", "fine", "a")
        raise RuntimeError("source died")

    with pytest.raises(RuntimeError):
        write_jsonl(broken(), out)
    assert out.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["captions.jsonl"]


def test_benchmark_small_mode_runs():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "captions.py"), "--n", "2000"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1].split()
    assert last[:2] == ["RESULT", "captions_per_s"] and last[3:] == ["target", "20000"]
    assert float(last[2]) > 0
