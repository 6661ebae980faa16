"""Tables as the app and the HTML report show them: compact views of what :mod:`dcnviz.analysis` computes.

Plain pandas (no Streamlit). The full tables stay available as CSV downloads; these views keep what a
reader compares at a glance and fit the page's width.

>>> import pandas as pd
>>> full = pd.DataFrame({"matrix": ["layer 0"], "layer": [0], "expert": [""], "kind": ["full"], "d": [8],
...     "rank_bound": [8], "sigma_1": [2.0], "stable_rank": [1.25], "energy_rank_0.9": [2], "R_0.1": [3],
...     "initial R_0.1": [7], "suggested_rank": [3], "suggestion": ["r = 3 keeps …"]})
>>> rank_summary(full).to_dict("records")
[{'matrix': 'layer 0', 'rank bound': 8, 'R_0.1 (initial)': '3 (7)', 'suggested r': 3, 'stable rank': 1.2}]
>>> list(rank_summary(full, suggested=False))
['matrix', 'rank bound', 'R_0.1 (initial)', 'stable rank']
"""

from __future__ import annotations

import pandas as pd


def rank_summary(table: pd.DataFrame, *, suggested: bool = True) -> pd.DataFrame:
    """The numerical-rank table (:func:`dcnviz.analysis.rank_table`) as the pages show it.

    One row per matrix (layer, or expert of a mixture layer): its rank bound, R_T per tolerance — as
    ``"learned (initial)"`` when the initial matrix is known, so both sit in one narrow column — the
    suggested rank and the stable rank. Left out (they stay in the CSV): the long suggestion sentence,
    σ₁, the energy rank, kind and d, and the ``expert`` column (the matrix label names the expert).

    ``suggested=False`` leaves out the tolerance-based suggested rank too: where the rank is measured on data
    (the rank-truncation curve), that measured one is the page's only suggested rank.
    """
    out = pd.DataFrame({"matrix": table["matrix"], "rank bound": table["rank_bound"]})
    for col in [c for c in table.columns if c.startswith("R_")]:
        initial = f"initial {col}"
        if initial in table:
            out[f"{col} (initial)"] = [
                f"{int(a)} ({int(b)})" if pd.notna(b) else f"{int(a)}"
                for a, b in zip(table[col], table[initial], strict=True)
            ]
        else:
            out[col] = table[col]
    if suggested:
        out["suggested r"] = table["suggested_rank"]
    out["stable rank"] = table["stable_rank"].astype(float).round(1)  # a number: right-aligned like the ranks
    return out.reset_index(drop=True)
