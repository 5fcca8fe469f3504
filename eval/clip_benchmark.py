"""LAION's CLIP_benchmark with FG-CLIP models: its own command line, one more model type.

    python -m eval.clip_benchmark eval --model_type fgclip --pretrained DIR --model fgclip-base \\
        --dataset wds/imagenet1k --dataset_root DATA/wds_imagenet1k --output 'results/{dataset}_{model}.json'

Every argument except `--long` is CLIP_benchmark's (`clip_benchmark eval --help`); `--pretrained` is
any folder `FGCLIPModel.from_pretrained` loads (this project's, a stock Hugging Face CLIP folder, an
official FG-CLIP release) and `--model` is a free label for the results. Images are preprocessed the
FG-CLIP way (square resize, `fgclip.transforms`), texts are tokenised with the folder's tokenizer and
encoded through the 77-slot path, or the 248-slot path and long projection with `--long`.

Needs `pip install 'fgclip[clip-benchmark]'`. Two defects of the published package (1.6.2) are handled
here without touching it: it imports `requests` without declaring it (the extra installs it), and its
zero-shot `accuracy()` calls `float()` on a one-element array, a `TypeError` from numpy 2.4 on that
crashes every classification run (replaced by `topk_accuracy`). A third shows with model folders: the
default `--output` template puts `--pretrained` in the file name, slashes and all; folder paths are
turned into file-name slugs before CLIP_benchmark formats the template.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from eval.common.cli import wrapped
from fgclip.cli import CommandParser, entry_point, option, options_from
from fgclip.errors import UserError

MODEL_TYPE = "fgclip"
INSTALL_HINT = "pip install 'fgclip[clip-benchmark]'"


@dataclass
class ClipBenchmarkOptions:
    """This wrapper's own options; every other argument goes to CLIP_benchmark's parser unchanged."""

    long: bool = option(
        "encode texts through FG-CLIP's 248-slot long-text path and long projection (default: the "
        "77-slot path that CLIP_benchmark's numbers use for every CLIP model)",
        False,
    )


def build_parser() -> CommandParser:
    parser = CommandParser(
        prog="python -m eval.clip_benchmark",
        add_help=False,
        description=__doc__,
        epilog=wrapped(
            "CLIP_benchmark's own options: python -m eval.clip_benchmark eval --help "
            "(model types now include 'fgclip'; this loads CLIP_benchmark, torch and "
            "open_clip)."
        ),
    )
    parser.add_options(ClipBenchmarkOptions)
    return parser


# ---------------------------------------------------------------------- the model type
class BenchmarkedFGCLIP:
    """An `FGCLIPModel` behind the calls CLIP_benchmark makes: `eval()`, `encode_image(images)`,
    `encode_text(tokens)` with `tokens` what `BenchmarkTokenizer` returned (moved to the device)."""

    def __init__(self, model, long: bool):
        self.model = model
        self.long = long

    def eval(self) -> BenchmarkedFGCLIP:
        self.model.eval()
        return self

    def encode_image(self, images):
        return self.model.encode_image(images)

    def encode_text(self, tokens):
        return self.model.encode_text(tokens["input_ids"], tokens["attention_mask"], long=self.long)


class BenchmarkTokenizer:
    """The model folder's tokenizer; returns a `BatchEncoding`, whose `.to(device)` CLIP_benchmark calls."""

    def __init__(self, tokenizer, long: bool):
        self.tokenizer = tokenizer
        self.long = long

    def __call__(self, texts):
        from transformers import BatchEncoding

        return BatchEncoding(self.tokenizer(list(texts), long=self.long))

    def __len__(self) -> int:
        return self.tokenizer.vocab_size


def load_fgclip(model_name: str, pretrained: str, cache_dir: str | None = None, device="cpu", long: bool = False):
    """CLIP_benchmark's loader contract: `(model, image transform, tokenizer)` for `--pretrained`."""
    from fgclip.model import FGCLIPModel
    from fgclip.tokenizer import FGCLIPTokenizer
    from fgclip.transforms import image_transform

    folder = Path(pretrained)
    if not folder.is_dir():
        raise UserError(
            f"--pretrained {pretrained} is not a folder: with --model_type {MODEL_TYPE} it names "
            "a model folder (this project's, a stock CLIP folder or an official FG-CLIP release)"
        )
    model = FGCLIPModel.from_pretrained(str(folder)).to(device).eval()
    return (
        BenchmarkedFGCLIP(model, long),
        image_transform(model.image_size),
        BenchmarkTokenizer(FGCLIPTokenizer.from_pretrained(folder), long),
    )


def topk_accuracy(output, target, topk=(1,)) -> list[float]:
    """Top-k accuracies of `(N, C)` logits against `(N,)` labels: CLIP_benchmark's `accuracy()` without
    its `float()` of a one-element array (a TypeError from numpy 2.4 on)."""
    pred = output.topk(max(topk), 1, True, True)[1].t()
    correct = pred.eq(target.view(1, -1).expand_as(pred))
    return [correct[:k].reshape(-1).float().sum().item() / len(target) for k in topk]


def _file_slug(value: str) -> str:
    """A model folder as one file-name component (CLIP_benchmark only slugs paths of files)."""
    return value.strip("/").replace("/", "_") if os.path.isdir(value) else value


def _run_with_checked_output(original_run, args):
    """CLIP_benchmark's `run(args)` with folder `--pretrained` slugged in `--output` and the output's
    folder checked before any model is loaded (CLIP_benchmark would fail only when writing)."""
    slug = _file_slug(args.pretrained)
    args.output = args.output.replace("{pretrained}", slug).replace("{pretrained_full_path}", slug)
    parent = Path(args.output).parent
    if "{" not in str(parent) and not parent.is_dir():
        raise UserError(f"--output {args.output}: the folder {parent} does not exist")
    return original_run(args)


def register(long: bool = False) -> None:
    """Add `--model_type fgclip` to CLIP_benchmark (its registry is `TYPE2FUNC` + the `MODEL_TYPES` list
    its parser and `load_clip` read) and install the fixes above. Idempotent."""
    try:
        from clip_benchmark import cli, models
        from clip_benchmark.metrics import zeroshot_classification
    except ModuleNotFoundError as error:
        if error.name == "requests":
            raise UserError(
                f"clip-benchmark imports 'requests' without declaring it; {INSTALL_HINT} installs both"
            ) from error
        raise UserError(f"CLIP_benchmark is not installed (missing module {error.name!r}): {INSTALL_HINT}") from error
    models.TYPE2FUNC[MODEL_TYPE] = functools.partial(load_fgclip, long=long)
    if MODEL_TYPE not in models.MODEL_TYPES:
        models.MODEL_TYPES.append(MODEL_TYPE)  # the same list object `cli` imported for --model_type choices
    zeroshot_classification.accuracy = topk_accuracy
    original_run = getattr(cli.run, "__wrapped__", cli.run)
    checked_run = functools.partial(_run_with_checked_output, original_run)
    checked_run.__wrapped__ = original_run
    cli.run = checked_run


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, rest = build_parser().parse_known_args(argv)
    options = options_from(args, ClipBenchmarkOptions)
    if not rest:
        raise UserError(
            "give CLIP_benchmark's arguments, e.g. eval --model_type fgclip --pretrained DIR --dataset "
            "NAME (see --help)"
        )
    if rest[0] in ("-h", "--help"):  # this wrapper's help, without loading CLIP_benchmark
        build_parser().print_help()
        return 0
    if "-h" in rest or "--help" in rest:
        build_parser().print_help()
        print()
    register(long=options.long)
    from clip_benchmark import cli

    saved_argv = sys.argv
    sys.argv = ["clip_benchmark", *rest]
    try:
        cli.main()
    except FileNotFoundError as error:  # a dataset or file CLIP_benchmark could not find
        raise UserError(str(error)) from error
    finally:
        sys.argv = saved_argv
    return 0


cli = entry_point(main)  # the console script (pyproject.toml [project.scripts])

if __name__ == "__main__":
    cli()
