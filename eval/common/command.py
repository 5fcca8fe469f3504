"""What every encoder benchmark's `main` does around its own work: take the shared options (model, compute,
cache, output) from the parsed arguments, check the output folder before anything heavy, load the encoder
(torch and transformers) only then, and end with results.json, the last line and --strict.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from eval.common.cli import prepare_output
from eval.common.options import CacheOptions, EncoderConfig, ModelOption, OutputOptions
from eval.common.reporting import write_scored_results
from fgclip.cli import options_from

if TYPE_CHECKING:
    import argparse

    from eval.common.coverage import Coverage
    from eval.common.encoder import Encoder


@dataclass
class EncoderRun:
    """The shared options of an encoder benchmark (`eval.common.options.add_encoder_options`), parsed."""

    model: Path
    compute: EncoderConfig
    cache: CacheOptions
    output: OutputOptions
    started: float = field(default_factory=time.time)

    @classmethod
    def parsed(cls, args: argparse.Namespace) -> EncoderRun:
        return cls(
            options_from(args, ModelOption).model,
            options_from(args, EncoderConfig),
            options_from(args, CacheOptions),
            options_from(args, OutputOptions),
        )

    def prepare_output(self, inputs: Iterable[Path | None], owned: Callable[[Path], bool]) -> Path:
        """The output folder, checked (with the cache folder) before any work; the model is an input too."""
        return prepare_output(self.output, [*inputs, self.model], owned, self.cache)

    def load_encoder(self) -> Encoder:
        from eval.common.encoder import Encoder  # torch and transformers: after the options are checked

        return Encoder.from_options(self.model, self.compute, self.cache)

    def finish(
        self,
        out: Path,
        benchmark: str,
        metrics: Mapping,
        cover: Coverage,
        encoder: Encoder,
        *,
        data: str | Sequence[str],
        counts: Mapping[str, int],
        table: str,
        headline: str,
        extra: Mapping | None = None,
    ) -> dict:
        """results.json / results.md with the coverage and the encoder run, the last line, then --strict."""
        return write_scored_results(
            out,
            benchmark,
            metrics,
            cover,
            model=self.model,
            data=data,
            counts=counts,
            started=self.started,
            table=table,
            headline=headline,
            strict=self.output.strict,
            extra={**(extra or {}), "encoder": encoder.describe(), "cache": encoder.cache.summary()},
        )
