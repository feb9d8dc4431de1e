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


def test_a_path_repeated_with_boxes_is_a_problem_never_a_silent_drop(tmp_path):
    """Three lines for one image, one box each: the first is done, the other two are listed with their boxes."""
    _image(tmp_path / "a.png", (40, 30))
    _image(tmp_path / "b.png")
    lines = [{"path": "a.png", "boxes": [[0, 0, 5, 5]]}, {"path": "b.png"}, {"path": "a.png", "boxes": [[1, 1, 9, 9]]},
             {"path": "b.png"}, {"path": "a.png", "boxes": [[2, 2, 8, 8]]}]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    items = _items(Sources([manifest]))
    # b.png named twice without boxes loses nothing: it is done once, as ever.
    assert [(i.name, i.problem and i.problem[0]) for i in items] == [
        ("a", None), ("b", None), ("", "repeated_path"), ("", "repeated_path")]
    assert [i.boxes.tolist() for i in items[2:]] == [[[1, 1, 9, 9]], [[2, 2, 8, 8]]]
    assert "line 1" in items[2].problem[1] and items[2].where.endswith("line 3")
    assert [i.index for i in items] == [0, 1, 2, 3]


def test_an_output_name_too_long_for_a_file_name_makes_that_image_a_problem(tmp_path):
    long_name = "x" * 235 + ".png"  # a legal name, but "x...x_labels.png" and its temporary name are not
    _image(tmp_path / "imgs" / long_name)
    _image(tmp_path / "imgs" / "short.png")
    items = _items(Sources([tmp_path / "imgs"]), output_files=lambda name: [name + ".json", name + "_labels.png"])
    assert [(i.name, i.problem and i.problem[0]) for i in items] == [("short", None), ("", "name_too_long")]


def test_a_link_from_elsewhere_to_a_file_in_the_output_folder_is_that_file(tmp_path):
    """elsewhere/pic.png -> out/x_labels.png: image x's label map would be written over the input pic.png."""
    _image(tmp_path / "imgs" / "x.png")
    out = tmp_path / "out"
    _image(out / "x_labels.png")
    (tmp_path / "elsewhere").mkdir()
    os.symlink(out / "x_labels.png", tmp_path / "elsewhere" / "pic.png")
    sources = Sources([tmp_path / "imgs", tmp_path / "elsewhere" / "pic.png"])
    with pytest.raises(OutputError, match="x_labels.png of .*x.png is the input image .*pic.png"):
        sources.check_outputs_spare_inputs(out, lambda name: [name + ".json", name + "_labels.png"])


def _no_hang(seconds=20):
    """Turn a hang (reading a FIFO with no writer) into a failure instead of a stuck suite."""
    import signal

    def hung(signum, frame):
        raise TimeoutError("hung on a FIFO")

    signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)


def test_a_fifo_is_a_one_line_error_as_an_argument_and_a_bad_file_in_a_folder(tmp_path):
    import signal

    _image(tmp_path / "imgs" / "a.png")
    os.mkfifo(tmp_path / "imgs" / "b.png")
    os.mkfifo(tmp_path / "pipe.jpg")
    os.mkfifo(tmp_path / "pipe.txt")
    _no_hang()
    try:
        for fifo in ("pipe.jpg", "pipe.txt"):
            with pytest.raises(ImageLoadError, match="not a regular file"):
                Sources([tmp_path / fifo])
        items = _items(Sources([tmp_path / "imgs"]))
    finally:
        signal.alarm(0)
    assert [(i.path.name, i.problem and i.problem[0]) for i in items] == [("a.png", None), ("b.png", "not_a_file")]


def test_a_fifo_named_by_a_manifest_is_a_bad_file_not_a_hang(tmp_path):
    import signal

    from fgdense.bulk.jobs import Preparer

    os.mkfifo(tmp_path / "pipe.png")
    manifest = tmp_path / "m.txt"
    _image(tmp_path / "a.png")
    manifest.write_text("a.png\npipe.png\n")
    item = _items(Sources([manifest]))[1]
    _no_hang()
    try:
        prepared = Preparer(None, None, tmp_path / "out", (".json",), "{}").prepare(item)
    finally:
        signal.alarm(0)
    assert (prepared.state, prepared.reason) == ("bad", "not_a_file")
