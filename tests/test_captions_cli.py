"""`synthvlm-build captions`: the funnel of a recipe mixing three source types."""
import csv
import json

from buildutil import cli, work_root

RECIPE = """\
name: mixed
version: 0.1.0
captions:
  sources:
    - type: jsonl
      path: a.jsonl
      id_column: id
    - type: csv
      path: b.csv
      column: text
      name: web
    - type: text
      path: c.txt
      limit: 3
  filters:
    preset: synthvlm
    words: {min: 3}
    dedupe: normalized
generate:
  model: builtin:tiny-sd
  steps: 2
  resolution: [64, 64]
  dtype: float32
score:
  clip:
    model: builtin:tiny-clip
select:
  size: 4
execution:
  device: cpu
"""


def make(tmp_path):
    (tmp_path / "a.jsonl").write_text(
        '{"id": "x1", "caption": "A red bicycle leaning against a brick wall."}\n'
        '{"id": "x2", "caption": "$$$ ### !!! @@@ %%% ^^^ &&& ***"}\n'
        '{"id": "x3", "caption": "Two dogs running across a green meadow."}\n')
    with open(tmp_path / "b.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "other"])
        w.writerow(["a red bicycle leaning against a brick  wall", "dup of x1 once normalized"])
        w.writerow(["A bowl of ramen with a soft boiled egg.", ""])
        w.writerow(["Short one.", "too few words"])
    (tmp_path / "c.txt").write_text("A lighthouse on a rocky coast at dusk.\n\nA cat asleep on a sunny windowsill.\n"
                                    "A wooden boat on a calm lake.\nNever read: beyond the limit.\n")
    (tmp_path / "r.yaml").write_text(RECIPE)
    return tmp_path / "r.yaml"


def test_captions_funnel_and_output(tmp_path):
    recipe = make(tmp_path)
    proc = cli("captions", recipe, "--output", tmp_path / "out.jsonl")
    text = proc.stdout
    for line in ("a (jsonl): 3 read", "web (csv): 3 read", "c (text): 3 read", "alnum_ratio: 1 dropped",
                 'a:x2  "$$$ ### !!! @@@ %%% ^^^ &&& ***"', "words: 1 dropped", 'web:2  "Short one."',
                 "dedupe: 1 dropped", "kept: 6 of 9", "wrote 6 captions"):
        assert line in text, line
    kept = [json.loads(ln) for ln in (tmp_path / "out.jsonl").read_text().splitlines()]
    # text ids are line numbers (blank line 1 skipped); the limit stops before line 4
    assert [k["id"] for k in kept] == ["a:x1", "a:x3", "web:1", "c:0", "c:2", "c:3"]
    assert [k["source"] for k in kept] == ["a", "a", "web", "c", "c", "c"]

    js = json.loads(cli("captions", recipe, "--json").stdout)
    funnel = js["funnel"]
    assert [(s["name"], s["type"], s["read"]) for s in funnel["sources"]] == \
        [("a", "jsonl", 3), ("web", "csv", 3), ("c", "text", 3)]
    dropped = {f["name"]: f for f in funnel["filters"]}
    assert dropped["alnum_ratio"]["dropped"] == 1 and dropped["alnum_ratio"]["examples"][0]["id"] == "a:x2"
    assert dropped["words"]["dropped"] == 1 and dropped["words"]["examples"][0]["id"] == "web:2"
    assert dropped["dedupe"]["dropped"] == 1 and dropped["dedupe"]["examples"][0]["id"] == "web:0"
    assert funnel["read"] == 9 and funnel["kept"] == 6
    assert [c["id"] for c in js["captions"]] == [k["id"] for k in kept]
    # Run after run, the same ids.
    assert json.loads(cli("captions", recipe, "--json").stdout) == js


def test_build_uses_the_same_caption_stage(tmp_path):
    recipe = make(tmp_path)
    cli("captions", recipe, "--output", tmp_path / "out.jsonl")
    cli(recipe, "--output", tmp_path / "build")
    assert (work_root(tmp_path / "build") / "captions.jsonl").read_text() == (tmp_path / "out.jsonl").read_text()
    stats = json.loads((tmp_path / "build/stats.json").read_text())
    assert stats["captions"]["kept"] == 6 and stats["captions"]["read"] == 9
    assert "caption filter `dedupe`" in (tmp_path / "build/README.md").read_text()


def test_missing_column_is_located_in_the_recipe(tmp_path):
    recipe = make(tmp_path)
    recipe.write_text(RECIPE.replace("column: text", "column: caption"))
    proc = cli("captions", recipe, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"{recipe}:10:15: captions.sources[1].column: ")
    assert "text" in proc.stderr and "other" in proc.stderr  # lists the columns there are
    build = cli(recipe, "--output", tmp_path / "never", check=False)
    assert build.returncode == 2 and not (tmp_path / "never" / "data").exists()


# --- max_tokens counted where the generator's files are not at hand (README "Caption curation") ----------
PAPER_LIKE = """\
name: paper-like
version: 0.1.0
captions:
  sources:
    - type: jsonl
      path: caps.jsonl
  filters:
    max_tokens: 8
{extra}generate:
  model: stabilityai/stable-diffusion-xl-base-1.0
  revision: 462165984030d82259a11f4367a4eed129e94a7b
score:
  clip:
    model: ViT-B-32
    pretrained: openai
select:
  size: 2
"""
SHORT_AND_LONG = ["a red circle", "a red circle on the left and a blue square at the top of a white background"]


def test_max_tokens_says_why_it_needs_the_generator_and_can_count_with_the_scorers_tokenizer(tmp_path):
    (tmp_path / "caps.jsonl").write_text("".join(json.dumps({"caption": c}) + "\n" for c in SHORT_AND_LONG))
    (tmp_path / "r.yaml").write_text(PAPER_LIKE.format(extra=""))
    proc = cli("captions", tmp_path / "r.yaml", check=False)  # SDXL is neither cached nor reachable here
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("error: captions.filters.max_tokens counts tokens with the tokenizer of"
                                  " generate.model, so the caption stage loads it: cannot load"
                                  " 'stabilityai/stable-diffusion-xl-base-1.0'")
    assert "set captions.filters.max_tokens_tokenizer: clip" in proc.stderr
    (tmp_path / "clip.yaml").write_text(PAPER_LIKE.format(extra="    max_tokens_tokenizer: clip\n"))
    proc = cli("captions", tmp_path / "clip.yaml", "--json")  # ViT-B-32's BPE ships with open_clip: no download
    out = json.loads(proc.stdout)
    assert [c["text"] for c in out["captions"]] == SHORT_AND_LONG[:1]  # 3 + 2 tokens; the long one is 21
    assert next(f for f in out["funnel"]["filters"] if f["name"] == "max_tokens")["dropped"] == 1
    # the count is the data: clip changes the fingerprint, the default keeps every published one (test_fingerprints)
    fingerprints = [cli("validate", tmp_path / name).stdout.split("fingerprint ")[1] for name in ("r.yaml", "clip.yaml")]
    assert fingerprints[0] != fingerprints[1]


def test_the_two_tokenizers_count_alike_where_both_are_clip_bpe(tmp_path):
    from synthvlm_builder.models.tokenizer import caption_tokenizer, clip_caption_tokenizer
    generator, scorer = caption_tokenizer("builtin:tiny-sd"), clip_caption_tokenizer("ViT-B-32")
    texts = SHORT_AND_LONG + ["Two dogs, running!", "un café crème", "x" * 300]
    assert [generator.count(t) for t in texts] == [scorer.count(t) for t in texts]
    assert scorer.count("a red circle") == 5  # <start> a red circle <end>
    shapes = clip_caption_tokenizer("builtin:shapes-clip")  # a shipped CLIP's own (word-level) tokenizer
    assert shapes.count("a red circle") == 5


def test_max_tokens_tokenizer_applies_with_max_tokens_only(tmp_path):
    (tmp_path / "caps.jsonl").write_text('{"caption": "x"}\n')
    text = PAPER_LIKE.format(extra="    max_tokens_tokenizer: clip\n").replace("    max_tokens: 8\n", "")
    (tmp_path / "r.yaml").write_text(text)
    proc = cli("validate", tmp_path / "r.yaml", check=False)
    assert proc.returncode == 2
    assert proc.stderr == (f"{tmp_path / 'r.yaml'}:8:5: captions.filters.max_tokens_tokenizer: applies with"
                           " captions.filters.max_tokens only; set max_tokens too, or remove it\n")
