"""The three test tiers (tests/README.md) and the check that every test names one."""

TIERS = ("functions", "composites", "jobs")


def tier_problems(items):
    """'nodeid: …' for every test that carries no tier marker or more than one (a module's
    pytestmark counts; a module that mixes tiers marks each test instead)."""
    problems = []
    for item in items:
        tiers = sorted({m.name for m in item.iter_markers() if m.name in TIERS})
        if len(tiers) != 1:
            problems.append(f"{item.nodeid}: tier markers {tiers or 'none'}")
    return problems
