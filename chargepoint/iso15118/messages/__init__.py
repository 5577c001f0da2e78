"""ISO 15118 message models (pydantic v2), generated from the XSDs by tools/gen_exi.py.

* :mod:`.iso20` - ISO 15118-20 CommonTypes, CommonMessages, DC and AC
* :mod:`.xmldsig` - the XML signature types carried in headers / signed data
* :mod:`.app_protocol` - the SupportedAppProtocol handshake

Encode/decode them with :mod:`chargepoint.iso15118.exi`.
"""
