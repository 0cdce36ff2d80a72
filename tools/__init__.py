"""Developer tools that generate committed files (manual pages).  Not installed."""
