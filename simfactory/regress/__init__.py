"""CI regression of planner outputs: flatten summaries, compare with baselines under tolerances, report."""
