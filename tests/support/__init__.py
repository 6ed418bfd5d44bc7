"""What many test modules share: the test environment's constants and rules
(``environment``), the template databases (``databases``), issuing and OCSP/CSR helpers for
the service (``issuing``), the in-process ``tegata`` driver (``cli``), HTTP headers
(``http``) and the external tools of the interop tests (``tools``).

Fixtures stay in the conftest.py files; what a test module imports comes from here.
"""
