"""Pure X.509 builders: objects or bytes in, objects or bytes out; no files, no DB, no clock."""
