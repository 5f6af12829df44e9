"""The labeling budget of an experiment, checked before any work starts."""

from __future__ import annotations

from dataclasses import dataclass

from al.errors import ConfigError


@dataclass(frozen=True)
class Budget:
    """`initial` labels, then `query` more after each of `stages` stages.

    Stage k trains on `initial + k·query` labels, then selects `query` more
    from `subset` random unlabeled candidates (None = the whole unlabeled
    pool). The last stage selects too, so a finished run can be extended
    with more stages and its picks are analysed like every other stage's.
    """

    initial: int
    query: int
    stages: int
    subset: int | None = None

    def __post_init__(self) -> None:
        for key in ("initial", "query", "stages"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"budget.{key}={value!r} must be a positive integer")
        if self.subset is not None and (not isinstance(self.subset, int) or self.subset < 1):
            raise ConfigError(f"budget.subset={self.subset!r} must be a positive integer or null")
        if self.subset is not None and self.subset < self.query:
            raise ConfigError(
                f"budget.subset={self.subset} is smaller than budget.query={self.query}: "
                f"set budget.subset to at least {self.query} (the papers use 10× the query) "
                "or null for the whole unlabeled pool"
            )

    @property
    def total_labels(self) -> int:
        return self.initial + self.stages * self.query

    def check_fits(self, pool_size: int) -> None:
        if self.total_labels > pool_size:
            most_stages = (pool_size - self.initial) // self.query
            raise ConfigError(
                f"budget.initial={self.initial} + budget.stages={self.stages} × "
                f"budget.query={self.query} = {self.total_labels} labels, but the pool holds "
                f"{pool_size}; lower budget.stages to at most {most_stages} or the sizes"
            )
