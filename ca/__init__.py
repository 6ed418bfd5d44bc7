"""Tegata's core: everything a certificate authority knows, nothing about HTTP or terminals."""
