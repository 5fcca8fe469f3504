"""JSONL -> webdataset shards: what goes in, what is skipped, and that webdataset itself reads them."""

import json
import subprocess
import sys

import pytest
import webdataset as wds

from fgclip.cli import run
from fgclip.data.readers import LoadedRecord, open_sources
from fgclip.data.shards import main, write_shards
from tests.data.conftest import record, write_jsonl


def test_shards_hold_every_valid_record_and_skip_the_rest(tmp_path, good_set):
    records = [json.loads(line) for line in good_set.read_text().splitlines()]
    (good_set.parent / "images" / "broken.png").write_bytes(b"not an image")
    mixed = write_jsonl(
        good_set.parent / "mixed.jsonl",
        records + [record("images/missing.png", 50), record("images/broken.png", 51), "{oops"],
    )
    summary = write_shards([mixed], tmp_path / "shards", shard_size=3, progress=False)
    assert summary.written == 8
    assert len(summary.skipped) == 3
    assert [s["nsamples"] for s in summary.shards] == [3, 3, 2]
    assert summary.brace_pattern == "shard-{000000..000002}.tar"
    manifest = json.loads((tmp_path / "shards" / "shards.json").read_text())
    assert manifest["written"] == 8 and manifest["skipped"] == 3

    source = open_sources([str(tmp_path / "shards" / summary.brace_pattern)])
    assert len(source) == 8
    for index, original in enumerate(records):
        loaded = source.load(index)
        assert isinstance(loaded, LoadedRecord)
        assert loaded.record.long_caption == original["long_caption"]
        assert [r.caption for r in loaded.record.regions] == [r["caption"] for r in original["regions"]]
        assert loaded.record.regions[0].hard_negatives == original["regions"][0]["hard_negatives"]
        assert loaded.open_image().size == (48, 48)

    # The shards are ordinary webdataset shards: its own streaming reader sees the same samples.
    streamed = list(wds.WebDataset(str(tmp_path / "shards" / summary.brace_pattern), shardshuffle=False).decode("pil"))
    assert [s["json"]["short_caption"] for s in streamed] == [r["short_caption"] for r in records]
    assert streamed[0]["png"].size == (48, 48)


def test_cli_reports_and_exit_codes(tmp_path, good_set, capsys):
    out = str(tmp_path / "out")
    assert main(["--records", str(good_set), "--output_dir", out, "--shard_size", "5", "--quiet"]) == 0
    output = capsys.readouterr().out
    assert "wrote 8 samples in 2 shards" in output and "shard-{000000..000001}.tar" in output
    assert run(main, ["--records", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o2"), "--quiet"]) == 2
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:  # old spellings (--out, --shard-size) still work
        main(["--records", str(good_set), "--out", str(tmp_path / "o3"), "--shard-size", "0"])
    assert stop.value.code == 2 and "--shard_size: must be a positive integer" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()  # a missing input fails before the output folder is made
    # a folder holding other files is refused unless --overwrite_output_dir; a re-run into its own output is fine
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert run(main, ["--records", str(good_set), "--output_dir", str(other), "--quiet"]) == 2
    assert "--overwrite_output_dir" in capsys.readouterr().err
    assert main(["--records", str(good_set), "--output_dir", str(other), "--quiet", "--overwrite_output_dir"]) == 0
    assert main(["--records", str(good_set), "--output_dir", out, "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["shard-000000.tar", "shards.json"]  # none stale


def test_help_answers_before_heavy_imports():
    for module in ("fgclip.data.shards", "fgclip.data.synthetic"):
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                f"import sys, runpy\nsys.argv = ['x', '--help']\ntry:\n"
                f"    runpy.run_module('{module}', run_name='__main__')\nexcept SystemExit:\n    pass\n"
                "assert not {'torch', 'numpy', 'webdataset', 'PIL'} & set(sys.modules), module\n",
            ],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0 and "--output_dir" in done.stdout, done.stderr
