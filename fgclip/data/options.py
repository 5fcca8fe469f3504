"""Options shared by the data commands that write a folder (`python -m fgclip.data.shards`,
`python -m fgclip.data.synthetic`). Standard library only, so the commands parse before heavy imports."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from fgclip.cli import option, output_dir_option


@dataclass(kw_only=True)
class OutputFolderOptions:
    output_dir: str = output_dir_option("output folder (created when missing)")
    overwrite_output_dir: bool = option("write into a folder that holds files this command did not write", False)
    quiet: bool = option("no progress bar", False)

    def prepare(self, owned: Callable[[Path], bool] | Iterable[str], inputs: Iterable[str | Path] = ()) -> Path:
        """The output folder, checked (`fgclip.outputs.prepare_output_dir`) and created."""
        from fgclip.outputs import prepare_output_dir

        return prepare_output_dir(
            self.output_dir,
            inputs=inputs,
            owned=owned,
            overwrite=self.overwrite_output_dir,
            overwrite_flag="--overwrite_output_dir",
            option="--output_dir",
        )
