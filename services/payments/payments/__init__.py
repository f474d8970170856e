"""Payments service: payment types and providers, charges, refunds, voids and the transaction ledger."""
