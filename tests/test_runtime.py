"""Device, dtype and autocast choice: one set of rules for every command."""

import socket
import subprocess
import sys

import pytest
import torch

from fgclip.errors import UserError
from fgclip.runtime import autocast, autocast_dtype, default_dtype, dtype_by_name, free_port, resolve_device

CPU = torch.device("cpu")


def test_devices():
    assert resolve_device("cpu") == CPU
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UserError, match=r"--gpu 'tpu' is not a device name \(use auto, cpu, cuda or cuda:N\)"):
        resolve_device("tpu", option="--gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the message on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_user_error():
    with pytest.raises(UserError, match="--device cuda:0 asked for, but CUDA is not available"):
        resolve_device("cuda:0")


def test_dtype_names_and_autocast_choice():
    assert dtype_by_name("bf16") is dtype_by_name("bfloat16") is torch.bfloat16
    assert dtype_by_name("fp32") is torch.float32 and dtype_by_name("float16") is torch.float16
    with pytest.raises(UserError, match="unknown dtype 'half'"):
        dtype_by_name("half")
    assert autocast_dtype("auto", CPU) is None and autocast_dtype("fp32", CPU) is None
    assert autocast_dtype("bf16", CPU) is torch.bfloat16 and default_dtype(CPU) is torch.float32
    with pytest.raises(UserError, match="fp16 needs a CUDA device"):
        autocast_dtype("fp16", CPU)
    with autocast(CPU, torch.bfloat16):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype is torch.bfloat16
    with autocast(CPU, None):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype is torch.float32


def test_free_port_can_be_bound():
    with socket.socket() as server:
        server.bind(("127.0.0.1", free_port()))


def test_imports_no_torch():
    code = "import sys, fgclip.runtime, fgclip.hf_files; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
