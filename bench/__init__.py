"""The load and performance harness behind `make bench` (not part of `make test`)."""
