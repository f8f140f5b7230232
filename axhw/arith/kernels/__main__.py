"""``python -m axhw.arith.kernels``: build the compiled kernels (``make setup`` runs this: the LUT matmul and the
fused hardware forward) and say which path runs."""

from __future__ import annotations

import sys

from axhw.arith.kernels import fused, lut


def main(argv: list[str] | None = None) -> None:
    force = "--force" in (sys.argv[1:] if argv is None else argv)
    try:
        path = lut.build(force=force)
    except RuntimeError as exc:
        print(f"axhw LUT kernel not built: {exc}", file=sys.stderr)
        return
    print(f"axhw LUT kernel: {path} ({lut.backend(8)} for 8-bit tables)")
    try:
        print(f"axhw fused hardware-forward kernels: {fused.build(force=force)}")
    except RuntimeError as exc:
        print(f"axhw fused hardware-forward kernels not built: {exc}", file=sys.stderr)


if __name__ == "__main__":
    main()
