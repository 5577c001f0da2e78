"""ISO 15118 message models, generated from the XSDs by tools/gen_exi.py.

Plain classes with ``__slots__`` and typed keyword-only constructors (snake_case
field names); schema facts as data in ``exi_fields`` / ``exi_choices``;
``validate()`` checks every facet (construction does not).

* :mod:`.iso20` - ISO 15118-20 CommonTypes, CommonMessages, DC and AC
* :mod:`.xmldsig` - the XML signature types carried in headers / signed data
* :mod:`.app_protocol` - the SupportedAppProtocol handshake

Encode/decode them with :mod:`chargepoint.iso15118.exi`.
"""

from chargepoint.iso15118.messages._base import ExiModel, FieldSpec

__all__ = ["ExiModel", "FieldSpec"]
