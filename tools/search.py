"""Search a collection of images by text, English or Chinese: build an index, then query it.

    python tools/search.py index PHOTOS_DIR [more folders, images, manifests] --out my_index [--regions]
    torchrun --nproc_per_node K tools/search.py index ... --out my_index     # a share of the images each
    python tools/search.py query my_index "红色的汽车" [--top-k 10] [--regions] [--out search_out]

index: every image's FG-CLIP 2 embedding (the checkpoint's own processing unless --max-patches) and, with
--regions, the region embeddings of its boxes (a JSONL manifest's boxes, else grid proposals) go into
my_index/parts/ one file per image, on the bulk runner: run again, it skips the images already done. Then
images.npy, regions.npy (memory-mapped at query time) and index.json are written.
query: the --top-k images that fit the text best (with --regions, the best boxes), printed and written to
--out as results.json and sheet.png (a contact sheet; boxes drawn on their images).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from fgdense import cli  # noqa: E402

USAGE = ("usage: search.py index IMAGES... --out INDEX [--regions] [options]\n"
         "       search.py query INDEX TEXT [--top-k K] [--regions] [--out DIR] [options]")


def index_args(argv):
    parser = cli.parser("search.py index: build a search index of images", out_help="the index folder (created)",
                        out_default=None, max_patches="checkpoint")
    parser.add_argument("images", nargs="+", help="folders, images, or manifests (.txt; .jsonl with boxes)")
    parser.add_argument("--regions", action="store_true", help="also index region embeddings of boxes (a JSONL "
                        "manifest's, else grid proposals)")
    parser.add_argument("--faiss", choices=["flat", "ivfpq"], help="also build a FAISS index of the vectors (needs "
                        "faiss-cpu): flat = exact, ivfpq = approximate and compressed, for millions of rows")
    cli.run_flags(parser)
    args = parser.parse_args(argv)
    if not args.out:
        parser.error("--out INDEX is required")
    return args


def query_args(argv):
    parser = cli.parser("search.py query: the images (or boxes) of an index that fit a text", model=False,
                        out_help="folder for results.json and sheet.png (default ./search_out)",
                        out_default="search_out", font=True)
    parser.add_argument("index", help="an index folder built by search.py index")
    parser.add_argument("text", help="what to look for, in English or Chinese")
    parser.add_argument("--model", help="checkpoint (default: the one the index was built with)")
    parser.add_argument("--top-k", type=int, default=10, help="how many results (default 10)")
    parser.add_argument("--regions", action="store_true", help="return boxes (the index must hold regions)")
    parser.add_argument("--backend", choices=["numpy", "faiss"], default="numpy",
                        help="numpy: exact, every row scored (default); faiss: the index's FAISS index (--faiss)")
    return parser.parse_args(argv)


def build(argv) -> int:
    args = index_args(argv)
    from fgdense.bulk.command import execute, plan
    from fgdense.io.files import check_output_folder
    from fgdense.io.sources import Sources

    budget = cli.max_patches_setting(args.max_patches)
    if args.faiss:
        from fgdense.search.vector_library import faiss_module

        faiss_module()  # not installed: one line now, not after the whole collection is embedded
    out = check_output_folder(args.out)
    sources = Sources(args.images)
    options = plan(sources, out / "parts", "index", False, workers=cli.workers_setting(args.workers),
                   batch_size=cli.check_batch_size(args.batch_size), overwrite=args.overwrite, progress=not args.quiet)
    device = cli.device_of(args.device, args.model)
    from fgdense.bulk.folder import claim

    # The run on parts/ claims parts/ only; the index's own files (index.json) share names with a bulk tool's
    # outputs (an image index.jpg), so the index folder itself is claimed too: segment into it stops in one
    # line, and an index into a folder of segmentations stops before it embeds anything.
    out.mkdir(parents=True, exist_ok=True)
    claim(out, "search index", args.overwrite)
    from fgdense.dense import resolve_budget
    from fgdense.embed import Embedder
    from fgdense.search import IndexJob, compile_index

    made = []

    def make_job(device):
        embedder = Embedder.from_pretrained(args.model, device=device, max_num_patches=budget, precision=args.precision,
                                            text_mask=args.text_mask, batch_size=options.batch_size)
        made.append(IndexJob(embedder, options.out, args.regions, model_name=args.model,
                             cap=resolve_budget(budget, device)))
        return made[0]

    summary, ranks = execute(make_job, sources, options, device, cli.status)
    if ranks.main:
        model = str(Path(args.model).resolve()) if Path(args.model).is_dir() else args.model  # usable from anywhere
        meta = compile_index(made[0], sources, out, model)
        print(f"index: {len(meta['images'])} image(s), {len(meta['regions'])} region(s) in {out}")
        from fgdense.search import SearchIndex
        from fgdense.search.vector_library import FILES, build_faiss

        if args.faiss:
            built = build_faiss(SearchIndex.open(out), args.faiss)
            print(f"FAISS ({args.faiss}): {', '.join(str(p) for p in built)}")
        else:  # a FAISS index of an earlier build no longer matches these arrays
            for name in FILES.values():
                (out / name).unlink(missing_ok=True)
    return cli.bulk_ending(summary, ranks, options.out)


def answer(argv) -> int:
    args = query_args(argv)
    from fgdense.errors import FGDenseError
    from fgdense.io.files import check_output_folder, check_outputs
    from fgdense.io.fonts import choose_font

    if args.top_k < 1:
        raise FGDenseError("--top-k must be at least 1")
    if not args.text.strip():
        raise FGDenseError("the query text is empty")
    out = check_output_folder(args.out)
    results, sheet = out / "results.json", out / "sheet.png"
    index_files = {name: Path(args.index) / name for name in ("images.npy", "regions.npy", "index.json")}
    check_outputs({"results": results, "sheet": sheet}, index_files, folders=False)
    font = choose_font([args.text], args.font)
    missing = [name for name, path in index_files.items() if not path.is_file()]
    if missing:  # before torch loads: a mistyped index folder answers at once
        raise FGDenseError(f"{args.index} is not a search index (no {', '.join(missing)}; build one with: "
                           f"tools/search.py index ... --out {args.index})")
    device = cli.device_of(args.device, args.model)
    from fgdense.checkpoint import fingerprint, resolve_checkpoint
    from fgdense.embed import Embedder
    from fgdense.io.files import write_all, write_picture, write_text
    from fgdense.search import SearchIndex, contact_sheet, search

    index = SearchIndex.open(args.index)
    model = args.model or index.meta["model"]
    if index.meta.get("model_fingerprint") and fingerprint(resolve_checkpoint(model)) != index.meta["model_fingerprint"]:
        raise FGDenseError(f"{model} is not the checkpoint {args.index} was built with ({index.meta['model']}); "
                           "its embeddings would not compare")
    embedder = Embedder.from_pretrained(model, device=device, text_mask=args.text_mask, precision=args.precision)
    hits = search(embedder, index, args.text, args.top_k, args.regions, backend=args.backend)
    import json

    payload = {"query": args.text, "regions": args.regions, "index": str(args.index), "backend": args.backend,
               "results": hits}
    out.mkdir(parents=True, exist_ok=True)
    write_all([(results, write_text(json.dumps(payload, ensure_ascii=False, indent=2))),
               (sheet, write_picture(contact_sheet(args.text, hits, font)))])
    for n, hit in enumerate(hits, 1):
        where = f" {hit['xyxy']}" if "xyxy" in hit else ""
        print(f"{n:3d}  {hit.get('score', hit.get('cosine')):.4f}  {hit['image']}{where}")
    print(f"results written to {results} and {sheet}")
    return 0


def work(argv) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "index":
        return build(argv[1:])
    if argv and argv[0] == "query":
        return answer(argv[1:])
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        print(USAGE)
        return 0
    return cli.fail(f"say what to do: index or query\n{USAGE}", 2)


def main(argv=None) -> int:
    """The tool as a function: the exit code, never an exception (one line for errors and Ctrl-C)."""
    return cli.run(work, argv)


if __name__ == "__main__":
    sys.exit(main())
