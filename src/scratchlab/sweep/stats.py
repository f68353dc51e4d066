"""Numbers over seeds: n, mean, sample std, min, max, the values, and a 95% Student-t confidence interval.

The interval is mean +- t_{0.975, n-1} * std / sqrt(n) (std with n - 1 in the denominator): the textbook interval
for the mean of n independent runs, assuming their results scatter roughly normally. With one run there is no
spread to estimate: std and the interval are None (JSON null), never a made-up zero.
"""

from __future__ import annotations

import math
from typing import Any

from scipy import stats as _scipy

CI = "95% Student-t interval for the mean over seeds (std with n - 1)"


def summarize(values: list[float]) -> dict[str, Any]:
    """{"n", "mean", "std", "ci95_low", "ci95_high", "min", "max", "values"} of finite numbers `values`."""
    n = len(values)
    if n == 0:
        raise ValueError("summarize: no values")
    mean = math.fsum(values) / n
    if n > 1:
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
        half = float(_scipy.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
        low, high = mean - half, mean + half
    else:
        std = low = high = None
    return {"n": n, "mean": mean, "std": std, "ci95_low": low, "ci95_high": high, "min": min(values),
            "max": max(values), "values": list(values)}


def numeric_fields(summaries: list[dict[str, Any]]) -> list[str]:
    """The summary fields that are numbers (bools count as 0/1) and finite in every one of `summaries`, in order."""
    fields: list[str] = []
    for s in summaries:
        fields += [k for k in s if k not in fields]
    return [k for k in fields if all(_number(s.get(k)) is not None for s in summaries)]


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, int | float) and math.isfinite(v):
        return float(v)
    return None


def aggregate(summaries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per numeric field of the runs' summaries: `summarize` over the runs."""
    return {k: summarize([_number(s[k]) for s in summaries]) for k in numeric_fields(summaries)}


def constants(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """The fields that are not numbers and have one value in every summary (the data source, the model's name):
    what a table of means would otherwise lose."""
    if not summaries:
        return {}
    first = summaries[0]
    return {k: v for k, v in first.items() if _number(v) is None and not isinstance(v, dict | list)
            and all(s.get(k) == v for s in summaries)}


def fmt(m: dict[str, Any], digits: int = 4, n: bool = True) -> str:
    """'mean ± std (n = k)' (without the n when `n` is False); 'mean (n = 1)' when there is no spread."""
    if m["std"] is None:
        return f"{m['mean']:.{digits}g} (n = 1)"
    return f"{m['mean']:.{digits}g} ± {m['std']:.2g}" + (f" (n = {m['n']})" if n else "")
