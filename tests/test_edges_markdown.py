"""Issue 21, items 9 and 13: no recipe text can rewrite a review comment, validate's lines, the workflow's comment,
the dataset card or the preview page; a string a recipe cannot sensibly hold is refused at `validate`.

Every Markdown output is parsed with markdown-it-py (CommonMark plus GFM tables and strikethrough, as GitHub and
the Hub render them) and its tokens walked: no recipe text becomes HTML, a heading, emphasis, a link or an image,
every code block opened ends where it was closed, and the recipe's text is still shown, literally.
"""
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from markdown_it import MarkdownIt

from buildutil import ROOT, cli, write_recipe
from synthvlm_builder.text import has_unsafe, printable

MD = MarkdownIt("commonmark").enable(["table", "strikethrough"])
INPUTS = Path(__file__).parent / "golden" / "review"
SCRIPT = ROOT / ".github" / "scripts" / "recipe-review.sh"
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main", "-c", "core.quotePath=true"]

# One line of everything that means something to Markdown, HTML, GitHub or a terminal reader.
EVIL = ("pwn ``` `` <img src=x onerror=alert(1)> **VERDICT OK** [link](http://evil) ![i](http://evil/i.png) ~~s~~"
        " | cell @org/team #1 $x$ &lt;b&gt; \u202eoverride\u202c")
# ...and as free text over several lines: a heading, a fence, a closing tag, an indented block, a list.
DESCRIPTION = EVIL + "\n# Heading\n```\n</details>\n~~~\n    indented\n- item\n1. one\n===\n\nnext\tparagraph"


def q(value: str) -> str:
    """A YAML double-quoted scalar (JSON is YAML) spelling `value` with escapes, lone surrogates included."""
    return json.dumps(value)


# --------------------------------------------------------------------------- Markdown, as a renderer reads it
def flat(text: str) -> list:
    return [tok for block in MD.parse(text) for tok in (block, *(block.children or ()))]


def plain(inline) -> str:
    """What a reader sees of an inline token: its text and code, without markup."""
    return "".join("\n" if c.type == "softbreak" else c.content for c in inline.children
                   if c.type in ("text", "code_inline", "softbreak"))


def spans(tokens: list, kind: str) -> list[str]:
    """The text inside each <kind> (strong, em, s) element."""
    out, depth, cur = [], 0, []
    for t in tokens:
        if t.type == f"{kind}_open":
            depth += 1
        elif t.type == f"{kind}_close":
            depth -= 1
            out.append("".join(cur))
            cur = []
        elif depth and t.type in ("text", "code_inline"):
            cur.append(t.content)
    return out


def inert(text: str, headings: list[str], strong: list[str], html=(), em=(), links=(), images=()) -> list:
    """Assert `text` renders exactly our structure; return its tokens."""
    blocks = MD.parse(text)
    assert [plain(blocks[i + 1]) for i, t in enumerate(blocks) if t.type == "heading_open"] == headings
    tokens = flat(text)
    for t in tokens:
        if t.type in ("html_inline", "html_block"):
            assert any(re.fullmatch(p, t.content.strip()) for p in html), t.content
    assert spans(tokens, "strong") == strong
    assert spans(tokens, "em") == list(em)
    assert spans(tokens, "s") == []
    assert [t.attrs["href"] for t in tokens if t.type == "link_open"] == list(links)
    assert [t.attrs["src"] for t in tokens if t.type == "image"] == list(images)
    return tokens


def code_cells(tokens: list) -> list[str]:
    return [t.content for t in tokens if t.type == "code_inline"]


# --------------------------------------------------------------------------- recipes
@pytest.fixture
def recipes(tmp_path):
    shutil.copytree(INPUTS, tmp_path / "r")
    return tmp_path / "r"


def edited(text: str, *edits: tuple[str, str]) -> str:
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    return text


def variant(d: Path, name: str, *edits: tuple[str, str]) -> str:
    """old.yaml in `d`, edited, written as `name`."""
    (d / name).write_text(edited((d / "old.yaml").read_text(), *edits))
    return name


MALICIOUS_VALID = (("description: Before the change.", f"description: {q(DESCRIPTION)}"),
                   ("version: 1.0.0", "version: 1.0.1"), ("steps: 20", "steps: 21"),
                   ("select:", f"format:\n  prompts: [{q(EVIL)}]\nselect:"))

# Each line: (edit of old.yaml, the field the problem names, what its message says). One recipe holds them all.
MALICIOUS_INVALID = [
    (("seed: 3", 'seed: 3\n"x\\n# heading ```\\n## h2 <img src=x>": 1'), "x\\n# heading ```\\n## h2 <img src=x>",
     "unknown field 'x\\n# heading ```\\n## h2 <img src=x>'; allowed: name,"),
    (("seed: 3", 'seed: 3\n"\\ud800": 2'), "\\ud800", "unknown field '\\ud800'"),
    (("description: Before the change.", 'description: "title\\e]0;pwned\\a\\e[2J"'), "description",
     "holds U+001B (escape) at character 6; free text may span lines"),
    (("id_column: id", 'id_column: "id\\ud800"'), "captions.sources[0].id_column", "lone surrogate U+D800"),
    (("limit: 4", 'limit: 4\n      name: "a```b~~~"'), "captions.sources[0].name", "must use only letters"),
    (("model: builtin:tiny-sd", 'model: "builtin:tiny-sd\\u202e"'), "generate.model",
     "holds U+202E (right-to-left override) at character 16; a name, id, path"),
    (("name: golden", 'name: "golden\\n"'), "name", "holds U+000A (line feed) at character 7"),
]


def test_review_and_diff_show_a_malicious_description_literally(recipes):
    new = variant(recipes, "new.yaml", *MALICIOUS_VALID)
    proc = cli("review", "old.yaml", new, cwd=recipes, check=False)
    assert proc.returncode == 3, proc.stderr
    tokens = inert(proc.stdout, ["Recipe review: new.yaml", "Changed fields (4)", "Compute estimate", "Notes"],
                   ["✅ data changes; version bumped"])
    cells = code_cells(tokens)  # GFM unescapes the \| of a code span inside a table cell
    assert printable(json.dumps(DESCRIPTION, ensure_ascii=False)) in cells
    assert printable(json.dumps([EVIL], ensure_ascii=False)) in cells
    rows = [t for t in tokens if t.type == "tr_open"]
    assert len(rows) == 1 + 3 + 1 + 4 + 1 + 7  # checks table, changed fields, estimate: nothing split a row
    assert all(len(re.findall(r"(?<!\\)\|", line)) in (0, 3, 5) for line in proc.stdout.splitlines()
               if line.startswith("| `"))

    js = cli("review", "old.yaml", new, "--format", "json", cwd=recipes, check=False)
    assert js.returncode == 3
    changes = {c["field"]: c for c in json.loads(js.stdout.encode("utf-8"))["changes"]}
    assert changes["description"]["new"] == DESCRIPTION and changes["format.prompts"]["new"] == [EVIL]

    diff = cli("diff", "old.yaml", new, cwd=recipes, check=False)
    assert diff.returncode == 3
    lines = diff.stdout.splitlines()
    assert lines[0] == "4 field(s) changed:"
    assert lines[1] == f"  description: {json.dumps('Before the change.')} -> {json.dumps(DESCRIPTION)}  [no data" \
                       " change]"
    assert not any(has_unsafe(line) for line in lines)


def test_every_malicious_string_is_one_located_line_and_inert_in_review(recipes):
    new = variant(recipes, "new.yaml", *(edit for edit, _, _ in MALICIOUS_INVALID))
    proc = cli("validate", new, cwd=recipes, check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == len(MALICIOUS_INVALID) and not any(has_unsafe(line) for line in lines)  # one line each
    for _, field, message in MALICIOUS_INVALID:
        assert any(re.match(rf"new\.yaml:\d+:\d+: {re.escape(field)}: .*{re.escape(message)}", line)
                   for line in lines), (field, lines)
    assert all(re.match(r"new\.yaml:\d+:\d+: \S", line) for line in lines)

    review = cli("review", "old.yaml", new, cwd=recipes, check=False)
    assert review.returncode == 2 and review.stderr == proc.stderr
    n = len(lines)
    tokens = inert(review.stdout, ["Recipe review: new.yaml", f"Validation of new.yaml: {n} problem(s)"],
                   ["❌ invalid recipe"])
    items = [t for t in tokens if t.type == "list_item_open"]
    assert len(items) == n and "\\ud800" in code_cells(tokens)
    shown = [plain(b) for b in MD.parse(review.stdout) if b.type == "inline" and b.content.startswith("`new.yaml:")]
    assert shown == [line.replace(": ", " ", 1) for line in lines]  # what validate says, word for word

    js = cli("review", "old.yaml", new, "--format", "json", cwd=recipes, check=False)
    assert js.returncode == 2
    problems = json.loads(js.stdout.encode("utf-8"))["problems"]["new"]  # encodable: no lone surrogate
    assert [f"new.yaml:{p['line']}:{p['col']}: {p['field']}: {p['message']}" for p in problems] == lines


@pytest.mark.parametrize("edit, field, message", [
    (("name: golden", 'name: "golden\\n"'), "name", "U+000A (line feed)"),            # `$` matches before "\n"
    (("version: 1.0.0", 'version: "1.0.0\\n"'), "version", "U+000A (line feed)"),
    (("path: caps.jsonl", 'path: "caps.jsonl\\e[2J"'), "captions.sources[0].path", "U+001B (escape)"),
    (("id_column: id", 'id_column: "id\\t"'), "captions.sources[0].id_column", "U+0009 (tab)"),
    (("model: builtin:tiny-clip", 'model: "builtin:tiny-clip\\u2066"'), "score.clip.model",
     "U+2066 (left-to-right isolate)"),
    (("seed: 3", 'seed: 3\n"seed\\u2028": 3'), "seed\\u2028",
     "unknown field 'seed\\u2028'; did you mean 'seed'?"),
    (("description: Before the change.", 'description: "a\\ud800"'), "description", "lone surrogate U+D800"),
    (("description: Before the change.", 'description: "bell\\a"'), "description", "U+0007 (a control character)"),
    (("select:", 'format:\n  prompts: ["\\ud83d\\ude00 Describe it."]\nselect:'), "format.prompts[0]",
     "lone surrogate U+D83D at character 1, which no UTF-8 text can hold; write the character itself"),
])
def test_unsafe_strings_are_refused_at_validate(recipes, edit, field, message):
    new = variant(recipes, "new.yaml", edit)
    escaped = next(x.strip() for x in edit[1].splitlines() if "\\" in x)
    line = next(i for i, x in enumerate((recipes / new).read_text().splitlines(), 1) if escaped in x)
    proc = cli("validate", new, cwd=recipes, check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert re.fullmatch(rf"new\.yaml:{line}:\d+: {re.escape(field)}: .*{re.escape(message)}.*\n", proc.stderr), \
        proc.stderr


def test_free_text_may_span_lines_and_hold_tabs_and_bidi_marks(recipes):
    hebrew = 'description: "Two lines,\\n\\tindented: \\u05e9\\u05dc\\u05d5\\u05dd \\u200f."'  # RLM: a bidi mark
    new = variant(recipes, "new.yaml", ("description: Before the change.", hebrew))
    assert cli("validate", new, cwd=recipes, check=False).returncode == 0


# --------------------------------------------------------------------------- the workflow's comment
def git(repo: Path, *args: str) -> str:
    return subprocess.run(GIT + list(args), cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def test_workflow_comment_keeps_file_names_and_recipe_text_inert(tmp_path):
    repo = tmp_path / "repo"
    (repo / "recipes").mkdir(parents=True)
    shutil.copy(INPUTS / "caps.jsonl", repo / "recipes" / "caps.jsonl")
    shutil.copy(INPUTS / "old.yaml", repo / "recipes" / "ok.yaml")
    gone, data = "recipes/gone``` <img src=x onerror=alert(1)>.yaml", "recipes/in ~~~ ``` <i>x.jsonl"
    shutil.copy(INPUTS / "old.yaml", repo / gone)
    (repo / data).write_text("{}\n")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "base")
    base = git(repo, "rev-parse", "HEAD")
    (repo / gone).unlink()
    (repo / data).write_text("{}\n{}\n")
    (repo / "recipes" / "ok.yaml").write_text(edited((INPUTS / "old.yaml").read_text(), *MALICIOUS_VALID[:3]))
    bad = "recipes/bad ```` `` \n# heading <img src=x>.yaml"
    (repo / bad).write_text(edited((INPUTS / "old.yaml").read_text(),
                                   ("seed: 3", 'seed: 3\n"k\\n```` \\n# Heading\\n</details>": 1')))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "pr")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "REVIEW_COMPARE_CAPTIONS": "0"}  # the data comparison's Markdown: tests/test_compare.py
    proc = subprocess.run(["bash", str(SCRIPT), base, "HEAD", "out.md"], cwd=repo, env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    comment = (repo / "out.md").read_text()
    tokens = inert(comment, ["Recipe review", f"Recipe review: {printable(bad)}", f"Validation of {printable(bad)}:"
                             " 1 problem(s)", "Recipe review: recipes/ok.yaml", "Changed fields (3)",
                             "Compute estimate", "Notes"],
                   ["❌ invalid recipe", "✅ data changes; version bumped"],
                   html=[r"<!-- synthvlm-recipe-review -->", r"<details><summary>synthvlm-build validate: failed"
                         r" \(exit 2\)</summary>", r"</details>"],
                   em=["Exit 2 (an invalid recipe) or 4 (the data changes but version was not bumped) fails this"
                       " check; this run's status: 2."])
    assert {f"removed: {gone}", f"changed input file: {data}"} <= {plain(b) for b in MD.parse(comment)
                                                                 if b.type == "inline"}
    fences = [t for t in tokens if t.type == "fence"]
    assert [f.info for f in fences] == ["text"]
    validate = cli("validate", "recipes/ok.yaml", bad, cwd=repo, check=False)
    assert sorted(fences[0].content.splitlines()) == sorted((validate.stdout + validate.stderr).splitlines())
    blocks = MD.parse(comment)
    after = blocks[blocks.index(fences[0]) + 1]
    assert after.type == "html_block" and after.content.strip() == "</details>"  # closed where the script closed it
    assert printable(json.dumps(DESCRIPTION, ensure_ascii=False)) in code_cells(tokens)


# --------------------------------------------------------------------------- the dataset card and the preview
def test_card_shows_the_description_and_recipe_literally(tmp_path):
    prefix = "A `` <b>photo</b> | of "
    r = write_recipe(tmp_path, n_captions=4, size=2, extra=f"description: {q(DESCRIPTION)}\n")
    r.write_text(edited(r.read_text(), ("model: builtin:tiny-clip", f"model: builtin:tiny-clip\n    prefix: {q(prefix)}")))
    out = tmp_path / "out"
    proc = cli(r, "--output", out, check=False)
    assert proc.returncode == 0, proc.stderr
    text = (out / "README.md").read_text()
    _, header, body = text.split("---\n", 2)
    assert yaml.safe_load(header)["pretty_name"] == "tiny-build"
    tokens = inert(body, ["tiny-build v0.1.0", "Models", "License", "Load", "Funnel", "Scores", "Samples", "Cost",
                          "Recipe", "Citation"],
                   ["Rows:", "Generation:", "Data fingerprint:", "Generator:", "Scorer:", "Caption length:"],
                   html=[r"<!-- synthvlm:sections -->"],  # where publish and evaluate --card add theirs
                   links=["https://arxiv.org/abs/2407.20756", "https://github.com/synthvlm/synthvlm-builder"],
                   images=["score_histogram.png", "sample_grid.png"])
    blocks = MD.parse(body)
    first = blocks.index(next(t for t in blocks if t.type == "heading_close")) + 1
    shown = []
    for t in blocks[first:]:
        if t.type == "inline" and "Synthetic image-caption pairs" in t.content:
            break
        if t.type == "inline":
            shown += plain(t).split("\n")
    assert shown == [printable(" ".join(line.split())) for line in DESCRIPTION.splitlines() if line]  # as text
    fences = {t.info: t.content for t in tokens if t.type == "fence"}
    assert fences["yaml"] == r.read_text().rstrip() + "\n"  # the recipe, whole: its ``` did not close the block
    assert f"text prefix {json.dumps(prefix)}" in [plain(t) for t in blocks if t.type == "inline" and "Scorer" in t.content][0]


def test_a_lone_surrogate_never_reaches_generation_or_the_card(tmp_path):
    r = write_recipe(tmp_path, n_captions=4, size=2, extra='description: "caf\\udce9"\n')
    proc = cli(r, "--output", tmp_path / "out", check=False)
    assert proc.returncode == 2
    line = r.read_text().splitlines().index('description: "caf\\udce9"') + 1
    assert proc.stderr == (f"{r}:{line}:14: description: holds a lone surrogate U+DCE9 at character 4, which no UTF-8"
                           " text can hold; write the character itself (or a surrogate pair as one \\UXXXXXXXX"
                           " escape)\n")
    assert not (tmp_path / "out").exists()


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.captions, self.alts, self.depth = [], [], [], 0

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "img":
            self.alts.append(dict(attrs).get("alt"))
        if tag == "div" and dict(attrs).get("class") == "caption":
            self.captions.append("")
            self.depth = 1

    def handle_endtag(self, tag):
        self.depth = 0

    def handle_data(self, data):
        if self.depth:
            self.captions[-1] += data


def test_preview_page_shows_caption_html_as_text(tmp_path):
    caption = 'A cat" onerror="alert(1)"> </div><script>alert(2)</script><img src=x onerror=alert(3)> on a mat'
    r = write_recipe(tmp_path, n_captions=1, size=1)
    (tmp_path / "caps.jsonl").write_text(json.dumps({"id": '"><b>id</b>', "caption": caption}) + "\n")
    proc = cli("preview", r, "--captions", "1", "--output", tmp_path / "p", check=False)
    assert proc.returncode == 0, proc.stderr
    page = Page()
    page.feed((tmp_path / "p" / "index.html").read_text())
    assert not [t for t, _ in page.tags if t in ("script", "b")]
    assert not [a for _, attrs in page.tags for a in attrs if a.startswith("on")]
    assert page.captions == [caption] * 2 and page.alts == [caption] * 2  # images_per_caption: 2
