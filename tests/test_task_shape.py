"""One shape for every task: the same constructor, from_pretrained, settings, per-call overrides, *_batch,
and results with to_detections() and to_json()."""

import inspect
import json

import numpy as np
import pytest
import supervision as sv

from conftest import CHECKPOINT, FIXTURE
from fgdense import BoxClassifier, FGCLIP2ImageProcessor, FGCLIP2Model, Grounder, MaskClassifier, Segmenter, load_tokenizer
from fgdense.errors import FGDenseError
from fgdense.task import Task

IMAGE = FIXTURE / "images" / "img1_200x120.png"
BOXES = [[0, 0, 100, 60], [100, 60, 200, 120]]
MASKS = np.zeros((120, 200), np.int64)  # a label image: two masks
MASKS[:60, :100], MASKS[60:, 100:] = 1, 2
JOBS = {  # task -> (job name, arguments after the image)
    Segmenter: ("segment", (["cat", "电脑"],)),
    BoxClassifier: ("classify", (BOXES, ["cat", "电脑"])),
    MaskClassifier: ("classify", (MASKS, ["cat", "电脑"])),
    Grounder: ("ground", (["a cat", "一台电脑"],)),
}
PER_IMAGE = (BoxClassifier, MaskClassifier)  # tasks whose first argument is one per image


@pytest.fixture(scope="module")
def parts():
    return (FGCLIP2Model.from_pretrained(CHECKPOINT), FGCLIP2ImageProcessor.from_pretrained(CHECKPOINT),
            load_tokenizer(CHECKPOINT))


@pytest.mark.parametrize("task", list(JOBS), ids=lambda t: t.__name__)
def test_built_both_ways_the_task_gives_the_same_results(task, parts):
    job, args = JOBS[task]
    model, processor, tokenizer = parts
    built = task(model, processor, tokenizer, max_num_patches=64)
    loaded = task.from_pretrained(CHECKPOINT, device="cpu", max_num_patches=64)
    assert isinstance(built, Task) and built.settings == loaded.settings
    one = getattr(built, job)(IMAGE, *args)
    other = getattr(loaded, job)(IMAGE, *args)
    assert one.to_json() == other.to_json()
    # A model alone finds its checkpoint's processor and tokenizer the same way.
    alone = getattr(task(model, max_num_patches=64), job)(IMAGE, *args)
    assert alone.to_json() == one.to_json()


@pytest.mark.parametrize("task", list(JOBS), ids=lambda t: t.__name__)
def test_every_result_turns_into_detections_and_json(task, parts):
    job, args = JOBS[task]
    instance = task(*parts, max_num_patches=64)
    result = getattr(instance, job)(IMAGE, *args)
    detections = result.to_detections()
    assert isinstance(detections, sv.Detections)
    assert detections.class_id is not None and "class_name" in detections.data
    assert len(detections.xyxy) == len(detections.class_id)
    json.dumps(result.to_json(), ensure_ascii=False)  # JSON-ready as it is
    # The batch method takes a list of images and gives one result each.
    batch_args = (args[0] if task not in PER_IMAGE else [args[0], args[0]],) + args[1:]
    if task in PER_IMAGE:
        batch = getattr(instance, job + "_batch")([IMAGE, IMAGE], *batch_args)
    else:
        batch = getattr(instance, job + "_batch")([IMAGE, IMAGE], *args)
    assert len(batch) == 2 and batch[0].to_json() == result.to_json()


def test_the_constructors_and_from_pretrained_have_one_signature():
    for task in JOBS:
        parameters = list(inspect.signature(task).parameters)
        assert parameters[:3] == ["model", "processor", "tokenizer"], task
        loader = list(inspect.signature(task.from_pretrained).parameters)
        assert loader[:3] == ["name_or_path", "device", "dtype"], task


REGIONS = {"boxes", "masks"}
TEXTS = {"labels", "phrases"}


@pytest.mark.parametrize("task", list(JOBS), ids=lambda t: t.__name__)
def test_every_job_takes_its_arguments_in_one_order(task):
    """The rule for every job and its batch: image(s), then the regions it must score (boxes or masks) if it
    has required ones, then the texts; anything optional (Grounder's candidate boxes, progress, settings) by
    keyword only, so a positional mix-up cannot pass silently."""
    job = JOBS[task][0]
    for name, first in ((job, "image"), (job + "_batch", "images")):
        parameters = list(inspect.signature(getattr(task, name)).parameters.values())[1:]
        positional = [p.name for p in parameters
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        assert positional[0] == first, (task, name)
        assert positional[-1] in TEXTS and set(positional[1:-1]) <= REGIONS, (task, name, positional)
        assert all(p.default is inspect.Parameter.empty for p in parameters if p.name in positional), (task, name)
        if name.endswith("_batch"):
            assert "progress" in {p.name for p in parameters if p.kind is p.KEYWORD_ONLY}, (task, name)


@pytest.mark.parametrize("task", list(JOBS), ids=lambda t: t.__name__)
def test_settings_are_checked_and_overridable_per_call(task, parts):
    instance = task(*parts, max_num_patches=64)
    with pytest.raises(FGDenseError, match="unknown setting"):
        task(*parts, max_patches=64)
    with pytest.raises(FGDenseError, match="from 1 to 16384"):
        task(*parts, max_num_patches=20000)
    job, args = JOBS[task]
    with pytest.raises(FGDenseError, match="unknown setting"):
        getattr(instance, job)(IMAGE, *args, bogus=1)
    coarse = getattr(instance, job)(IMAGE, *args, max_num_patches=16)
    fine = getattr(instance, job)(IMAGE, *args)
    assert instance.settings.max_num_patches == 64  # the override was for that call only
    assert coarse.to_json() != fine.to_json()


def test_max_num_patches_means_the_same_in_every_task(parts):
    """None is the checkpoint's own processing everywhere; each task only picks its default."""
    from fgdense.dense import resolve_budget

    assert Segmenter.Settings().max_num_patches == "auto"
    assert BoxClassifier.Settings().max_num_patches is None and Grounder.Settings().max_num_patches is None
    assert resolve_budget("auto", "cpu") == 1024 and resolve_budget(None, "cpu") is None
    segmenter, classifier = Segmenter(*parts, max_num_patches=None), BoxClassifier(*parts)
    image = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(IMAGE).convert("RGB"))
    assert segmenter.image_features([image])[0].grid_size == classifier.image_features([image])[0].grid_size
