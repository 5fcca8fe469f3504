import pytest
import torch

from fgclip.model.positions import stretch_position_table, stretched_length


def reference_stretch(table: torch.Tensor, keep: int) -> torch.Tensor:
    """The rule written slot by slot, independently of the vectorised implementation."""
    length = table.shape[0]
    rows = [table[i] for i in range(keep)]
    for i in range(keep, length - 1):
        for k in range(4):
            rows.append(table[i] * (4 - k) / 4 + table[i + 1] * k / 4)
    for k in range(4):
        rows.append(table[length - 1] + k * (table[length - 1] - table[length - 2]) / 4)
    return torch.stack(rows)


def test_clip_table_stretches_to_248_slots():
    assert stretched_length(77, 20) == 248
    assert stretch_position_table(torch.randn(77, 8)).shape == (248, 8)


def test_every_slot_follows_the_interpolation_rule():
    table = torch.randn(77, 16, dtype=torch.float64)
    stretched = stretch_position_table(table, keep=20)
    torch.testing.assert_close(stretched, reference_stretch(table, 20), rtol=0, atol=1e-12)


def test_first_twenty_slots_are_the_original_ones_bit_for_bit():
    table = torch.randn(77, 16)
    assert torch.equal(stretch_position_table(table)[:20], table[:20])


def test_original_slots_reappear_every_fourth_slot_after_keep():
    table = torch.randn(77, 4, dtype=torch.float64)
    stretched = stretch_position_table(table)
    for i in range(20, 77):
        torch.testing.assert_close(stretched[20 + 4 * (i - 20)], table[i], rtol=0, atol=1e-12)


def test_bad_tables_are_rejected():
    with pytest.raises(ValueError, match="2-D"):
        stretch_position_table(torch.randn(77))
    with pytest.raises(ValueError, match="keep"):
        stretch_position_table(torch.randn(10, 4), keep=20)
