"""Tegata's command line: parse, read files, call ``ca.service``, print. Thin."""
