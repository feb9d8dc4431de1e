"""A picture of an evaluation report: what is mistaken for what, and how well each category does.

One PNG per report (``--plot`` of ``tools/eval_boxclass.py``, ``tools/eval_segmentation.py`` and
``tools/eval_zeroshot.py``):

* left, the confusion matrix of the categories most involved in mistakes (off-diagonal counts as the
  true category plus as the predicted one), rows normalised so each row says where that category's
  annotations (pixels, images) went; an ``(other)`` column holds what went to categories not shown (and,
  in segmentation, to "no class"), so every row sums to 100 %;
* right, per-category top-1 accuracy (box classification, zero-shot) or IoU (segmentation) as bars,
  worst first.

Everything comes from the report (its ``confusion`` counts), so two runs' pictures, before and after
fine-tuning, are drawn the same way. matplotlib (Agg, no pyplot state) is imported only when a picture
is drawn, so the tools still answer ``--help`` at once. Names are drawn with the bundled CJK font
(:mod:`fgdense.io.fonts`); a character no font has is drawn as U+FFFD, never an error.
"""

from __future__ import annotations

import functools
import io
import warnings
from collections import Counter
from dataclasses import dataclass

import numpy as np

from ..errors import FGDenseError, printable
from ..io.fonts import bundled_font, choose_font

TOP = 15        # categories in the matrix: beyond ~15 the cells' numbers no longer fit
BARS = 30       # categories in the bar chart (the worst ones when there are more)
OTHER = "(other)"


@dataclass
class Confusion:
    """A report's confusion counts and per-category scores, the same for every kind of evaluation."""

    kind: str                   # "box classification", "zero-shot classification" or "segmentation"
    names: list[str]            # every category, in the report's order
    cells: dict                 # (true index, predicted index) -> count, non-zero only; index K = "no class"
    scores: list[float | None]  # per category: top-1 accuracy or IoU; None where not scored
    score_name: str             # "top-1 accuracy" or "IoU"
    unit: str                   # what a count counts: "annotations", "images" or "pixels"
    noun: tuple[str, str]       # ("category", "categories") or ("class", "classes")
    summary: str                # the headline numbers, for the picture's title
    overall: float | None       # the headline score the bars are drawn against (a dashed line)
    overall_name: str           # what it is, for the bars' title: "over all annotations", "mIoU"

    @property
    def counts(self) -> np.ndarray:
        """The (K, K + 1) dense matrix (row = true category, column = predicted, the last "no class"): for
        small reports only; the picture works from :attr:`cells`, so 100k categories never make it."""
        counts = np.zeros((len(self.names), len(self.names) + 1), np.int64)
        for (i, j), n in self.cells.items():
            counts[i, j] = n
        return counts


@dataclass
class Shown:
    """The part of the matrix a picture shows."""

    order: list[int]     # indices of the categories shown, most confused first
    rows: np.ndarray     # (len(order), len(order) + 1): row-normalised, columns = order + (other)
    support: np.ndarray  # (len(order),): the true count of each shown row
    total: int           # categories in the report


def confusion_of(report: dict) -> Confusion:
    """The confusion counts and scores of a box-classification, zero-shot or segmentation report."""
    if "confusion" not in report:
        raise FGDenseError("this report has no confusion counts (written by an older fgdense); evaluate again to "
                           "draw its picture")
    if "per_category" in report:  # box classification and zero-shot: keyed by category (class) id
        ids = list(report["per_category"])
        names = [report["per_category"][cid]["name"] for cid in ids]
        scores = [report["per_category"][cid]["top1"] for cid in ids]
        column = {cid: j for j, cid in enumerate(ids)}
        score_name = "top-1 accuracy"
        if "templates" in report:  # only the zero-shot report counts prompt templates
            kind, unit, noun, scored = "zero-shot classification", "images", ("class", "classes"), report["images"]
        else:
            kind, unit, noun, scored = "box classification", "annotations", ("category", "categories"), \
                report["evaluated"]
        summary = f"top-1 {_pct(report['top1'])}, top-5 {_pct(report['top5'])} on {scored} {unit}"
        overall, overall_name = report.get("top1"), f"over all {unit}"
    elif "per_class" in report:  # segmentation: keyed by class index, index C = "no class"
        ids = [str(i) for i in range(len(report["per_class"]))]
        names = [row["class"] for row in report["per_class"]]
        scores = [row["iou"] for row in report["per_class"]]
        column = {str(j): j for j in range(len(ids) + 1)}
        kind, score_name, unit, noun = "segmentation", "IoU", "pixels", ("class", "classes")
        summary = (f"mIoU {_pct(report['miou'])}, pixel accuracy {_pct(report['pixel_accuracy'])} on "
                   f"{report.get('images_scored', report.get('images', 0))} images")
        overall, overall_name = report.get("miou"), "mIoU"
    else:
        raise FGDenseError("not a box-classification, zero-shot or segmentation report (no per_category / "
                           "per_class)")
    row = {cid: i for i, cid in enumerate(ids)}
    cells = {(row[truth], column[guess]): int(n) for truth, predicted in report["confusion"].items()
             for guess, n in predicted.items() if n}
    if report.get("model"):
        summary += f", model {report['model']}"
    if not report.get("complete", True):
        summary += " (incomplete run)"
    return Confusion(kind, names, cells, scores, score_name, unit, noun, summary, overall, overall_name)


def most_confused(counts, top: int = TOP, size: int | None = None) -> list[int]:
    """The ``top`` categories with the most off-diagonal mass (mistaken as the truth plus mistaken for as
    the prediction), most first; ties go to the larger category, then the earlier one. Categories neither
    present nor predicted are never chosen. ``counts``: a (K, K + 1) matrix, or the cells of ``size`` K
    categories (:attr:`Confusion.cells`), which costs the non-zero cells only."""
    if isinstance(counts, np.ndarray):
        size = counts.shape[0]
        counts = {(int(i), int(j)): int(counts[i, j]) for i, j in zip(*np.nonzero(counts))}
    mass: Counter = Counter()
    support: Counter = Counter()
    predicted = set()
    for (i, j), n in counts.items():
        support[i] += n
        if j < size:  # a category, not "no class"
            predicted.add(j)
        if i != j:
            mass[i] += n  # mistaken as the truth
            if j < size:
                mass[j] += n  # mistaken for as the prediction
    candidates = {i for i in support if support[i]} | predicted
    return sorted(candidates, key=lambda i: (-mass[i], -support[i], i))[:top]


def shown_matrix(confusion: Confusion, top: int = TOP) -> Shown:
    """The rows and columns the picture's matrix shows, row-normalised, with the ``(other)`` column."""
    order = most_confused(confusion.cells, top, len(confusion.names))
    position = {category: k for k, category in enumerate(order)}
    inside = np.zeros((len(order), len(order)), np.int64)
    support = np.zeros(len(order), np.int64)
    for (i, j), n in confusion.cells.items():
        if i in position:
            support[position[i]] += n
            if j in position:
                inside[position[i], position[j]] += n
    # Whatever a shown row predicted outside the shown categories (or "no class") is its "other".
    cells = np.concatenate([inside, (support - inside.sum(1))[:, None]], axis=1).astype(np.float64)
    rows = np.divide(cells, support[:, None], out=np.zeros_like(cells), where=support[:, None] > 0)
    return Shown(order, rows, support, len(confusion.names))


def worst_scores(confusion: Confusion, bars: int = BARS) -> list[tuple[int, float]]:
    """(category index, score) of the scored categories, lowest first, at most ``bars`` of them."""
    scored = [(i, s) for i, s in enumerate(confusion.scores) if s is not None]
    return sorted(scored, key=lambda pair: (pair[1], confusion.names[pair[0]]))[:bars]


def plot_png(report: dict, top: int = TOP, bars: int = BARS, font: str | None = None) -> bytes:
    """The report's picture as PNG bytes, drawn in memory (nothing is written unless it is complete): the
    ``top`` most confused categories, the ``bars`` lowest scores; ``font`` a font file (default: the bundled
    CJK font, or an installed one that draws more of the names)."""
    import matplotlib
    from matplotlib.figure import Figure

    confusion = confusion_of(report)
    shown = shown_matrix(confusion, top)
    worst = worst_scores(confusion, bars)
    lettering = choose_font(confusion.names + [OTHER, confusion.summary], font)
    rows = max(len(shown.order), len(worst), 1)
    # text.parse_math off: names are drawn as written ("$\\alpha$" is a name here, not mathtext to parse).
    with matplotlib.rc_context({"font.family": [_family(lettering.path), "DejaVu Sans"], "font.size": 9,
                                "text.parse_math": False}), \
            warnings.catch_warnings():
        # choose_font has already warned once about characters no font has; they are drawn as U+FFFD.
        warnings.filterwarnings("ignore", message="Glyph .* missing")
        figure = Figure(figsize=(15, max(4.5, 2.0 + 0.3 * rows)), layout="constrained")
        matrix_axes, bar_axes = figure.subplots(1, 2, width_ratios=[1.25, 1])
        _draw_matrix(matrix_axes, figure, confusion, shown, lettering.drawable)
        _draw_bars(bar_axes, confusion, worst, lettering.drawable)
        figure.suptitle(lettering.drawable(f"{confusion.kind}: {confusion.summary}"), fontsize=11)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def write_plot(report: dict, top: int = TOP, bars: int = BARS, font: str | None = None):
    """A ``write(temp_path)`` for :func:`fgdense.io.files.write_all` that writes the report's picture
    (drawn now, before anything is written)."""
    png = plot_png(report, top, bars, font)

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(png)
    return write


# ------------------------------------------------------------------------------------------ drawing
def _draw_matrix(axes, figure, confusion: Confusion, shown: Shown, drawable) -> None:
    n, total = len(shown.order), shown.total
    if not n:
        _nothing(axes, "confusion matrix: nothing was scored", confusion.unit)
        return
    one, many = confusion.noun
    which = (f"the one {one}" if total == 1 else f"all {total} {many}" if n == total
             else f"the {n} most confused of {total} {many}")
    axes.set_title(f"confusion, rows normalised: {which}")
    image = axes.imshow(shown.rows, cmap="Blues", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    figure.colorbar(image, ax=axes, fraction=0.04, pad=0.02)
    names = [_short(confusion.names[i]) for i in shown.order]
    axes.set_yticks(range(n), [drawable(f"{name} ({_count(s)})") for name, s in zip(names, shown.support)])
    axes.set_xticks(range(n + 1), [drawable(name) for name in names] + [OTHER], rotation=60, ha="right",
                    rotation_mode="anchor")
    axes.set_ylabel(f"true {one} ({confusion.unit})")
    axes.set_xlabel(f"predicted {one}")
    if n <= 20:  # beyond that the numbers no longer fit their cells
        for (i, j), value in np.ndenumerate(shown.rows):
            if value >= 0.005:
                axes.text(j, i, f"{100 * value:.0f}", ha="center", va="center", fontsize=8,
                          color="white" if value > 0.5 else "black")


def _draw_bars(axes, confusion: Confusion, worst, drawable) -> None:
    scored = sum(s is not None for s in confusion.scores)
    if not worst:
        _nothing(axes, f"{confusion.score_name}: nothing was scored", confusion.unit)
        return
    which = "" if len(worst) == scored else f" (the {len(worst)} lowest of {scored})"
    overall = confusion.overall
    line = "" if overall is None else f", dashed: {confusion.overall_name}"
    axes.set_title(f"{confusion.score_name} per {confusion.noun[0]}, %{which}{line}")
    values = [100 * s for _, s in worst]
    axes.barh(range(len(worst)), values, color="#4c72b0")
    axes.set_yticks(range(len(worst)), [drawable(_short(confusion.names[i])) for i, _ in worst])
    axes.invert_yaxis()  # worst at the top, where the eye starts
    axes.set_xlim(0, 112)  # room for the label of a 100 % bar
    for y, value in enumerate(values):
        axes.text(value + 1, y, f"{value:.1f}", va="center", fontsize=8)
    if overall is not None:
        axes.axvline(100 * overall, color="#c44e52", linestyle="--", linewidth=1)


def _nothing(axes, title: str, unit: str) -> None:
    axes.set_title(title)
    axes.text(0.5, 0.5, f"no {unit} were scored", ha="center", va="center", transform=axes.transAxes)
    axes.set_axis_off()


@functools.lru_cache(maxsize=8)
def _family(path: str) -> str:
    """Register a font file with matplotlib once; its family name (the bundled font's if it cannot be read)."""
    from matplotlib import font_manager

    try:
        font_manager.fontManager.addfont(path)
        return font_manager.FontProperties(fname=path).get_name()
    except (OSError, RuntimeError, ValueError):
        return _family(bundled_font()) if path != bundled_font() else "DejaVu Sans"


def _short(name: str, limit: int = 28) -> str:
    name = printable(name)  # a terminal control in a name is drawn as its escape, as the tables print it
    return name if len(name) <= limit else name[: limit - 1] + "\u2026"


def _count(n) -> str:
    n = int(n)
    # 10,000 and up are shortened (87473 -> 87.5k); smaller counts are short enough as they are.
    for size, suffix, start in ((10**9, "G", 10**9), (10**6, "M", 10**6), (10**3, "k", 10**4)):
        if n >= start:
            return f"{n / size:.3g}{suffix}"
    return str(n)


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


__all__ = ["BARS", "TOP", "Confusion", "Shown", "confusion_of", "most_confused", "plot_png", "shown_matrix",
           "worst_scores", "write_plot"]
