"""Stage-2 region fine-tuning of FG-CLIP 2 on FineHARD-format data (mmengine).

    python tools/train_stage2.py configs/train/base.py --cfg-options checkpoint=... data_root=...
    torchrun --nproc_per_node 8 tools/train_stage2.py configs/train/base.py --launcher pytorch

The config is an mmengine config: a Python file, run when it is read (its _base_ files too), with your
rights. Train only with configs you wrote or trust, as you would run only scripts you trust. Nothing
else is read as a config: not a checkpoint (a resume checkpoint that carries one is refused), not a
dataset, not --cfg-options (read as values).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from fgdense import cli  # noqa: E402
from fgdense.cli import fail  # noqa: E402


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="training config, e.g. configs/train/base.py (Python, run when read: "
                                           "only configs you trust)")
    parser.add_argument("--work-dir", help="where logs, checkpoints and the export go (default work_dirs/<config>)")
    parser.add_argument("--resume", action="store_true",
                        help="resume from the latest checkpoint in the work dir (a copied work dir resumes from its "
                             "own copy)")
    parser.add_argument("--cfg-options", nargs="+", default=[],
                        help="override config entries, e.g. checkpoint=fg-tiny batch_size=8 model.frozen=[text_model.]")
    parser.add_argument("--launcher", choices=["none", "pytorch"], default="none",
                        help="'pytorch' under torchrun for several processes")
    args = parser.parse_args(argv)
    if not Path(args.config).is_file():  # before mmengine and torch load: a mistyped path answers at once
        from fgdense.errors import FGDenseError

        raise FGDenseError(f"config {args.config} does not exist")
    # KEY=VALUE pairs read as mmengine reads them; imported only now, so that --help answers at once.
    from mmengine.config import DictAction

    pairs, args.cfg_options = args.cfg_options, {}
    DictAction(option_strings=["--cfg-options"], dest="cfg_options")(parser, args, pairs)
    return args


def work(argv) -> int:
    args = parse_args(argv)
    from mmengine.config import Config

    from fgdense.errors import FGDenseError
    from fgdense.checkpoint import resolve_checkpoint
    from fgdense.train.checks import check_work_dir
    from fgdense.train.resume import check_resume_checkpoint
    from fgdense.train.runner import build_runner, build_train_dataset, resolve_settings

    try:
        cfg = Config.fromfile(args.config)
        cfg.merge_from_dict(args.cfg_options)
        cfg.launcher = args.launcher
        cfg.work_dir = args.work_dir or cfg.get("work_dir") or str(Path("work_dirs") / Path(args.config).stem)
        if args.resume:
            cfg.resume = True
        resolve_settings(cfg)
        # Everything a user can get wrong is checked before the run writes anything.
        check_work_dir(cfg.work_dir)
        resolve_checkpoint(cfg.model.checkpoint)
        if cfg.get("resume"):  # --resume, or resume=True in the config
            # The checkpoint of this work dir (mmengine would follow last_checkpoint's absolute path).
            resume_from = check_resume_checkpoint(cfg.work_dir, cfg.get("load_from"))
            cfg.load_from = str(resume_from) if resume_from else None
        dataset = build_train_dataset(cfg)
        runner = build_runner(cfg, dataset)
        runner.train()
    except (FGDenseError, ValueError, SyntaxError, KeyError) as err:
        return fail(str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__)
    return 0


def main(argv=None) -> int:
    """The tool as a function: the exit code, never an exception (one line for errors and Ctrl-C)."""
    return cli.run(work, argv)


if __name__ == "__main__":
    sys.exit(main())
