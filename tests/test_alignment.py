"""Scores describe the published bytes, so a consumer can re-score any row; a build whose captions were
moved to other rows' images fails that check. With the trained shapes models (the quickstart), each
row's image also picks out its own caption among the build's captions."""
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from buildutil import assert_scores_match_published, own_caption_wins, rescore


def _shuffled(build, tmp_path):
    """A copy of `build` whose captions moved one row on: each now sits beside another caption's image."""
    out = tmp_path / "shuffled"
    shutil.copytree(build, out)
    data = next((out / "data").iterdir())
    table = pq.read_table(data)
    captions = table.column("caption").to_pylist()
    moved = captions[1:] + captions[:1]
    table = table.set_column(table.schema.get_field_index("caption"), "caption", pa.array(moved, pa.string()))
    pq.write_table(table, data)
    return out


def test_a_mispaired_build_fails_the_rescore_check(quickstart, tmp_path):
    out = _shuffled(quickstart[0], tmp_path)
    with pytest.raises(AssertionError, match="stored clip_score"):
        assert_scores_match_published(out)
    off = [abs(stored - again) for _, stored, again in rescore(out)]
    assert sum(d > 1e-4 for d in off) >= len(off) - 1  # (two captions can score the same by chance)


def test_each_row_picks_out_its_own_caption(quickstart, tmp_path):
    """Shapes models: a row's image scores its own caption above every other caption of the build for
    >= 80% of rows, and a shuffled build falls far below that."""
    assert_scores_match_published(quickstart[0])
    assert own_caption_wins(quickstart[0]) >= 0.8
    assert own_caption_wins(_shuffled(quickstart[0], tmp_path)) < 0.3
