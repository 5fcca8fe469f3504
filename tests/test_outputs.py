"""Output folders: never an input, never a folder holding what the command did not write, unless told."""

from __future__ import annotations

import pytest

from fgclip.errors import UserError
from fgclip.outputs import prepare_output_dir


def test_new_and_empty_folders_are_created(tmp_path):
    assert prepare_output_dir(tmp_path / "a" / "b").is_dir()
    (tmp_path / "empty").mkdir()
    assert prepare_output_dir(tmp_path / "empty") == (tmp_path / "empty").resolve()


def test_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        prepare_output_dir(tmp_path / "f")


def test_an_input_is_refused_even_with_overwrite(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    with pytest.raises(UserError, match="is the input"):
        prepare_output_dir(model, inputs=[None, model], overwrite=True)
    with pytest.raises(UserError):  # the same folder spelled differently
        prepare_output_dir(tmp_path / "model" / ".." / "model", inputs=[model])


def test_foreign_content_needs_the_overwrite_flag(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text("{}")
    (out / "model.safetensors").write_text("")
    with pytest.raises(
        UserError, match=r"already holds a model \(config.json, model.safetensors\).*--overwrite_output_dir"
    ):
        prepare_output_dir(out, overwrite_flag="--overwrite_output_dir", what="a model")
    assert prepare_output_dir(out, overwrite=True) == out.resolve()


def test_a_previous_output_of_the_same_command_may_be_written_again(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text("{}")
    (out / "results.md").write_text("")
    assert prepare_output_dir(out, owned={"results.json", "results.md", "plot.png"})
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="notes.txt"):
        prepare_output_dir(out, owned=lambda entry: entry.name.startswith("results."))
