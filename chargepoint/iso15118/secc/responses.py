"""Failure responses: every request type answered with its own response type.

A request that is out of sequence, names the wrong session, or cannot be
parsed still gets an answer of the type the EV waits for, carrying the
specific ``FAILED_*`` code ([V2G20-2013] family); mandatory fields are filled
with neutral values (zero present values, Finished processing).
"""

from __future__ import annotations

from collections.abc import Callable

from chargepoint.iso15118.messages import ExiModel
from chargepoint.iso15118.messages import app_protocol as sap
from chargepoint.iso15118.messages import iso20 as m

_ZERO = m.RationalNumber(exponent=0, value=0)
_R = m.ResponseCode
_Builder = Callable[[m.MessageHeader, m.ResponseCode], ExiModel]


def _dc_cpd(h: m.MessageHeader, code: m.ResponseCode) -> ExiModel:
    z = _ZERO
    return m.DC_ChargeParameterDiscoveryRes(
        header=h,
        response_code=code,
        dc_cpd_res_energy_transfer_mode=m.DC_CPDResEnergyTransferMode(
            evse_maximum_charge_power=z,
            evse_minimum_charge_power=z,
            evse_maximum_charge_current=z,
            evse_minimum_charge_current=z,
            evse_maximum_voltage=z,
            evse_minimum_voltage=z,
        ),
    )


def _ac_cpd(h: m.MessageHeader, code: m.ResponseCode) -> ExiModel:
    z = _ZERO
    return m.AC_ChargeParameterDiscoveryRes(
        header=h,
        response_code=code,
        ac_cpd_res_energy_transfer_mode=m.AC_CPDResEnergyTransferMode(
            evse_maximum_charge_power=z, evse_minimum_charge_power=z, evse_nominal_frequency=z
        ),
    )


def _dc_loop(h: m.MessageHeader, code: m.ResponseCode) -> ExiModel:
    return m.DC_ChargeLoopRes(
        header=h,
        response_code=code,
        evse_present_current=_ZERO,
        evse_present_voltage=_ZERO,
        evse_power_limit_achieved=False,
        evse_current_limit_achieved=False,
        evse_voltage_limit_achieved=False,
        scheduled_dc_cl_res_control_mode=m.Scheduled_DC_CLResControlMode(),
    )


def _ac_loop(h: m.MessageHeader, code: m.ResponseCode) -> ExiModel:
    return m.AC_ChargeLoopRes(
        header=h,
        response_code=code,
        scheduled_ac_cl_res_control_mode=m.Scheduled_AC_CLResControlMode(),
    )


def _service_detail(h: m.MessageHeader, code: m.ResponseCode) -> ExiModel:
    placeholder = m.ParameterSet(
        parameter_set_id=0, parameter=[m.Parameter(name="ControlMode", int_value=0)]
    )
    return m.ServiceDetailRes(
        header=h,
        response_code=code,
        service_id=0,
        service_parameter_list=m.ServiceParameterList(parameter_set=[placeholder]),
    )


def _service_discovery(h: m.MessageHeader, code: m.ResponseCode) -> ExiModel:
    return m.ServiceDiscoveryRes(
        header=h,
        response_code=code,
        service_renegotiation_supported=False,
        energy_transfer_service_list=m.ServiceList(
            service=[m.Service(service_id=0, free_service=False)]
        ),
    )


def _finished(cls: type[ExiModel]) -> _Builder:
    def build(h: m.MessageHeader, code: m.ResponseCode) -> ExiModel:
        return cls(header=h, response_code=code, evse_processing=m.Processing.Finished)

    return build


def _plain(cls: type[ExiModel]) -> _Builder:
    def build(h: m.MessageHeader, code: m.ResponseCode) -> ExiModel:
        return cls(header=h, response_code=code)

    return build


def _voltage(cls: type[ExiModel]) -> _Builder:
    def build(h: m.MessageHeader, code: m.ResponseCode) -> ExiModel:
        return cls(header=h, response_code=code, evse_present_voltage=_ZERO)

    return build


FAILURE_BUILDERS: dict[type[ExiModel], _Builder] = {
    m.SessionSetupReq: lambda h, c: m.SessionSetupRes(header=h, response_code=c, evseid="ZZ00000"),
    m.AuthorizationSetupReq: lambda h, c: m.AuthorizationSetupRes(
        header=h,
        response_code=c,
        authorization_services=[m.Authorization.EIM],
        certificate_installation_service=False,
        eim_as_res_authorization_mode=m.EIM_ASResAuthorizationMode(),
    ),
    m.AuthorizationReq: _finished(m.AuthorizationRes),
    m.ServiceDiscoveryReq: _service_discovery,
    m.ServiceDetailReq: _service_detail,
    m.ServiceSelectionReq: _plain(m.ServiceSelectionRes),
    m.DC_ChargeParameterDiscoveryReq: _dc_cpd,
    m.AC_ChargeParameterDiscoveryReq: _ac_cpd,
    m.ScheduleExchangeReq: lambda h, c: m.ScheduleExchangeRes(
        header=h,
        response_code=c,
        evse_processing=m.Processing.Finished,
        dynamic_se_res_control_mode=m.Dynamic_SEResControlMode(),
    ),
    m.DC_CableCheckReq: _finished(m.DC_CableCheckRes),
    m.DC_PreChargeReq: _voltage(m.DC_PreChargeRes),
    m.PowerDeliveryReq: _plain(m.PowerDeliveryRes),
    m.DC_ChargeLoopReq: _dc_loop,
    m.AC_ChargeLoopReq: _ac_loop,
    m.DC_WeldingDetectionReq: _voltage(m.DC_WeldingDetectionRes),
    m.SessionStopReq: _plain(m.SessionStopRes),
}


def failure(request_type: type[ExiModel], header: m.MessageHeader, code: m.ResponseCode
            ) -> ExiModel | None:  # fmt: skip
    """The response to ``request_type`` carrying ``code``; None if we have none."""
    if request_type is sap.SupportedAppProtocolReq:
        return sap.SupportedAppProtocolRes(response_code=sap.ResponseCode.Failed_NoNegotiation)
    builder = FAILURE_BUILDERS.get(request_type)
    return None if builder is None else builder(header, code)
