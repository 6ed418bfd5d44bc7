"""Tegata's HTTP API: schemas, routers, one error mapper, dependencies. Thin over ``ca.service``."""
