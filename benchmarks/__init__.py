"""Benchmark suite for jaxpass: throughput now, paper reproductions later (see README.md)."""
