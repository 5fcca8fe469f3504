"""Every lmm_integration command explains every option in --help."""

import pytest

from benchmarks.llava_miniature import run as miniature
from lmm_integration import build, chat, tower, train


@pytest.mark.parametrize("module", [build, chat, train, tower, miniature], ids=lambda m: m.__name__)
def test_every_option_has_help(module):
    parser = module.build_parser()
    for action in parser._actions:
        if action.dest in ("help", "local_rank"):
            continue
        assert action.help and action.help.strip(), f"{module.__name__}: {action.option_strings} has no help"
    assert parser.format_help().startswith(f"usage: python -m {module.__name__.removesuffix('.run')}")


def test_tower_command_help(capsys):
    from lmm_integration.tower import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0 and "register_with_llava" in capsys.readouterr().out
