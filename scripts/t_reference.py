"""Write tests/data/t_reference.json: scipy's t distribution and Welch test at the points the tests check.

shmrss computes the t distribution itself (shmrss/stats.py); tests/test_stats.py compares it with
these values to 1e-9. scipy is not a dependency of the tests (numba imports it when it is installed,
which costs every shmrss process of the suite 0.2 s of start-up), so its values are recorded here,
with its version; run this script (with scipy installed) to record them again.

    python scripts/t_reference.py
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "t_reference.json"
DFS = (1, 2, 2.42, 3.7, 4, 10, 30, 100, 1000)
TS = (0.01, 0.5, 1, 2, 3, 5, 10, 50)
PS = (0.2, 0.05, 1e-4)
WELCH = ([100, 102, 98, 101, 99], [103, 99, 104, 102, 101])


def main() -> None:
    import scipy
    import scipy.stats as sp

    data = {
        "scipy": scipy.__version__,
        "two_sided_p": [[t, df, float(2 * sp.t.sf(t, df))] for df in DFS for t in TS],
        "quantile": [[p, df, float(sp.t.ppf(1 - p / 2, df))] for df in DFS for p in PS],
        "welch": {"base": WELCH[0], "new": WELCH[1],
                  "p": float(sp.ttest_ind(WELCH[0], WELCH[1], equal_var=False).pvalue)},
    }
    OUT.write_text(json.dumps(data, indent=1) + "\n")
    print(f"{OUT}: {len(data['two_sided_p'])} tail values, {len(data['quantile'])} quantiles, scipy {scipy.__version__}")


if __name__ == "__main__":
    main()
