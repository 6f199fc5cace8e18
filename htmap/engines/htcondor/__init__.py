"""The HTCondor engine (official ``htcondor2`` bindings, HTCondor >= 24).

Importing this package never imports ``htcondor2``; only talking to a schedd does
(see ``bindings``). Pure parts (submit description, delivery methods, site presets,
event folding) are separate modules so they can be tested without a pool.
"""
