"""llm_course.files.atomic_write: the old file survives a failed write; no temporary file is left."""

import pytest

from llm_course.files import atomic_write


def test_replaces_the_file_on_success(tmp_path):
    path = tmp_path / "sub" / "index.bin"
    with atomic_write(path) as f:
        f.write(b"new")
    assert path.read_bytes() == b"new" and [p.name for p in path.parent.iterdir()] == ["index.bin"]


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    path = tmp_path / "meta.json"
    path.write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_write(path, "w", encoding="utf-8") as f:
            f.write("half of the new")
            raise RuntimeError("disk full")
    assert path.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["meta.json"]


def test_bad_mode_is_named():
    with pytest.raises(ValueError, match="mode must be 'wb' or 'w'"):
        with atomic_write("x", mode="a"):
            pass
