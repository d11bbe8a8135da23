"""Control: vehicle models, the MPC, PID/pure-pursuit baselines and the safe fallback.

Imports nothing of ours but the message types (``sim.messages``).
"""
