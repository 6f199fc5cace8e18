"""Progress bars: tqdm in a terminal, the notebook widget in Jupyter."""
from __future__ import annotations


def progress_bar(tag: str, total: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=tag, unit="component", dynamic_ncols=True)
