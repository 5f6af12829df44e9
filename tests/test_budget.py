import pytest

from al.budget import Budget
from al.errors import ConfigError


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial": 0}, "budget.initial=0"),
        ({"initial": 1.5}, "budget.initial=1.5"),
        ({"stages": 0.5}, "budget.stages=0.5 must be a positive integer"),
        ({"initial": -5}, "budget.initial=-5"),
        ({"query": 0}, "budget.query=0"),
        ({"stages": 0}, "budget.stages=0"),
        ({"query": "10"}, "budget.query='10'"),
        ({"subset": 5}, "budget.subset=5 is smaller than budget.query=10"),
    ],
)
def test_bad_budget_is_refused_with_the_bad_value(kwargs, message):
    values = {"initial": 20, "query": 10, "stages": 3, "subset": None} | kwargs
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        Budget(**values)


def test_budget_must_fit_the_pool():
    budget = Budget(initial=50, query=50, stages=10)
    assert budget.total_labels == 550
    budget.check_fits(550)
    with pytest.raises(ConfigError, match=r"550 labels, but the pool holds 549.*at most 9"):
        budget.check_fits(549)


def test_fractions_resolve_against_the_pool():
    vaal = Budget(initial=0.1, query=0.05, stages=5).resolve(50_000)
    assert (vaal.initial, vaal.query, vaal.subset) == (5000, 2500, None)
    with pytest.raises(ConfigError, match="pool holds 100"):
        Budget(initial=0.5, query=0.2, stages=5).resolve(100)
