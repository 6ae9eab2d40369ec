"""Issue 21, caption inputs (items 4, 6, 13, 20, 21, 22, 23): each caption file is read once, strictly and
in bounded memory, and every bad input is one located line (exit 2) with nothing written.

Everything runs through the CLI (`captions`, or a build that fails before any image is generated)."""
import ctypes
import gc
import hashlib
import json
import os
import random
import re
import socket
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from buildutil import cli, write_recipe

RECIPE = """\
name: inputs
version: 0.1.0
captions:
  sources:
{sources}
{filters}
generate:
  model: {model}
  steps: 2
  resolution: [64, 64]
  dtype: float32
score:
  clip:
    model: builtin:tiny-clip
select:
  size: 1
execution:
  device: cpu
"""


def recipe(d: Path, kind: str, path: str, extra: str = "", filters: str = "", model: str = "builtin:tiny-sd") -> Path:
    source = f"    - type: {kind}\n      path: {path}\n" + "".join(f"      {line}\n" for line in extra.splitlines())
    r = d / "r.yaml"
    r.write_text(RECIPE.format(sources=source, filters=f"  filters:\n{filters}" if filters else "", model=model))
    return r


def refused(r: Path, *fragments: str) -> str:
    """`captions --output` on a bad input: exit 2, one line naming it, nothing written."""
    out = r.parent / "out" / "captions.jsonl"
    out.parent.mkdir(exist_ok=True)
    proc = cli("captions", r, "--output", out, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, (fragment, proc.stderr)
    assert not any((r.parent / "out").iterdir()), "nothing is written, not even a temp file"
    return proc.stderr


def captions(r: Path) -> dict:
    proc = cli("captions", r, "--json")
    return json.loads(proc.stdout)


# --- item 4: the bytes digested are the bytes curated --------------------------------------------

class OpenWatch:
    """Counts opens of one path (Python's audit hook sees every open, ours and the libraries') and can
    rename a replacement over it just before a given open: an editor saving at the worst moment. With
    `put_back`, the original returns at the next open of any other file (the replacement was there
    only for that one open)."""

    hook_installed = False
    active = None

    def __init__(self, path: Path, replace_at: int | None = None, replacement: Path | None = None,
                 put_back: bool = False):
        self.path, self.replace_at, self.replacement, self.opens = str(path), replace_at, replacement, 0
        self.put_back, self.aside = put_back, None

    def __enter__(self):
        if not OpenWatch.hook_installed:  # audit hooks cannot be removed: one, inert outside a `with`
            sys.addaudithook(OpenWatch._hook)
            OpenWatch.hook_installed = True
        OpenWatch.active = self
        return self

    def __exit__(self, *exc):
        OpenWatch.active = None

    @staticmethod
    def _hook(event, args):
        watch = OpenWatch.active
        if watch is None or event != "open" or not isinstance(args[0], (str, os.PathLike)):
            return
        if os.fspath(args[0]) != watch.path:
            if watch.aside:
                os.replace(watch.aside, watch.path)
                watch.aside = None
            return
        watch.opens += 1
        if watch.opens == watch.replace_at:
            if watch.put_back:
                watch.aside = watch.path + ".aside"
                os.replace(watch.path, watch.aside)
            os.replace(watch.replacement, watch.path)


@pytest.mark.parametrize("limit", [None, 3])
def test_build_refuses_a_caption_file_replaced_after_it_was_digested(tmp_path, limit):
    r = write_recipe(tmp_path, size=2)
    if limit:  # the reader stops early: the rest of the file is still read and hashed
        r.write_text(r.read_text().replace("      id_column: id\n", f"      id_column: id\n      limit: {limit}\n"))
    caps = tmp_path / "caps.jsonl"
    before = hashlib.sha256(caps.read_bytes()).hexdigest()
    new = tmp_path / "edited.jsonl"
    new.write_text(caps.read_text().replace("Number 11.", "Number eleven."))
    after = hashlib.sha256(new.read_bytes()).hexdigest()
    out = tmp_path / "out"
    with OpenWatch(caps, replace_at=2, replacement=new) as watch:  # 1: the content identity, 2: curation
        proc = cli(r, "--output", out, check=False)
    assert watch.opens == 2, proc.stderr
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "captions.sources[0].path" in last and "changed while the build read it" in last
    assert f"sha256 {before} before, {after} read" in last
    # nothing of that curation is kept: no captions stored as finished, no dataset, no temp file
    assert not list(out.rglob("captions.json")) and not list(out.rglob("captions.jsonl"))
    assert not (out / "data").exists() and not list(out.rglob(".*tmp-*"))


def test_captions_reads_each_file_once_and_checks_its_pin(tmp_path):
    r = write_recipe(tmp_path)
    caps = tmp_path / "caps.jsonl"
    with OpenWatch(caps) as watch:
        assert captions(r)["funnel"]["read"] == 12
    assert watch.opens == 1
    wrong = hashlib.sha256(b"other content").hexdigest()
    r.write_text(r.read_text().replace("      id_column: id\n", f"      id_column: id\n      sha256: {wrong}\n"))
    refused(r, f"has sha256 {hashlib.sha256(caps.read_bytes()).hexdigest()}, the recipe pins {wrong}",
            "captions.sources[0].sha256")


# --- item 6: CSV is parsed strictly, one record per line ------------------------------------------

@pytest.mark.parametrize("body, fragments", [
    ('1,"A dog\n2,A cat\n3,A bird\n', ["u.csv:2: ", "ends inside a quoted field at line 4", "not closed"]),
    ('1,A dog\n2,"A cat\n3,A bird"\n', ["u.csv:3: ", "runs to line 4", "one record per line"]),
    ('1,A dog\n"2\n",A cat\n', ["u.csv:3: ", "runs to line 4"]),  # a line break in another column
    ('1,"A dog" barks\n', ["u.csv:2: ", "malformed CSV", "',' expected after '\"'"]),
    ('1,A dog\n2,A cat,extra\n', ["u.csv:3: ", "3 fields, the header has 2"]),
], ids=["unterminated-to-eof", "closed-later", "other-column", "text-after-quote", "ragged"])
def test_csv_malformed_records_are_located_errors(tmp_path, body, fragments):
    (tmp_path / "u.csv").write_text("id,caption\n" + body)
    refused(recipe(tmp_path, "csv", "u.csv", "id_column: id"), *fragments, "(captions.sources[0].path)")


def test_csv_quoted_fields_on_one_line_are_read(tmp_path):
    (tmp_path / "u.csv").write_bytes(b'id,caption\r\n1,"A dog, ""big"" and brown"\r\n2,A cat\r\n')
    got = captions(recipe(tmp_path, "csv", "u.csv", "id_column: id"))
    assert got["funnel"]["read"] == 2
    assert [c["text"] for c in got["captions"]] == ['A dog, "big" and brown', "A cat"]


# --- item 13: values Python cannot encode, ids of unbounded length --------------------------------

def _jsonl(d: Path, line: str) -> str:
    (d / "c.jsonl").write_text('{"id": "ok", "caption": "A dog."}\n' + line + "\n")
    return "c.jsonl"


@pytest.mark.parametrize("line, fragments, field", [
    ('{"id": "\\ud800", "caption": "A cat."}', ["c.jsonl:2: ", "lone surrogate \\ud800"], "id_column"),
    ('{"id": "b", "caption": "A \\udc00cat."}', ["c.jsonl:2: ", "lone surrogate \\udc00 at character 3"], "column"),
    ('{"id": %s, "caption": "A cat."}' % ("7" * 5000), ["c.jsonl:2: ", "more than 4,300 digits"], "path"),
    ('{"id": %s, "caption": "A cat."}' % ("7" * 4000), ["c.jsonl:2: ", "4,000 digits", "at most 1,000"], "id_column"),
    ('{"id": "%s", "caption": "A cat."}' % ("x" * 1001), ["c.jsonl:2: ", "1,001 characters long"], "id_column"),
    ('{"id": null, "caption": "A cat."}', ["c.jsonl:2: ", "the id is None"], "id_column"),
    ('{"id": "b", "caption": "A cat.", "n": %s}' % ("[" * 100000), ["c.jsonl:2: ", "nested too deeply"], "path"),
], ids=["surrogate-id", "surrogate-caption", "5000-digit-id", "4000-digit-id", "long-id", "null-id", "deep"])
def test_jsonl_values_that_cannot_be_ids_or_text(tmp_path, line, fragments, field):
    refused(recipe(tmp_path, "jsonl", _jsonl(tmp_path, line), "id_column: id"), *fragments,
            f"(captions.sources[0].{field})")


def _llava(d: Path, rid: str = '"2"', caption: str = "A cat.") -> str:
    text = ('[{"id": "1", "conversations": [{"from": "gpt", "value": "A dog."}]},\n'
            ' {"id": %s, "conversations": [{"from": "gpt", "value": "%s"}]}]' % (rid, caption))
    (d / "l.json").write_text(text)
    return "l.json"


@pytest.mark.parametrize("rid, caption, bad, reason", [
    ('"2"', "A \\ud83d cat.", b"\\ud83d", "a \\u escape of a lone UTF-16 surrogate"),
    ('"2"', "A \\ude00 cat.", b"\\ude00", "a \\u escape of a lone UTF-16 surrogate"),
    ('"\\udbff"', "A cat.", b"\\udbff", "a \\u escape of a lone UTF-16 surrogate"),
    ("7" * 5000, "A cat.", b"7777", "an integer beyond 64 bits"),  # ijson would crash the interpreter
], ids=["high-surrogate", "low-surrogate", "surrogate-id", "5000-digit-id"])
def test_llava_values_that_cannot_be_ids_or_text(tmp_path, rid, caption, bad, reason):
    name = _llava(tmp_path, rid, caption)
    data = (tmp_path / name).read_bytes()
    at, line_end = data.index(bad), data.index(b"\n")
    refused(recipe(tmp_path, "llava_json", name), f"l.json: invalid JSON at byte {at} (line 2, column {at - line_end})",
            reason)


def test_llava_surrogate_pair_and_escaped_backslash_are_text(tmp_path):
    got = captions(recipe(tmp_path, "llava_json", _llava(tmp_path, caption="A \\ud83d\\ude00 cat \\\\ud800.")))
    assert got["captions"][1]["text"] == "A \U0001f600 cat \\ud800."


@pytest.mark.parametrize("kind, data, fragment", [
    ("text", b"A dog.\nA \xed\xa0\x80 cat.\n", "c.txt:2: not UTF-8 text (invalid continuation byte at column 3)"),
    ("csv", b"caption\nA dog.\nA \xed\xa0\x80 cat.\n", "c.txt:3: not UTF-8 text"),
], ids=["text", "csv"])
def test_encoded_surrogates_in_line_files(tmp_path, kind, data, fragment):
    (tmp_path / "c.txt").write_bytes(data)
    refused(recipe(tmp_path, kind, "c.txt"), fragment)


def test_parquet_ids_and_text(tmp_path):
    pq.write_table(pa.table({"caption": ["A dog.", "A cat."], "id": ["a", "b" * 1001]}), tmp_path / "long.parquet")
    refused(recipe(tmp_path, "parquet", "long.parquet", "id_column: id"), "long.parquet: row 1: ",
            "1,001 characters long")
    offsets = pa.py_buffer(b"\x00\x00\x00\x00\x06\x00\x00\x00\x0e\x00\x00\x00")
    text = pa.Array.from_buffers(pa.string(), 2, [None, offsets, pa.py_buffer(b"A dog.A \xed\xa0\x80cat.")])
    pq.write_table(pa.table({"caption": text}), tmp_path / "bad.parquet")  # a writer that skipped validation
    refused(recipe(tmp_path, "parquet", "bad.parquet"), "bad.parquet: row 1: not UTF-8 text")


# --- item 20: what a path that is not a file is -----------------------------------------------------

def _make_special(d: Path, what: str) -> str:
    if what == "directory":
        (d / "p").mkdir()
    elif what == "fifo":
        os.mkfifo(d / "p")
    elif what == "link-to-dev-zero":
        (d / "p").symlink_to("/dev/zero")
    elif what == "dangling-link":
        (d / "p").symlink_to(d / "gone.jsonl")
    elif what == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(d / "p"))
        s.close()
    return "p"


@pytest.mark.parametrize("what, fragment", [
    ("directory", "is a directory, not a regular file"),
    ("fifo", "is a named pipe (FIFO), not a regular file"),
    ("link-to-dev-zero", "is a symbolic link to /dev/zero, a character device, not a regular file"),
    ("dangling-link", "is a symbolic link to"),
    ("socket", "is a socket, not a regular file"),
])
def test_a_source_path_that_is_not_a_file_says_what_it_is(tmp_path, what, fragment):
    r = recipe(tmp_path, "jsonl", _make_special(tmp_path, what))
    stderr = refused(r, "r.yaml:6:13: captions.sources[0].path: ", fragment)
    assert "not found" not in stderr or what == "dangling-link"
    assert cli("validate", r, check=False).returncode == 2


def test_a_file_swapped_for_a_fifo_after_validation_is_refused_without_blocking(tmp_path):
    r = recipe(tmp_path, "jsonl", _jsonl(tmp_path, '{"id": "b", "caption": "A cat."}'), "id_column: id")
    os.mkfifo(tmp_path / "fifo")
    # safety net: if the reader blocked on the FIFO (renamed to c.jsonl), a writer turns up after 10 s and
    # the test fails instead of hanging
    unblock = threading.Timer(10, lambda: open(tmp_path / "c.jsonl", "wb").close())
    unblock.start()
    try:
        with OpenWatch(tmp_path / "c.jsonl", replace_at=1, replacement=tmp_path / "fifo", put_back=True):
            refused(r, "c.jsonl is a named pipe (FIFO), not a regular file")
    finally:
        unblock.cancel()


# --- item 21: a byte-order mark is accepted by every reader -----------------------------------------

@pytest.mark.parametrize("kind, data, extra", [
    ("jsonl", b'{"id": "a", "caption": "A dog."}\n{"id": "b", "caption": "A cat."}\n', "id_column: id"),
    ("jsonl", b'{"id": "a", "caption": "A dog."}\n\xef\xbb\xbf{"id": "b", "caption": "A cat."}\n',
     "id_column: id"),  # two files joined with `cat`, each with its mark
    ("text", b"A dog.\nA cat.\n", ""),
    ("csv", b"id,caption\na,A dog.\nb,A cat.\n", "id_column: id"),
    ("llava_json", b'[{"id": "a", "conversations": [{"from": "gpt", "value": "A dog."}]},'
                   b' {"id": "b", "conversations": [{"from": "gpt", "value": "A cat."}]}]', ""),
], ids=["jsonl", "jsonl-joined", "text", "csv", "llava_json"])
def test_a_byte_order_mark_is_skipped(tmp_path, kind, data, extra):
    (tmp_path / "bom").write_bytes(b"\xef\xbb\xbf" + data)
    got = captions(recipe(tmp_path, kind, "bom", extra))
    ids = ["bom:0", "bom:1"] if kind == "text" else ["bom:a", "bom:b"]
    assert [(c["id"], c["text"]) for c in got["captions"]] == list(zip(ids, ["A dog.", "A cat."]))


# --- item 22: a broken LLaVA JSON is one line with the position ---------------------------------------

@pytest.mark.parametrize("cut, fragment", [
    (lambda b: b[:-20], "the file ends inside the list (truncated?)"),
    (lambda b: b + b" {}", "trailing garbage"),
    (lambda b: b.replace(b'"gpt"', b"'gpt'", 1), "invalid char in json text"),
], ids=["truncated", "trailing", "bad-char"])
def test_llava_json_errors_are_one_positioned_line(tmp_path, cut, fragment):
    data = cut(json.dumps([{"id": str(i), "conversations": [{"from": "gpt", "value": f"A dog {i}."}]}
                           for i in range(30)], indent=1).encode())
    (tmp_path / "l.json").write_bytes(data)
    stderr = refused(recipe(tmp_path, "llava_json", "l.json"), "l.json: invalid JSON at byte ", fragment)
    byte, line, column = map(int, re.search(r"at byte (\d+) \(line (\d+), column (\d+)\)", stderr).groups())
    assert line == data[:byte].count(b"\n") + 1 and column == byte - data[:byte].rfind(b"\n")
    if "truncated" in fragment:
        assert byte == len(data)


# --- item 23: one huge caption stays within bounded memory ---------------------------------------------

def _peak_growth_mb(run) -> float:
    """MB the process's resident memory peaked above where it started, while `run()` ran (Linux)."""
    def status(key):
        return int(re.search(key + r":\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) / 1024
    gc.collect()
    try:  # memory freed earlier but still resident would absorb the growth unseen: hand it back first
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM, the peak, to the current size
    except OSError:
        pytest.skip("needs Linux's /proc/self/clear_refs to measure a peak")
    start = status("VmRSS")
    run()
    return status("VmHWM") - start


def _huge_line(d: Path, megabytes: int, r: Path) -> None:
    """c.jsonl: a short caption and one of `megabytes` MB on one line; `r` runs once on the short one
    first, so that what it imports (tokenizers, transformers) is not counted as the long one's memory."""
    (d / "c.jsonl").write_text('{"id": "small", "caption": "A red square on the left."}\n')
    cli("captions", r)
    words = "a red dog runs over the green grass near an old barn while two children watch it ".split()
    chunk = " ".join(words[i % len(words)] + str(i % 97) for i in range(200_000))
    huge = (chunk + " ") * (megabytes * (1 << 20) // (len(chunk) + 1))
    with open(d / "c.jsonl", "w") as f:
        f.write('{"id": "small", "caption": "A red square on the left."}\n')
        f.write(json.dumps({"id": "huge", "caption": huge}) + "\n")


@pytest.mark.parametrize("truncate", [False, True])
def test_max_tokens_on_a_huge_caption_stays_within_bounded_memory(tmp_path, truncate):
    filters = "    max_tokens: 20\n" + ("    truncate: true\n" if truncate else "")
    r = recipe(tmp_path, "jsonl", "c.jsonl", "id_column: id", filters, model="builtin:shapes-sd")
    _huge_line(tmp_path, 10 if truncate else 30, r)
    out = tmp_path / "out.jsonl"
    results = []
    grew = _peak_growth_mb(lambda: results.append(cli("captions", r, "--output", out, "--json")))
    # tokenized whole, the 30 MB caption took 4.3 GB (the 10 MB one, truncated: 2.6 GB); now ~100 MB
    assert grew < 250, f"peak memory grew by {grew:.0f} MB for one huge caption"
    funnel = json.loads(results[0].stdout)["funnel"]
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    if truncate:
        assert funnel["truncated"] == 1 and [c["id"] for c in kept] == ["c:small", "c:huge"]
        assert kept[1]["text"].startswith("a0 red1 dog2 runs3") and len(kept[1]["text"]) < 200
    else:
        row = next(f for f in funnel["filters"] if f["name"] == "max_tokens")
        assert row["dropped"] == 1 and [c["id"] for c in kept] == ["c:small"]
        assert len(row["examples"][0]["text"]) == 1000  # an example shows the caption's start, not 30 MB


def test_max_tokens_decides_exactly_on_long_captions(tmp_path):
    """Captions past the tokenizer's piece size (64 Ki characters) are counted piece by piece, cut at
    whitespace: the decision must be what counting the whole caption gives (the limit is 20 here,
    18 words + begin/end tokens fit exactly), whatever whitespace surrounds the words."""
    spaces = [" ", "\n", "\t", "\u3000", "  ", "\u00a0"]

    def spread(n_words: int, seed: int) -> str:
        rng = random.Random(seed)
        return "".join("".join(rng.choice(spaces) for _ in range(rng.randint(3000, 9000)))
                       + rng.choice(["red", "circle", "blue", "square"]) for _ in range(n_words)) + " " * 5000

    rows = [("fits", spread(18, 1)), ("one-over", spread(19, 2)), ("one-word", "x" * 100_000)]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"id": i, "caption": c}) + "\n" for i, c in rows))
    r = recipe(tmp_path, "jsonl", "c.jsonl", "id_column: id", "    max_tokens: 20\n", model="builtin:shapes-sd")
    got = captions(r)
    assert [c["id"] for c in got["captions"]] == ["c:fits"]
    assert next(f for f in got["funnel"]["filters"] if f["name"] == "max_tokens")["dropped"] == 2


def test_text_filters_on_a_long_caption_stay_within_bounded_memory(tmp_path):
    # bounds every caption passes, so that each statistic is computed on the whole 4 MB caption
    filters = ("    char_repetition: {rep_len: 10, max: 1.0}\n    word_repetition: {rep_len: 10, max: 1.0}\n"
               "    flagged_words: {max: 1.0}\n    words: {min: 3}\n    dedupe: normalized\n")
    r = recipe(tmp_path, "jsonl", "c.jsonl", "id_column: id", filters)
    _huge_line(tmp_path, 4, r)
    out = tmp_path / "out.jsonl"
    grew = _peak_growth_mb(lambda: cli("captions", r, "--output", out))
    # on whole-text word tuples and gram lists these took 300 MB here (75 MB now)
    assert grew < 150, f"peak memory grew by {grew:.0f} MB for one 4 MB caption"
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["c:small", "c:huge"]
