"""Kill rate of ``make mutate`` (mutmut) from its ``mutants/**/*.meta`` files, per module, as JSON.

Why a script: mutmut's own ``results`` lists mutants one by one; the rate a reviewer asks for ("at least 90%
killed, survivors listed") needs the tally by module and the survivors' names in one file that can be
committed beside the results.

Counted as killed: the tests failed (exit 1) or timed out; survived: the tests passed (exit 0); not covered:
no test ran the mutated function (exit 33). ``rate = killed / (killed + survived + not covered)``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

KILLED = {1, 3, 36, 37}  # failed, segfault-like, timeout, type check
SURVIVED = {0}
NOT_COVERED = {33}


def tally(root: Path) -> dict[str, object]:
    modules: dict[str, dict[str, object]] = {}
    for meta in sorted(root.rglob("*.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        c = Counter("killed" if v in KILLED else "survived" if v in SURVIVED else "not_covered" if v in NOT_COVERED
                    else "not_run" for v in codes.values())
        survivors = sorted(k for k, v in codes.items() if v in SURVIVED | NOT_COVERED)
        modules[str(meta.relative_to(root)).removesuffix(".meta")] = {**c, "mutants": len(codes),
                                                                       "survivors": survivors}
    tot: Counter[str] = Counter()
    for m in modules.values():
        tot.update({k: v for k, v in m.items() if k in ("killed", "survived", "not_covered", "not_run")})
    judged = tot["killed"] + tot["survived"] + tot["not_covered"]
    return {"total": dict(tot), "kill_rate": tot["killed"] / judged if judged else None, "modules": modules}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mutants", type=Path, default=Path("mutants"))
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    if not args.mutants.is_dir():
        print(f"{args.mutants} does not exist: run `make mutate` first", file=sys.stderr)
        return 2
    rep = tally(args.mutants)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rep, indent=1) + "\n")
    t = rep["total"]
    rate = rep["kill_rate"]
    print(f"mutants {sum(t.values())}: killed {t.get('killed', 0)}, survived {t.get('survived', 0)}, "
          f"not covered {t.get('not_covered', 0)}, not run {t.get('not_run', 0)}; kill rate "
          f"{'n/a' if rate is None else f'{100 * rate:.1f}%'} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
