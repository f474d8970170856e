"""Shipping service: zones, methods, prices and the rules that pick them; shipments."""
