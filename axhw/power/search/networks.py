"""Minimum-power configuration of networks you trained (``axhw power report --network CKPT ...``).

Why: ``axhw power report --dataset`` trains its own BP and AxTrain networks of Table 1. A user who trained
their own model (``axhw train --model pkg.module:factory``, or a Table 1 network with their own options)
wants the same answer for *those* checkpoints: which multiplier mode and SRAM voltage draw the least power
while the accuracy stays within the bound. This runs the study's per-network measurement unchanged
(:func:`axhw.power.search.study.measure_network`: hardware-model accuracy over the mode x voltage grid, NTV as the mean
over chip instances; gate-level multiplier power on the network's own operand stream; SRAM power of its
stored bits) on each checkpoint, and the study's selection (:func:`axhw.power.search.study.choose_configurations`) at the
constraint and at every bound of the Pareto curve. Results are cached by checkpoint digest
(:class:`axhw.power.search.targets.ResultCache`), so a re-run measures nothing again.

Choices are made on the checkpoints' validation split where they all hold the same one (``axhw train
--val-fraction``), else on the test split, and ``power.json`` says which (``selection_split``).

The reference accuracy is each network's own at the exact multiplier and nominal voltage (``own``), or, with
``reference="bp"``, that of the one checkpoint trained with ``--method bp`` (the paper's comparison: the
accuracy bound is taken from the hardware-agnostic network).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from axhw.power.flow.tools import selected_library
from axhw.power.search.measure import Measurer
from axhw.power.search.study import (
    NODE_SCALE_180_TO_65,
    StudyConfig,
    check_grid,
    choose_configurations,
    config_dict,
    measure_network,
    power_change,
)
from axhw.power.search.targets import Ledger, ResultCache

__all__ = ["network_study", "prepare"]


def _describe(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Each checkpoint's label (its method; the folder name where two share one), data set and word length;
    a missing, corrupt or foreign file is the one-line error of :func:`axhw.training.trainer.load_checkpoint`."""
    from axhw.training.trainer import config_from_dict, load_checkpoint

    infos: list[dict[str, Any]] = []
    for p in paths:
        cfg = config_from_dict(load_checkpoint(p)["config"])
        infos.append({"path": Path(p), "method": cfg.method, "dataset": cfg.dataset, "bits": cfg.bits,
                      "model": cfg.model, "data": cfg.data, "val_fraction": cfg.val_fraction})
    if len({str(i["path"].resolve()) for i in infos}) != len(infos):
        raise ValueError("the same checkpoint is given twice: give each --network once")
    keys = {(i["dataset"], i["data"], i["bits"]) for i in infos}
    if len(keys) > 1:
        raise ValueError("the checkpoints use different data or word lengths (" + "; ".join(
            f"{i['path']}: {i['dataset']}, {i['bits']}-bit" for i in infos) + "): compare networks of one data set "
            "and width")
    methods = [i["method"] for i in infos]
    for i in infos:
        i["label"] = i["method"] if methods.count(i["method"]) == 1 else f"{i['method']} ({i['path'].parent.name})"
    if len({i["label"] for i in infos}) != len(infos):
        raise ValueError("two checkpoints of one method live in folders of the same name: put them in folders "
                         "with different names (the report labels networks by method and folder)")
    return infos


def prepare(checkpoints: Sequence[str | Path], cfg: StudyConfig) -> tuple[list[dict[str, Any]], StudyConfig]:
    """Validate the checkpoints and the grid before any measurement (the CLI calls it before looking for the
    toolchain): each checkpoint's description, and ``cfg`` with the checkpoints' data set and word length."""
    if not checkpoints:
        raise ValueError("give at least one --network CHECKPOINT")
    infos = _describe([Path(c) for c in checkpoints])
    # Choices on the validation split when every checkpoint holds one (axhw train --val-fraction), else on the
    # test split, labelled (config.val_fraction = 0, "selection_split": "test" in power.json).
    val = {float(i["val_fraction"]) for i in infos}
    cfg = cfg.copy(dataset=infos[0]["dataset"], bits=infos[0]["bits"],
                   val_fraction=val.pop() if len(val) == 1 else 0.0)
    check_grid(cfg)
    bp = [i for i in infos if i["method"] == "bp"]
    if cfg.reference == "bp" and len(bp) != 1:
        raise ValueError(f"--reference bp needs exactly one checkpoint trained with --method bp, got {len(bp)}; "
                         "add it with --network, or use --reference own")
    return infos, cfg


def network_study(checkpoints: Sequence[str | Path], cfg: StudyConfig, progress: bool = True) -> dict[str, Any]:
    """Measure and select for each checkpoint; the dictionary ``power.json`` holds (same ``networks`` layout
    as :func:`axhw.power.search.study.run_study`'s, so :func:`axhw.power.search.report.write_report` renders it).

    ``cfg`` supplies the grid (modes, voltages), runs, operand pairs, clock, bounds, reference and work folder;
    its data set and word length are taken from the checkpoints, and its first seed seeds the evaluation.
    """
    infos, cfg = prepare(checkpoints, cfg)
    bp = [i for i in infos if i["method"] == "bp"]
    ledger = Ledger()
    meas = Measurer(ResultCache(Path(cfg.work_dir) / "results"), ledger, cfg.bits, cfg.n_pairs, cfg.clock_mhz,
                    cfg.timing, cfg.runs)
    networks: dict[str, dict[str, Any]] = {}
    for info in infos:
        net = measure_network(cfg, cfg.seed, info["label"], info["path"], meas, progress)
        net["model"], net["data"] = info["model"], info["data"]
        networks[info["label"]] = net
    choose_configurations(networks, cfg, networks[bp[0]["label"]]["exact_nominal_accuracy"] if bp else None)
    if cfg.logic_supplies_mv:
        from axhw.power.search.study import logic_supplies

        logic_supplies(cfg, cfg.seed, networks, {i["label"]: Path(i["path"]) for i in infos}, meas)
    out: dict[str, Any] = {"config": config_dict(cfg), "source": "networks", "networks": networks,
                           "selection_split": cfg.selection_split,
                           "library": selected_library().label, "node_scale_compute": selected_library().node_scale,
                           **({"node_scale_180_to_65": NODE_SCALE_180_TO_65} if selected_library().pdk == "osu018" else {}),
                           "cost": {"this_run": ledger.as_dict()}}
    if bp and len(networks) > 1:  # every other network's power change against BP's, at the chosen points
        base = networks[bp[0]["label"]]["chosen"]
        out["vs_bp_percent"] = {label: {part: power_change(base[part], net["chosen"][part], f"{part}_w")
                                        for part in ("compute", "storage", "joint")}
                                for label, net in networks.items() if label != bp[0]["label"]}
    return out
