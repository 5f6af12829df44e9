"""Reports on finished runs: plots, comparisons, analyses, sample grids, the toy figure."""
