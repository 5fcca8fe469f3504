"""The Fashion-FINE miniature (benchmarks/fashion_miniature.py), shrunk: every row is made by the real
commands and evaluations, and the difference row is the difference of the two finetuned rows."""

import pytest

from benchmarks.fashion_miniature import GEN_COLUMNS, IQ_COLUMNS, Miniature, markdown, run


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_shrunk_miniature(tmp_path):
    result = run(
        Miniature(
            run_dir=str(tmp_path),
            families=8,
            steps=2,
            batch_size=8,
            eval_every=2,
            tgir_steps=2,
            warmup_steps=1,
            num_queries=10,
            num_negatives=5,
            progress=False,
        )
    )
    names = [row["model"] for row in result["rows"]]
    assert names == [
        "start (tiny FG-CLIP, untrained)",
        "global-only (retrieval finetune)",
        "global + local (retrieval finetune)",
        "global-only + TGIR finetune (trained composition)",
        "global + local + TGIR finetune (trained composition)",
    ]
    rows = {row["model"]: row for row in result["rows"]}
    assert rows[names[0]]["embedding"] == "global" and rows[names[2]]["embedding"] == "fusion"
    assert rows[names[4]]["composition"] == "fusion" and rows[names[2]]["composition"] == "sum"
    for row in result["rows"]:
        assert all(0.0 <= row[key] <= 1.0 for key in GEN_COLUMNS + IQ_COLUMNS)
    for key in GEN_COLUMNS + IQ_COLUMNS:
        assert result["global_local_minus_global"][key] == pytest.approx(rows[names[2]][key] - rows[names[1]][key])
    table = markdown(result)
    assert table.count("\n") == 2 + len(names) + 1 and "global + local minus global-only" in table
