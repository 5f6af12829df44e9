"""The labeling budget of an experiment, checked before any work starts."""

from __future__ import annotations

from dataclasses import dataclass, replace

from al.errors import ConfigError

Size = int | float
INITIAL_STRATEGIES = ("random", "kcenter")


@dataclass(frozen=True)
class Budget:
    """`initial` labels, then `query` more after each of `stages` stages.

    Stage k trains on `initial + k·query` labels, then selects `query` more
    from `subset` random unlabeled candidates (None = the whole unlabeled
    pool). The last stage selects too, so a finished run can be extended
    with more stages and its picks are analysed like every other stage's.
    `initial`, `query` and `subset` may be fractions of the pool (0 < f < 1,
    VAAL's 10 % + 5 %); `resolve` turns them into counts. `initial_strategy`:
    `random`, or SRAAL's `kcenter` (k-center greedy in a pool VAE's latent space).
    """

    initial: Size
    query: Size
    stages: int
    subset: Size | None = None
    initial_strategy: str = "random"

    def __post_init__(self) -> None:
        for key in ("initial", "query", "subset", "stages"):
            value = getattr(self, key)
            if key == "subset" and value is None:
                continue
            if not is_size(value) or (key == "stages" and not isinstance(value, int)):
                kind = (
                    "a positive integer" if key == "stages" else "a positive integer or 0 < f < 1"
                )
                raise ConfigError(f"budget.{key}={value!r} must be {kind}")
        if self.initial_strategy not in INITIAL_STRATEGIES:
            raise ConfigError(
                f"budget.initial_strategy={self.initial_strategy!r} is not one of "
                f"{INITIAL_STRATEGIES}"
            )
        both_counts = isinstance(self.subset, int) and isinstance(self.query, int)
        if both_counts and self.subset < self.query:
            raise ConfigError(
                f"budget.subset={self.subset} is smaller than budget.query={self.query}: "
                f"set budget.subset to at least {self.query} (the papers use 10× the query) "
                "or null for the whole unlabeled pool"
            )

    def resolve(self, pool_size: int) -> Budget:
        """The same budget in counts for a pool of `pool_size`, checked to fit it."""

        def count(value: Size | None) -> int | None:
            return value if not isinstance(value, float) else max(1, round(value * pool_size))

        resolved = replace(
            self,
            initial=count(self.initial),
            query=count(self.query),
            subset=count(self.subset),
        )
        resolved.check_fits(pool_size)
        return resolved

    @property
    def total_labels(self) -> int:
        return self.initial + self.stages * self.query

    def check_fits(self, pool_size: int) -> None:
        """Every stage labels `query` more, the last one included: the pool must hold them."""
        if self.total_labels <= pool_size:
            return
        labels = (
            f"budget.initial={self.initial} + budget.stages={self.stages} × "
            f"budget.query={self.query} = {self.total_labels} labels, but the pool holds "
            f"{pool_size}"
        )
        most_stages = (pool_size - self.initial) // self.query
        most_initial = pool_size - self.stages * self.query
        most_query = (pool_size - self.initial) // self.stages
        fixes = [
            f"budget.stages to at most {most_stages}" if most_stages >= 1 else "",
            f"budget.initial to at most {most_initial}" if most_initial >= 1 else "",
            f"budget.query to at most {most_query}" if most_query >= 1 else "",
        ]
        fix = "lower " + " or ".join(f for f in fixes if f) if any(fixes) else "use fewer labels"
        raise ConfigError(f"{labels}: {fix}")


def is_size(value: object) -> bool:
    """A positive count, or a fraction strictly between 0 and 1."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value > 0
    return isinstance(value, float) and 0 < value < 1
