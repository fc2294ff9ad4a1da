"""Worked examples of sweep's extension points (see docs/custom_architectures.md)."""
