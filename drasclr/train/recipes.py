"""DrasCLR's pretraining recipes: how a step spends its patches (one table for every caller).

``drasclr bench science`` (``ScienceConfig.drasclr_recipe``) and the pipeline behind
``drasclr demo`` / ``drasclr run`` (``PipelineConfig.drasclr_recipe``) read the same table, so a
recipe means the same batches wherever it is named. Each recipe also fixes its ablation: the same
batches without the neighbour loss.
"""

from __future__ import annotations

from typing import Any

from drasclr.config import check

#: The paired recipe's least neighbour distance, mm. 0: the nearest landmark, DESIGN.md's rule.
#: Round 24 had set it to the patch width (32) on a screening gain the benchmark did not confirm
#: (cohort 4 0.833 -> 0.816, cohort 3 0.842 -> 0.838; docs/results.md), so it went back.
PAIRED_NEIGHBOUR_MIN_MM = 0.0
#: Method names the recipes apply to (the other methods train as they are named).
DRASCLR = "DrasCLR"
ABLATION = "DrasCLR (no neighbour loss)"
#: DrasCLR's pretraining recipes, each with its ablation: the same batches without the neighbour
#: loss. ``paper``: B anchors at a landmark j, each with its k = 2 nearest neighbour patches
#: encoded for the neighbour loss only (3B query-side patches a step); without the loss those
#: patches serve nothing, so the ablation is B anchors alone. ``paired``: B / 2 anchors at j and
#: one neighbour patch each at j' (k = 1), which is also a query of j''s own local contrast
#: (``neighbour_local_weight`` 1, its second view key-encoded and enqueued at j'), so a step
#: encodes B query and B key patches (recipe round 20, docs/results.md); the neighbour loss
#: projects r_ij' with a head of its own (``neighbour_head``, round 21), so it trains the encoder
#: without bending the local contrast's head; j' is j's nearest landmark
#: (``PAIRED_NEIGHBOUR_MIN_MM``); its ablation trains the same two landmarks with
#: ``neighbour_weight`` 0.
#: Recipe -> method -> (pretraining overrides, anchors per step as B // this).
DRASCLR_RECIPES: dict[str, dict[str, tuple[dict[str, Any], int]]] = {
    "paired": {
        DRASCLR: ({"neighbours": 1, "neighbour_local_weight": 1.0, "neighbour_head": True,
                   "neighbour_min_mm": PAIRED_NEIGHBOUR_MIN_MM}, 2),
        ABLATION: ({"neighbours": 1, "neighbour_local_weight": 1.0, "neighbour_weight": 0.0,
                    "neighbour_min_mm": PAIRED_NEIGHBOUR_MIN_MM}, 2),
    },
    "paper": {
        DRASCLR: ({"neighbours": 2}, 1),
        ABLATION: ({"neighbours": 0}, 1),
    },
}


def recipe_overrides(recipe: str, name: str, overrides: dict[str, Any] | None,
                     batch_size: int) -> dict[str, Any] | None:
    """A method's pretraining overrides in ``recipe`` form.

    Args:
        recipe: a key of :data:`DRASCLR_RECIPES`.
        name: the method (``DrasCLR`` or its ablation take the recipe; others pass through).
        overrides: the method's own overrides (None: an untrained encoder, passed through).
        batch_size: the configured B; the recipe's anchors per step are B // its divisor.

    Returns:
        ``overrides`` merged with the recipe's settings and batch size, or ``overrides``
        unchanged for a method the recipe does not name.

    Raises:
        ValueError: an unknown recipe, or a batch too small to split.
    """
    table = DRASCLR_RECIPES[_known(recipe)]
    if overrides is None or name not in table:
        return overrides
    extra, divisor = table[name]
    if batch_size < min_batch_size(recipe):
        raise ValueError(f"the {recipe} recipe needs B // {divisor} >= 2 subjects a landmark, "
                         f"got B = {batch_size}")
    return {**overrides, **extra, "batch_size": batch_size // divisor}


def min_batch_size(recipe: str) -> int:
    """The least B with at least 2 subjects a landmark in every method of ``recipe``.

    Raises:
        ValueError: an unknown recipe.
    """
    return 2 * max(divisor for _, divisor in DRASCLR_RECIPES[_known(recipe)].values())


def check_recipe(recipe: str, batch_size: int, stage: str) -> None:
    """Validate a stage config's ``drasclr_recipe`` and its ``batch_size`` against the table.

    Raises:
        drasclr.config.ConfigError: an unknown recipe, or B below :func:`min_batch_size`.
    """
    check(recipe in DRASCLR_RECIPES, stage, "drasclr_recipe",
          f"one of {list(DRASCLR_RECIPES)}, got {recipe!r}")
    need = min_batch_size(recipe)
    check(batch_size >= need, stage, "batch_size", f"the {recipe} recipe needs at least {need}")


def _known(recipe: str) -> str:
    if recipe not in DRASCLR_RECIPES:
        raise ValueError(f"unknown DrasCLR recipe {recipe!r}; choose from {list(DRASCLR_RECIPES)}")
    return recipe
