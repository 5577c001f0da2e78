"""Hardware abstraction layer.

One small :class:`typing.Protocol` per hardware resource (:mod:`hal.pilot`,
:mod:`hal.power_stage`, :mod:`hal.isolation`, :mod:`hal.meter`), a real driver
for each, and a simulated device of equal standing that sits on the far side of
the real wire protocol so tests exercise the real drivers.
"""
