"""Engines that execute export plans."""
