"""Scores describe the published bytes, so a consumer can re-score any row; a build whose captions were
moved to other rows' images fails that check."""
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from buildutil import assert_scores_match_published, rescore


def test_a_mispaired_build_fails_the_rescore_check(quickstart, tmp_path):
    out = tmp_path / "shuffled"
    shutil.copytree(quickstart[0], out)
    data = next((out / "data").iterdir())
    table = pq.read_table(data)
    captions = table.column("caption").to_pylist()
    moved = captions[1:] + captions[:1]  # every caption now sits beside another caption's image
    table = table.set_column(table.schema.get_field_index("caption"), "caption", pa.array(moved, pa.string()))
    pq.write_table(table, data)
    with pytest.raises(AssertionError, match="stored clip_score"):
        assert_scores_match_published(out)
    off = [abs(stored - again) for _, stored, again in rescore(out)]
    assert sum(d > 1e-4 for d in off) >= len(off) - 1  # (two captions can score the same by chance)
