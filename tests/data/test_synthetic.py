"""The synthetic scene generator: deterministic, valid records, one-attribute hard negatives, splits."""

import hashlib
import json
import random

from PIL import Image

from fgclip.cli import run
from fgclip.data.readers import LoadedRecord, open_sources
from fgclip.data.synthetic import COLOURS, SIZES, TEXTURES, SceneObject, generate, hard_negatives, main


def digest(folder):
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())).hexdigest()


def test_same_seed_same_set_other_seed_other_set(tmp_path):
    generate(tmp_path / "a", 12, seed=5, progress=False)
    generate(tmp_path / "b", 12, seed=5, progress=False)
    generate(tmp_path / "c", 12, seed=6, progress=False)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


def test_records_are_valid_and_split(tmp_path):
    result = generate(tmp_path, 20, seed=1, image_size=48, heldout_fraction=0.25, progress=False)
    assert (result.num_train, result.num_heldout) == (15, 5)
    train, heldout = open_sources([result.train]), open_sources([result.heldout])
    assert len(train) == 15 and len(heldout) == 5 and len(open_sources([result.all])) == 20
    train_images = {train.load(i).record.image for i in range(15)}
    assert not train_images & {heldout.load(i).record.image for i in range(5)}
    for index in range(15):
        loaded = train.load(index)
        assert isinstance(loaded, LoadedRecord)
        assert loaded.open_image().size == (48, 48)
        assert 1 <= len(loaded.record.regions) <= 4
        for region in loaded.record.regions:
            assert len(region.hard_negatives) == 10 and len(set(region.hard_negatives)) == 10
            assert region.caption not in region.hard_negatives
            assert region.long_caption.startswith(region.caption)
            assert region.caption in loaded.record.long_caption
    assert json.loads(result.all.read_text().splitlines()[-1])["split"] == "heldout"


def test_region_box_covers_the_drawn_object(tmp_path):
    result = generate(tmp_path, 6, seed=2, image_size=64, progress=False)
    loaded = open_sources([result.train]).load(0)
    image = loaded.open_image()
    for region in loaded.record.regions:
        if "hollow" in region.caption:
            continue
        colour = COLOURS[region.caption.split()[2]]
        x1, y1, x2, y2 = (round(v * 64) for v in region.bbox)
        inside = [image.getpixel((x, y)) for x in range(x1, x2) for y in range(y1, y2)]
        assert colour in inside


def test_hard_negatives_change_exactly_one_attribute_and_keep_the_noun():
    obj = SceneObject("circle", "red", "small", "striped", (0, 0, 10, 10))
    negatives = hard_negatives(obj, random.Random(0))
    assert len(negatives) == 10
    truth = obj.expression.split()
    for negative in negatives:
        words = negative.split()
        assert words[-1] == "circle"
        assert sum(a != b for a, b in zip(words, truth)) == 1
        assert words[1] in SIZES and words[2] in COLOURS and words[3] in TEXTURES


def test_cli(tmp_path, capsys):
    assert main(["--output_dir", str(tmp_path / "s"), "--num_images", "5", "--seed", "3", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["num_train"] == 4
    assert Image.open(tmp_path / "s" / "images" / "000000.png").size == (64, 64)
    assert main(["--out", str(tmp_path / "s"), "--num-images", "5", "--quiet"]) == 0  # old spellings; a re-run
    capsys.readouterr()
    assert run(main, ["--out", str(tmp_path / "t"), "--num-images", "1"]) == 2
    assert "at least 2" in capsys.readouterr().err
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("not the generator's")
    assert run(main, ["--output_dir", str(tmp_path / "mine"), "--num_images", "2", "--quiet"]) == 2
    assert "--overwrite_output_dir" in capsys.readouterr().err
