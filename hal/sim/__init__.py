"""Simulated devices: a physical plant shared by the simulated EV, pilot board,
power module, meter and isolation monitor. The board and the power module sit
on the far side of their real wire protocols (serial pty / CAN bus)."""
