"""Image sources at scale (fgdense.io.sources): manifests and folders read lazily, names, shards, inputs spared."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from fgdense.errors import ImageLoadError, OutputError
from fgdense.io.sources import Sources, shard


def _image(path, size=(8, 6)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 30, 30)).save(path)
    return path


def _items(sources, **kwargs):
    return list(sources.items(**kwargs))


def test_a_text_manifest_is_read_relative_to_its_folder_with_comments_and_blank_lines(tmp_path, monkeypatch):
    _image(tmp_path / "data" / "a.png")
    _image(tmp_path / "data" / "sub" / "b.png")
    manifest = tmp_path / "data" / "list.txt"
    manifest.write_text("# images\na.png\n\n  sub/b.png  \n" + str(tmp_path / "data" / "a.png") + "\n")
    monkeypatch.chdir(tmp_path)  # relative to the manifest's folder, not to here
    items = _items(Sources([manifest]))
    # The same file named twice (relative and absolute) is one image.
    assert [(i.index, i.name, i.path.name) for i in items] == [(0, "a", "a.png"), (1, "b", "b.png")]
    assert items[0].where == f"{manifest} line 2" and items[1].where == f"{manifest} line 4"


def test_a_jsonl_manifest_carries_boxes_and_its_bad_lines_become_problems(tmp_path):
    _image(tmp_path / "a.png")
    lines = [{"path": "a.png", "boxes": [[0, 0, 4, 3], {"xyxy": [1, 1, 2, 2]}]}, "not json", {"no": "path"},
             {"path": "b.png", "boxes": [[1, 2, 3]]}, {"path": "c.png"}]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    items = _items(Sources([manifest]))
    assert [i.index for i in items] == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(items[0].boxes, [[0, 0, 4, 3], [1, 1, 2, 2]])
    assert [i.problem[0] if i.problem else None for i in items] == [None, "bad_manifest_line", "bad_manifest_line",
                                                                     "bad_boxes", None]
    assert items[4].boxes is None and items[4].name == "c"


def test_manifests_are_read_line_by_line_not_whole(tmp_path):
    """Lines appended after the first image was taken are still read: the file is streamed, not loaded."""
    _image(tmp_path / "a.png")
    _image(tmp_path / "b.png")
    manifest = tmp_path / "m.txt"
    manifest.write_text("a.png\n")
    stream = Sources([manifest]).items()
    assert next(stream).name == "a"
    with open(manifest, "a") as f:
        f.write("b.png\n")
    assert [i.name for i in stream] == ["b"]


def test_folders_give_their_images_in_name_order_and_stems_are_made_unique(tmp_path):
    for name in ("b.png", "a.jpg", "a.png", "notes.txt"):
        (_image(tmp_path / "f" / name) if name.endswith(("png", "jpg")) else (tmp_path / "f" / name).write_text("x"))
    _image(tmp_path / "a-2.png")
    os.symlink(tmp_path / "nowhere.png", tmp_path / "f" / "c.png")  # a broken link: a problem, not an error
    items = _items(Sources([tmp_path / "f", tmp_path / "a-2.png"]))
    assert [(i.path.name, i.name) for i in items] == [("a.jpg", "a"), ("a.png", "a-2"), ("b.png", "b"),
                                                      ("c.png", ""), ("a-2.png", "a-2-2")]
    assert items[3].problem[0] == "missing"


def test_reserved_names_are_never_taken(tmp_path):
    _image(tmp_path / "coco.png")
    items = _items(Sources([tmp_path / "coco.png"]), output_files=lambda n: [n + ".json", n + ".png"],
                   reserved={"coco.json"})
    assert items[0].name == "coco-2"


def test_shards_are_disjoint_and_cover_every_item(tmp_path):
    for i in range(11):
        _image(tmp_path / f"{i:02d}.png")
    sources = Sources([tmp_path])
    shares = [[i.index for i in shard(sources.items(), rank, 3)] for rank in range(3)]
    assert sorted(sum(shares, [])) == list(range(11))
    assert all(not set(a) & set(b) for a in shares for b in shares if a is not b)
    assert [len(s) for s in shares] == [4, 4, 3]


@pytest.mark.parametrize("content, message", [
    ("hello\n", "not an image file, nor a manifest"),  # a notes file is not a manifest
    ("", "names no images"),
])
def test_a_text_file_that_is_no_manifest_is_refused_at_once(tmp_path, content, message):
    (tmp_path / "notes.txt").write_text(content)
    with pytest.raises(ImageLoadError, match=message):
        Sources([tmp_path / "notes.txt"])


def test_a_manifest_whose_first_line_is_not_json_is_refused_at_once(tmp_path):
    (tmp_path / "m.jsonl").write_text("a.png\n")
    with pytest.raises(ImageLoadError, match="not JSON"):
        Sources([tmp_path / "m.jsonl"])


def test_outputs_never_write_over_inputs_in_the_output_folder(tmp_path):
    out = tmp_path / "out"
    _image(out / "x_overlay.png")
    _image(tmp_path / "x.png")
    manifest = tmp_path / "m.txt"
    manifest.write_text(f"{tmp_path / 'x.png'}\n{out / 'x_overlay.png'}\n")
    files = lambda name: [name + "_overlay.png", name + ".json"]  # noqa: E731
    with pytest.raises(OutputError, match="never writes over its inputs"):
        Sources([manifest]).check_outputs_spare_inputs(out, files)
    # An output folder that is an input folder is refused: a rerun would read the outputs as images.
    with pytest.raises(OutputError, match="is the input folder"):
        Sources([out]).check_outputs_spare_inputs(out, files)
    # Other inputs (a boxes file) are spared too; without a collision the items are counted.
    (out / "y.json").write_text("[]")
    with pytest.raises(OutputError, match="boxes file"):
        Sources([_image(tmp_path / "y.png")]).check_outputs_spare_inputs(out, files, also={"boxes file": out / "y.json"})
    assert Sources([tmp_path / "x.png", manifest]).check_outputs_spare_inputs(tmp_path / "elsewhere", files) == 2


def test_boxes_file_belongs_to_exactly_one_image(tmp_path):
    _image(tmp_path / "a.png")
    sources = Sources([tmp_path])
    with pytest.raises(ImageLoadError, match="one image"):
        sources.give_boxes(np.zeros((1, 4)))
