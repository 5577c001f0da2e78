"""Tests of the hardware abstraction layer."""
