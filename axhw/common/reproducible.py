"""Reproducible mode: a seed gives bit-identical float training on any x86-64 CPU and for any ``--threads``.

Why: the integer hardware model is exact by construction, but training is float math, and four things
outside the seed decide its rounding. Measured on this project's machine (AVX-512), the same ``axhw train``
of MNIST-MLP (bp, 1 epoch, 2,000 samples) gave four different networks when only one of these changed:

1. **torch's CPU kernel dispatch** (``ATEN_CPU_CAPABILITY``: ``default``, ``avx2``, ``avx512``, chosen from
   the CPU): the vector width changes the order of partial sums and the elementary-function kernels.
   Pinned to ``default``, the code path every x86-64 CPU runs.
2. **MKL's code path** (GEMMs): chosen per CPU unless conditional numerical reproducibility is asked for;
   ``MKL_CBWR=COMPATIBLE`` takes the path every x86-64 CPU runs.
3. **oneDNN's JIT ISA** (convolutions): ``ONEDNN_MAX_CPU_ISA=SSE41`` (and its old name ``DNNL_MAX_CPU_ISA``).
4. **The reduction order across threads**: torch and MKL split reductions by thread count. Float math runs
   on one intra-op thread (``OMP_NUM_THREADS=MKL_NUM_THREADS=1``, :func:`torch.set_num_threads`), whatever
   ``--threads`` says. The integer kernels are exact at any thread count but share torch's setting.

Everything must be set before torch is loaded (the dispatch and the libraries read it once): the command line
applies it before any command imports torch (:func:`apply`); Python users set ``AXHW_REPRODUCIBLE=1`` and
call :func:`apply` before importing torch, or start Python with the variables of :data:`ENV` set.
:func:`apply` refuses, in one line, when torch is already loaded with another dispatch.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

__all__ = ["ENV", "VARIABLE", "active", "add_option", "apply", "describe", "requested"]

#: The switch for Python users and scripts (the command line's ``--reproducible`` sets it for its children).
VARIABLE = "AXHW_REPRODUCIBLE"
#: What reproducible mode sets, before torch is loaded (see the module docstring for each).
ENV: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "default",
    "MKL_CBWR": "COMPATIBLE",
    "ONEDNN_MAX_CPU_ISA": "SSE41",
    "DNNL_MAX_CPU_ISA": "SSE41",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
_state = {"active": False}
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def add_option(parser: argparse.ArgumentParser, default: bool) -> None:
    """``--reproducible/--no-reproducible`` on a command: None when neither is given (then
    ``$AXHW_REPRODUCIBLE``, else ``default``, which the command line finds in ``reproducible_default``); on
    by default for the commands whose numbers are published (demo, reproduce, power report)."""
    parser.add_argument("--reproducible", action=argparse.BooleanOptionalAction, default=None,
                        help="bit-identical float training on any x86-64 CPU and for any --threads: torch's default "
                             "CPU dispatch, MKL's compatible path, oneDNN at SSE4.1, float math on one thread "
                             f"(docs/training.md; default: ${VARIABLE}, else {'on' if default else 'off'})")
    parser.set_defaults(reproducible_default=default)


def requested(flag: bool | None = None) -> bool:
    """Whether reproducible mode is on: ``flag`` (``--reproducible``/``--no-reproducible``) when given, else
    ``$AXHW_REPRODUCIBLE``."""
    if flag is not None:
        return flag
    value = os.environ.get(VARIABLE, "").strip().lower()
    if value not in _TRUE + _FALSE:
        raise ValueError(f"${VARIABLE}={os.environ[VARIABLE]!r}: valid values are 1 (on) and 0 (off)")
    return value in _TRUE


def apply() -> list[str]:
    """Set :data:`ENV` (and ``$AXHW_REPRODUCIBLE=1`` for child processes); return the variables whose earlier
    value it replaced (``NAME=old``), for a note. With torch already loaded, its threads are set to one and
    its dispatch is checked: another one is a ``ValueError`` saying how to start instead."""
    replaced = [f"{k}={os.environ[k]}" for k, v in ENV.items() if os.environ.get(k, v) != v]
    torch = sys.modules.get("torch")
    if torch is not None and torch.backends.cpu.get_cpu_capability() != "DEFAULT":
        raise ValueError(f"reproducible mode needs torch's default CPU dispatch, but torch was loaded with "
                         f"{torch.backends.cpu.get_cpu_capability()}: set {VARIABLE}=1 (or "
                         "ATEN_CPU_CAPABILITY=default) before Python imports torch")
    os.environ.update(ENV)
    os.environ[VARIABLE] = "1"
    if torch is not None:
        torch.set_num_threads(1)
    _state["active"] = True
    return replaced


def active() -> bool:
    """Whether :func:`apply` ran in this process (float math then stays on one thread)."""
    return _state["active"]


def describe() -> dict[str, Any]:
    """What decided the float results of this process, for ``metrics.json``: whether reproducible mode was
    in effect (all of :data:`ENV` set, the default dispatch, one thread), torch's CPU dispatch, threads and
    version. Nothing else of the environment: a run on a Ray worker and one in a local worker that round
    alike must describe alike."""
    import torch

    capability, threads = torch.backends.cpu.get_cpu_capability(), torch.get_num_threads()
    return {"reproducible": all(os.environ.get(k) == v for k, v in ENV.items()) and capability == "DEFAULT"
            and threads == 1, "cpu_capability": capability, "torch_threads": threads, "torch": torch.__version__}
