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
    """One run of an encoder benchmark: the shared options (`eval.common.options.encoder_parser`) as parsed,
    then the output folder and the encoder as `main` makes them, so that `finish` needs only the scores."""

    model: Path
    compute: EncoderConfig
    cache: CacheOptions | None  # None: the command has no embedding cache
    output: OutputOptions
    started: float = field(default_factory=time.time)
    out: Path | None = field(default=None, init=False)
    encoder: Encoder | None = field(default=None, init=False)

    @classmethod
    def parsed(cls, args: argparse.Namespace, cache: bool = True, **more) -> EncoderRun:
        """From an `encoder_parser` command line (made with the same `cache`); `more`: a subclass's fields."""
        return cls(
            options_from(args, ModelOption).model,
            options_from(args, EncoderConfig),
            options_from(args, CacheOptions) if cache else None,
            options_from(args, OutputOptions),
            **more,
        )

    def prepare_output(self, inputs: Iterable[Path | None], owned: Callable[[Path], bool]) -> Path:
        """The output folder, checked (with the cache folder) before any work; the model is an input too."""
        self.out = prepare_output(self.output, [*inputs, self.model], owned, self.cache)
        return self.out

    def load_encoder(self) -> Encoder:
        from eval.common.encoder import Encoder  # torch and transformers: after the options are checked

        self.encoder = Encoder.from_options(self.model, self.compute, self.cache)
        return self.encoder

    def finish(
        self,
        benchmark: str,
        metrics: Mapping,
        cover: Coverage,
        *,
        data: str | Path | Sequence[str | Path],
        counts: Mapping[str, int],
        table: str,
        headline: str,
        extra: Mapping | None = None,
    ) -> dict:
        """results.json / results.md in the output folder, with the coverage and the encoder run, the last line,
        then --strict."""
        return write_scored_results(
            self.out,
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
            extra={**(extra or {}), "encoder": self.encoder.describe(), "cache": self.encoder.cache.summary()},
        )
