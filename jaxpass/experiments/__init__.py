"""Named, reproducible runs (paper tables/figures and the demo). I/O lives here and above."""
