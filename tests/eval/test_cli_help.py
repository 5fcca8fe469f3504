"""Every encoder benchmark's --help explains every option."""

from __future__ import annotations

import argparse

import pytest

from eval import box_cls, dense_vis, fashion, fgovd, report, retrieval, zeroshot


@pytest.mark.parametrize("module", [fgovd, box_cls, retrieval, zeroshot, fashion, dense_vis, report])
def test_every_option_has_help(module):
    parser = module.build_parser()
    undocumented = [action.dest for action in parser._actions
                    if not isinstance(action, argparse._HelpAction) and not (action.help or "").strip()]
    assert undocumented == []
    assert module.__doc__.split("\n")[0] in parser.format_help()


def test_dense_vis_help_explains_inverted_maps():
    text = dense_vis.build_parser().format_help()
    assert all(words in text for words in ("inverted", "value path", "--normalize raw", "softmax over texts"))
