"""HomePlug Green PHY modem on the control-pilot wire: the EV communication link.

:mod:`.mme` is the sans-I/O management-message codec, :mod:`.link` the
:class:`typing.Protocol`, :mod:`.driver` the real AF_PACKET driver and
:mod:`.simulated` a simulated modem and car on the far side of a frame pipe.
The driver and the simulator are imported from their own modules so that the
codec stays light.
"""
